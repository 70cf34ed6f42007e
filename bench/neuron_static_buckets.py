"""Per-bucket latency of the neuron-static emulation (static shapes, prompts padded to the bucket) vs onnx-cpu.

    python bench/neuron_static_buckets.py --model /tmp/smol --threads 2

Builds the static bucket graphs and the dynamic fused graph from the same int4 weights, then times prefill (TTFT) and
decode steps for short and long prompts: the static target pads every prompt to its bucket's sequence length.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="/tmp/smol")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sequences", default="128,512")
    ap.add_argument("--new", type=int, default=16)
    ap.add_argument("--out", default="bench/results/neuron_static_buckets")
    args = ap.parse_args()

    from transformers import AutoModelForCausalLM

    from slimserve.errors import UserError
    from slimserve.onnx.export import export_fused
    from slimserve.onnx.quantize import WeightPlan
    from slimserve.onnx.runtime import OrtRunner
    from slimserve.onnx.static import StaticRunner, export_static
    from slimserve.onnx.steps import OnnxExportConfig, StaticExportConfig

    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    seqs = [int(s) for s in args.sequences.split(",")]
    work = Path(tempfile.mkdtemp(prefix="static-bench-"))
    scfg = StaticExportConfig(batch_sizes=[1], sequence_lengths=seqs, weights="int4", block_size=32)
    export_static(model, work / "static", WeightPlan(scfg), scfg)
    dyn = export_fused(model, work / "dyn", WeightPlan(OnnxExportConfig(weights="int4", block_size=32)))
    st = StaticRunner(work / "static", None, threads=args.threads)
    dy = OrtRunner(dyn, None, threads=args.threads)
    rows = []
    rng = np.random.default_rng(0)
    for prompt in (16, seqs[0] - args.new, seqs[-1] - args.new):
        ids = torch.from_numpy(rng.integers(100, 40000, (1, prompt)))
        for name, r in (("neuron-static", st), ("onnx-cpu", dy)):
            r.generate(ids, 2)  # warm-up (session load / prepacking)
            g = min((r.generate(ids, args.new) for _ in range(2)), key=lambda g: g.ttft_s)
            bucket = st.last_bucket if name == "neuron-static" else None
            rows.append({"target": name, "prompt": prompt, "bucket": bucket and f"b{bucket['batch']}xs{bucket['sequence']}",
                         "ttft_ms": 1000 * g.ttft_s, "decode_ms": 1000 * float(np.median(g.step_s))})  # fmt: skip
            print(rows[-1], flush=True)
    try:
        st.generate(torch.ones(1, seqs[-1], dtype=torch.long), 8)
        refusal = "not refused (bug)"
    except UserError as e:
        refusal = str(e)
    res = {"command": " ".join(["python", *sys.argv]), "threads": args.threads, "load": os.getloadavg()[0],
           "rows": rows, "refusal": refusal}  # fmt: skip
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    lines = ["# neuron-static per-bucket latency (SmolLM2-135M int4 b32, ONNX Runtime CPU)", "",
             f"Command: `{res['command']}`; threads {args.threads}; load average {res['load']:.2f} (shared machine).",
             "", "| target | prompt tokens | bucket | TTFT ms (padded prefill) | decode ms/token (median) |",
             "|---|---:|---|---:|---:|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['target']} | {r['prompt']} | {r['bucket'] or 'dynamic'} | {r['ttft_ms']:.1f} | "
                     f"{r['decode_ms']:.2f} |")  # fmt: skip
    lines += ["", f"Prompt of {seqs[-1]} tokens + 8 new: `{refusal}`", ""]
    out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
