#!/usr/bin/env python
"""Interleaved A/B of the PyTorch decode loops on one loaded model: each round runs every loop once, so machine load
hits all loops alike (separate benchmark runs on a shared machine drift by 2x).

    python bench/loop_ab.py [MODEL_DIR] [--threads 1] [--rounds 5] [--new-tokens 33]
"""

from __future__ import annotations

import argparse
import os
import statistics

import torch

from slimserve.bench.targets import load_torch_model
from slimserve.bench.torch_runner import LOOPS, TorchRunner
from slimserve.data import read_text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", default="/tmp/smol")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--new-tokens", type=int, default=33)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = load_torch_model(args.model, "cpu")
    ids = tok(read_text()[5000:20000], return_tensors="pt").input_ids[:, :128]
    runners = {loop: TorchRunner(model, tok, loop=loop) for loop in LOOPS}
    for r in runners.values():
        r.generate(ids, 4)  # warm-up
    ms: dict[str, list[float]] = {loop: [] for loop in runners}
    print("load before", os.getloadavg())
    for _ in range(args.rounds):
        for loop, r in runners.items():
            ms[loop].append(statistics.median(r.generate(ids, args.new_tokens).step_s) * 1000)
    print("load after", os.getloadavg())
    print("| loop | median ms/step | min | max | tok/s at median |\n|---|---|---|---|---|")
    for loop, v in ms.items():
        med = statistics.median(v)
        print(f"| torch-{loop} | {med:.1f} | {min(v):.1f} | {max(v):.1f} | {1000 / med:.2f} |")


if __name__ == "__main__":
    main()
