"""Pruning table: parameters, perplexity/KLD vs the fp32 reference, reload check and CPU decode speed,
for structured pruning (with and without recovery) and Wanda 2:4.

    python bench/prune_quality.py --model /tmp/smol --mlp-ratio 0.3 --recovery-steps 20
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from slimserve.prune import structured, wanda
from slimserve.steps import StepContext

sys.path.insert(0, str(Path(__file__).parent))
from quality_calibrated import eval_windows, evaluate  # noqa: E402


@torch.no_grad()
def decode_ms_per_token(model, tok, n_new=48, repeats=3) -> list[float]:
    ids = tok("It is a truth universally acknowledged, that", return_tensors="pt").input_ids
    model.generate(ids, max_new_tokens=4, do_sample=False)  # warm-up
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        model.generate(ids, max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False)
        out.append((time.perf_counter() - t) * 1000 / n_new)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="/tmp/smol")
    ap.add_argument("--mlp-ratio", type=float, default=0.3)
    ap.add_argument("--attention-ratio", type=float, default=0.0)
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--eval-windows", type=int, default=8)
    ap.add_argument("--recovery-steps", type=int, default=20)
    ap.add_argument("--wanda", action="store_true")
    ap.add_argument("--compare-compensation", action="store_true")
    ap.add_argument("--round-to", type=int, default=128)
    ap.add_argument("--recovery-lr", type=float, default=1e-4)
    ap.add_argument("--out", default="bench/results/prune_quality")
    args = ap.parse_args()
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(args.model)
    base = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    windows = eval_windows(tok, args.eval_windows, args.seq_len)
    ref, ref_logp = evaluate(base, windows, None)
    params = lambda m: structured.count_params(m)  # noqa: E731
    rows = [{"variant": "fp32", "params": params(base), **ref}]
    load = [os.getloadavg()[0]]
    calib = {"samples": args.samples, "seq_len": args.seq_len}
    meta = {
        "command": "python " + " ".join(sys.argv),
        "hardware": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared with 4 other jobs)",
        "loadavg_1min": load,
        "torch": f"{torch.__version__}, {torch.get_num_threads()} thread(s)",
        "eval": f"{args.eval_windows} windows x {args.seq_len} tokens from the end of Pride and Prejudice",
        "calibration": f"{args.samples} x {args.seq_len} tokens from the start of Pride and Prejudice",
        "decode": "greedy generate(), 48 new tokens, batch 1, fp32, 3 runs alternating models",
    }

    def add(label, model, secs, **extra):
        load.append(os.getloadavg()[0])
        q, _ = evaluate(model, windows, ref_logp)
        q["ppl_increase"] = q["ppl"] / ref["ppl"] - 1
        n = params(model)
        rows.append(
            {
                "variant": label,
                "params": n,
                "params_ratio": n / rows[0]["params"],
                "seconds": round(secs, 1),
                **q,
                **extra,
            }
        )
        print(rows[-1], flush=True)
        write(args, meta, rows)
        return rows[-1]

    def speed(pairs):
        ms = {k: [] for k in pairs}
        for _ in range(3):
            for k, m in pairs.items():
                ms[k] += decode_ms_per_token(m, tok, repeats=1)
        load.append(os.getloadavg()[0])
        for r in rows:
            if r["variant"] in ms:
                r["decode_ms_per_token"] = [round(x, 2) for x in ms[r["variant"]]]
                r["decode_ms_median"] = round(statistics.median(ms[r["variant"]]), 2)
        write(args, meta, rows)

    def sconfig(**kw):
        return structured.StructuredConfig(
            mlp_ratio=args.mlp_ratio,
            attention_ratio=args.attention_ratio,
            round_to=args.round_to,
            calibration=calib,
            **kw,
        )

    ctx = StepContext(Path(args.model), Path("/tmp"), tok, field="bench")
    t = time.perf_counter()
    pruned = structured.apply(copy.deepcopy(base), sconfig(), ctx)
    row = add("structured", pruned, time.perf_counter() - t)
    with tempfile.TemporaryDirectory() as d:
        pruned.save_pretrained(d)
        back = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
        ids = windows[0, :64][None]
        row["reloads"] = bool(torch.allclose(back(ids).logits, pruned(ids).logits, atol=1e-4))
        row["config"] = {
            k: back.config.to_dict()[k] for k in ("intermediate_size", "num_attention_heads", "num_key_value_heads")
        }
        del back
    speed({"fp32": base, "structured": pruned})
    if args.recovery_steps:
        from slimserve.calibration.config import CalibrationConfig
        from slimserve.prune.recovery import RecoveryConfig, recover

        rcfg = RecoveryConfig(steps=args.recovery_steps, batch_size=2, seq_len=256, eval_windows=4, lr=args.recovery_lr)
        t = time.perf_counter()
        rec = recover(pruned, base, tok, rcfg, CalibrationConfig(**calib))
        add(f"structured + recovery {args.recovery_steps} steps", pruned, time.perf_counter() - t, recovery=rec)
    if args.wanda:
        ctx = StepContext(Path(args.model), Path("/tmp"), tok, field="bench")
        t = time.perf_counter()
        sparse = wanda.apply(copy.deepcopy(base), wanda.WandaConfig(pattern="2:4", calibration=calib), ctx)
        add("wanda 2:4", sparse, time.perf_counter() - t)
        speed({"fp32": base, "wanda 2:4": sparse})
    if args.compare_compensation:
        ctx = StepContext(Path(args.model), Path("/tmp"), tok, field="bench")
        t = time.perf_counter()
        add(
            "structured no-compensation",
            structured.apply(copy.deepcopy(base), sconfig(compensate=False), ctx),
            time.perf_counter() - t,
        )


def write(args, meta, rows) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [f"# {out.name}", "", *(f"- {k}: {v}" for k, v in meta.items()), ""]
    lines += [
        "| variant | params | ratio | ppl | ppl increase | KLD | top-1 | decode ms/token (median) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['params'] / 1e6:.1f}M | {r.get('params_ratio', 1):.3f} | {r['ppl']:.2f} "
            f"| {r.get('ppl_increase', 0):.1%} | {r.get('kld', 0):.4f} | {r.get('top1', 1):.3f} | {r.get('decode_ms_median', '')} |"
        )
    for r in rows:
        if "recovery" in r:
            rec = r["recovery"]
            lines.append(
                f"\nRecovery ({r['variant']}): held-out before {rec['before']} -> after {rec['after']}, {rec['seconds']} s"
            )
        if "reloads" in r:
            lines.append(f"\nReload with transformers ({r['variant']}): {r['reloads']}, config {r['config']}")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
