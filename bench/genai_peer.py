"""onnxruntime-genai's int4 model builder as a decode-speed peer; run it with the interpreter of a SEPARATE venv.

    python -m venv /tmp/genai-venv
    /tmp/genai-venv/bin/pip install torch==2.13.0 "transformers>=5" onnxruntime-genai==0.18.0 onnxruntime==1.32.0 \
        onnx onnx_ir sentencepiece protobuf
    /tmp/genai-venv/bin/python bench/genai_peer.py --base ~/.cache/slimserve/bases/<hash16> --model /tmp/genai-int4

The builder needs transformers 5, which the project's venv cannot hold (transformers<4.58), so this file imports
nothing from slimserve. It builds the genai model from the fp32 HF base once (`-p int4 -e cpu`, plus any
--extra-options; the command is kept in <model>/genai_peer_build.json), then measures decode the way llama-bench
tg128 counts it: a 1-token prompt, 128 greedy tokens, the first from the prompt pass and the 127 after it timed,
after a warm-up, with intra_op_num_threads=THREADS. --prefill N also times an N-token prompt pass (pp N).
Prints one JSON line; bench/tiers_vs_peers.py --genai-python calls it once per round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

BUILD_RECORD = "genai_peer_build.json"
PACKAGES = ("onnxruntime-genai", "onnxruntime", "transformers", "torch", "onnx", "onnx-ir")


def versions() -> dict[str, str]:
    out = {}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "absent"
    return out


def build(base: Path, model: Path, extra: list[str]) -> dict:
    """The genai int4 model from the HF base, once; returns the build record (command, seconds, versions)."""
    rec = model / BUILD_RECORD
    if (model / "genai_config.json").is_file() and rec.is_file():
        return json.loads(rec.read_text())
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(base), "-o", str(model),
           "-p", "int4", "-e", "cpu", "-c", str(model.parent / (model.name + "-cache"))]  # fmt: skip
    if extra:
        cmd += ["--extra_options", *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode or not (model / "genai_config.json").is_file():
        raise SystemExit(f"genai builder failed (rc {res.returncode}): {res.stderr[-1500:]}")
    out = {"command": " ".join(cmd), "build_s": round(time.perf_counter() - t0, 1), "versions": versions()}
    rec.write_text(json.dumps(out, indent=1) + "\n")
    return out


def load(model: Path, threads: int):
    import onnxruntime_genai as og

    cfg = og.Config(str(model))
    cfg.clear_providers()  # the CPU provider
    cfg.overlay(json.dumps({"model": {"decoder": {"session_options": {"intra_op_num_threads": threads}}}}))
    return og.Model(cfg)


def run_once(model, prompt: list[int], new_tokens: int) -> tuple[float, float, int]:
    """(prompt seconds, decode seconds, decode steps): the prompt pass, then new_tokens - 1 timed decode steps."""
    import numpy as np
    import onnxruntime_genai as og

    params = og.GeneratorParams(model)
    total = len(prompt) + new_tokens
    params.set_search_options(do_sample=False, max_length=total, min_length=total, batch_size=1)
    gen = og.Generator(model, params)
    t0 = time.perf_counter()
    gen.append_tokens(np.asarray([prompt], dtype=np.int32))  # runs the prompt pass
    gen.generate_next_token()  # picks token 1 from the prompt's logits
    t1 = time.perf_counter()
    steps = 0
    while steps < new_tokens - 1 and not gen.is_done():
        gen.generate_next_token()  # one decode forward on the last token, then the pick
        steps += 1
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, steps


def measure(model_dir: Path, threads: int, reps: int, new_tokens: int, prefill: int) -> dict:
    model = load(model_dir, threads)
    run_once(model, [100] * 8, 16)  # warm-up: allocations, kernel pre-packing
    tg = []
    for _ in range(reps):
        _, dt, steps = run_once(model, [100], new_tokens)
        tg.append(steps / dt)
    out = {"tg": statistics.median(tg), "tg_samples": tg, "new_tokens": new_tokens}
    if prefill:
        prompt = [(7919 * i) % 49000 + 100 for i in range(prefill)]
        pp = [prefill / run_once(model, prompt, 1)[0] for _ in range(max(reps, 1))]
        out.update({"pp": statistics.median(pp), "pp_samples": pp, "prefill": prefill})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="the fp32 HF base directory (config.json, safetensors, tokenizer)")
    ap.add_argument("--model", default="/tmp/genai-int4", help="genai model directory (built there when absent)")
    ap.add_argument("--extra-options", nargs="*", default=[], metavar="KEY=VALUE", help="builder --extra_options")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=1, help="timed generations (median reported)")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--prefill", type=int, default=0, help="also time a prompt pass of this many tokens")
    ap.add_argument("--build-only", action="store_true")
    args = ap.parse_args()

    model = Path(args.model)
    rec = build(Path(args.base).expanduser(), model, args.extra_options)
    out = {"engine": "onnxruntime-genai int4", "model": str(model), "build": rec, "threads": args.threads}
    if not args.build_only:
        out.update(measure(model, args.threads, args.reps, args.new_tokens, args.prefill))
    out["load_avg"] = os.getloadavg()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
