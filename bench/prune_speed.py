"""CPU decode speed of the structured-pruned shape (intermediate 1024) and of 2:4 zeros vs the fp32 reference.

Speed depends on shapes, not on which channels were kept, so the pruned model here keeps the first channels
(no calibration); quality numbers are in prune_quality.md.

    python bench/prune_speed.py --model /tmp/smol --keep 1024 --runs 5
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from slimserve.prune.masks import nm_mask
from slimserve.prune.structured import count_params, prune_mlp

sys.path.insert(0, str(Path(__file__).parent))
from prune_quality import decode_ms_per_token  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="/tmp/smol")
    ap.add_argument("--keep", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", default="bench/results/prune_speed")
    args = ap.parse_args()
    tok = AutoTokenizer.from_pretrained(args.model)
    base = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    pruned = copy.deepcopy(base)
    for layer in pruned.model.layers:
        keep = torch.zeros(layer.mlp.gate_proj.out_features, dtype=torch.bool)
        keep[: args.keep] = True
        prune_mlp(layer.mlp, keep)
    pruned.config.intermediate_size = args.keep
    sparse = copy.deepcopy(base)
    with torch.no_grad():
        for layer in sparse.model.layers:
            for m in layer.modules():
                if isinstance(m, torch.nn.Linear):
                    m.weight.mul_(nm_mask(m.weight.abs(), 2, 4))
    models = {"fp32": base, f"structured (intermediate {args.keep})": pruned, "2:4 zeros (dense kernels)": sparse}
    ms = {k: [] for k in models}
    load = [os.getloadavg()[0]]
    for _ in range(args.runs):
        for k, m in models.items():
            ms[k] += decode_ms_per_token(m, tok, repeats=1)
    load.append(os.getloadavg()[0])
    rows = [
        {
            "variant": k,
            "params": count_params(models[k]),
            "ms_per_token": [round(x, 2) for x in v],
            "median": round(statistics.median(v), 2),
        }
        for k, v in ms.items()
    ]
    ref = rows[0]["median"]
    meta = {
        "command": "python " + " ".join(sys.argv),
        "hardware": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared)",
        "loadavg_1min_before_after": load,
        "torch": f"{torch.__version__}, {torch.get_num_threads()} thread(s)",
        "decode": f"greedy generate(), 48 new tokens, batch 1, fp32, {args.runs} runs alternating models",
    }
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [f"# {out.name}", "", *(f"- {k}: {v}" for k, v in meta.items()), ""]
    lines += ["| variant | params | decode ms/token (median) | vs fp32 | runs |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['params'] / 1e6:.1f}M | {r['median']} | {r['median'] / ref:.2f}x | {r['ms_per_token']} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
