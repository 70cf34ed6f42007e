"""Routing overhead per request (rules, semantic, threshold), excluding the model call: p50/p99 of decide().

    flock -x /tmp/slimserve-speed.lock python bench/route_overhead.py --config router.yaml --out bench/results/route_overhead

The config must be fitted (`slimserve route fit`). Prompts: ARC-Easy questions. Each router warms up, then runs at
least N requests; semantic and threshold embed each prompt with MiniLM (the in-process memo is cleared per request).
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--out", default=None, help="path stem for .md and .json")
    a = ap.parse_args()
    import torch

    from slimserve.gateway import api
    from slimserve.gateway.datasets import load_builtin
    from slimserve.gateway.routers import Request, build_router

    cfg, _ = api.load(a.config)
    ctx = api.context(cfg, a.config)
    prompts = [it.prompt for it in load_builtin("arc_easy")][: a.n]
    rows = []
    for spec in cfg.routers:
        if spec.kind not in ("rules", "semantic", "threshold"):
            continue
        r = build_router(spec, ctx)
        for p in prompts[:20]:
            r.decide(Request.from_prompt(p + " warm"))
        times = []
        for p in prompts:
            ctx.embedder._memo.clear()
            t0 = time.perf_counter()
            r.decide(Request.from_prompt(p))
            times.append((time.perf_counter() - t0) * 1e3)
        t = np.array(times)
        rows.append({"router": spec.name, "kind": spec.kind, "n": len(t), "mean_ms": float(t.mean()),
                     "p50_ms": float(np.percentile(t, 50)), "p90_ms": float(np.percentile(t, 90)),
                     "p99_ms": float(np.percentile(t, 99)), "stdev_ms": float(t.std())})  # fmt: skip
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    flags = next((ln.split(":", 1)[1].split() for ln in open("/proc/cpuinfo") if ln.startswith("flags")), [])
    meta = {"cpu": cpu, "cores": torch.get_num_threads(), "avx512": any(f.startswith("avx512") for f in flags),
            "python": platform.python_version(), "torch": torch.__version__,
            "command": "python " + shlex.join(sys.argv)}  # fmt: skip
    lines = [f"Routing overhead per request (decide(), no model call), {meta['cpu']}, {meta['cores']} threads, "
             f"torch {meta['torch']}. Command: `{meta['command']}`", "",
             "| router | kind | n | mean ms | p50 ms | p90 ms | p99 ms |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['router']} | {r['kind']} | {r['n']} | {r['mean_ms']:.2f} | {r['p50_ms']:.2f} | "
                     f"{r['p90_ms']:.2f} | {r['p99_ms']:.2f} |")  # fmt: skip
    md = "\n".join(lines) + "\n"
    print(md)
    if a.out:
        Path(a.out + ".md").write_text(md)
        Path(a.out + ".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
