#!/usr/bin/env python
"""Is the llamacpp-cpu target's loop slower than llama.cpp itself? Interleaved rounds on one GGUF, same build:

- llama-bench tg128 (llama.cpp's own C++ loop, from an empty cache),
- raw llama_decode from Python (one token per call, nothing else),
- the target's runner (slimserve.llamacpp.runtime.LlamaCppRunner.generate) after a 1-token and a 128-token prompt.

Run it against the build that llama-cpp-python loads (`bash bench/llamacpp_shared.sh`, then its two exports), or
llama-bench and the target measure two different builds:

    python bench/llamacpp_loop.py MODEL.gguf [--threads 2] [--rounds 5] [--out bench/results/llamacpp_loop.md]
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from slimserve.bench.fingerprint import cpu_info
from slimserve.llamacpp.runtime import LlamaCppRunner
from slimserve.llamacpp.tools import find_tool

NEW = 128


def llama_bench(exe: Path, gguf: Path, threads: int) -> float:
    out = subprocess.run(
        [str(exe), "-m", str(gguf), "-t", str(threads), "-p", "0", "-n", str(NEW), "-r", "3", "-o", "csv"],
        capture_output=True, text=True, check=True, timeout=600,
    ).stdout  # fmt: skip
    rows = [row for row in csv.DictReader(io.StringIO(out)) if row.get("n_gen") == str(NEW)]
    return float(rows[-1]["avg_ts"])


def raw_decode(r: LlamaCppRunner) -> float:
    ctx = r._context(1, 2 * NEW)
    steps = []
    for p in range(NEW + 1):
        batch = r._fill([(100 + p, p, 0, True)])
        t = time.perf_counter()
        if r.L.llama_decode(ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")
        steps.append(time.perf_counter() - t)
    return NEW / sum(steps[1:])


def runner_loop(r: LlamaCppRunner, prompt: int) -> float:
    ids = torch.randint(100, 20000, (1, prompt), generator=torch.Generator().manual_seed(0))
    g = r.generate(ids, NEW + 1)
    return len(g.step_s) / sum(g.step_s)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("gguf", type=Path)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    if not args.gguf.is_file():
        p.error(f"GGUF file '{args.gguf}' does not exist")
    exe = find_tool("llama-bench")
    r = LlamaCppRunner(args.gguf, None, threads=args.threads)
    ways = {"raw llama_decode (Python, 1 token/call)": lambda: raw_decode(r)}
    ways["target runner, 1-token prompt"] = lambda: runner_loop(r, 1)
    ways["target runner, 128-token prompt"] = lambda: runner_loop(r, 128)
    if exe is not None:
        ways["llama-bench tg128 (-r 3)"] = lambda: llama_bench(exe, args.gguf, args.threads)
    runner_loop(r, 8)  # warm-up
    tps: dict[str, list[float]] = {k: [] for k in ways}
    load0 = os.getloadavg()
    for _ in range(args.rounds):
        for name, fn in ways.items():
            tps[name].append(fn())
    load1 = os.getloadavg()
    ref = statistics.median(tps["raw llama_decode (Python, 1 token/call)"])
    model, flags = cpu_info()
    lines = [
        f"# llama.cpp decode: the llamacpp-cpu target's loop vs llama.cpp's own ({args.gguf.name})",
        "",
        f"- command: `python {shlex.join(sys.argv)}`",
        f"- hardware: {model}, {os.cpu_count()} logical cores, {args.threads} threads, flags {', '.join(flags)}",
        f"- llama-cpp-python library: {os.environ.get('LLAMA_CPP_LIB_PATH', 'its bundled build')}; llama-bench: "
        f"{exe or 'not found (SLIMSERVE_LLAMACPP_BIN)'}",
        f"- load average at start/end: {load0[0]:.2f} / {load1[0]:.2f}; {args.rounds} interleaved rounds, {NEW} tokens",
        "",
        "| loop | median tok/s | per round | vs raw llama_decode |",
        "|---|---:|---|---:|",
    ]
    for name, xs in tps.items():
        med = statistics.median(xs)
        lines.append(f"| {name} | {med:.1f} | {', '.join(f'{x:.0f}' for x in xs)} | {med / ref:.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
