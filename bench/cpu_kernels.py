#!/usr/bin/env python
"""Why the PyTorch `cpu` target runs int4/int8 variants dequantized: time torch's CPU weight-only kernels against
plain fp32 matmul on SmolLM2-135M's linear shapes, one token (M=1, decode) and a 128-token prompt (M=128).

    python bench/cpu_kernels.py [--threads 2] [--reps 50]

Prints a table of median microseconds per call; interleaves the kernels so machine load hits all of them alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

SHAPES = {
    "q_proj/o_proj": (576, 576),
    "k_proj/v_proj": (192, 576),
    "gate/up_proj": (1536, 576),
    "down_proj": (576, 1536),
}


def kernels(n: int, k: int, group: int = 128):
    group = group if k % group == 0 else 64  # the kernel needs K % group == 0; 576 = 9 x 64
    w = torch.randn(n, k)
    q4 = torch.randint(0, 16, (n, k), dtype=torch.int32)
    packed4 = torch._convert_weight_to_int4pack_for_cpu(q4, 1)
    scales_zeros = torch.randn(k // group, n, 2)
    w8 = torch.randint(-128, 127, (n, k), dtype=torch.int8)
    s8 = torch.rand(n)
    return {
        "fp32 mm": lambda x: torch.nn.functional.linear(x, w),
        "int4 _weight_int4pack_mm_for_cpu (group 128, 64 if K=576)": lambda x: torch._weight_int4pack_mm_for_cpu(
            x, packed4, group, scales_zeros
        ),
        "int8 _weight_int8pack_mm": lambda x: torch._weight_int8pack_mm(x, w8, s8),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--reps", type=int, default=50)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()}")
    print("| shape (N x K) | M | " + " | ".join(kernels(64, 128)) + " |")
    print("|---|---|---|---|---|")
    with torch.inference_mode():
        for name, (n, k) in SHAPES.items():
            ks = kernels(n, k)
            for m in (1, 128):
                x = torch.randn(m, k)
                times: dict[str, list[float]] = {kname: [] for kname in ks}
                for f in ks.values():
                    f(x)
                for _ in range(args.reps):
                    for kname, f in ks.items():
                        t = time.perf_counter()
                        f(x)
                        times[kname].append(time.perf_counter() - t)
                cells = [f"{statistics.median(v) * 1e6:.0f} us" for v in times.values()]
                print(f"| {name} {n}x{k} | {m} | " + " | ".join(cells) + " |")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
