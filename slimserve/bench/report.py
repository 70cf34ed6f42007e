"""Benchmark reports: JSON (records + run settings) and Markdown (one table per scenario family)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ..gates import GateResult
from .profiles import profile_line
from .record import BenchRecord, Fingerprint, LatencyStats


def _pm(s: LatencyStats | None, fmt: str = "{:.1f}", scale: float = 1.0) -> str:
    """median (p10-p90, n); median ± stdev (n) for records without p10."""
    if s is None:
        return "-"
    if s.p10 is None:
        return f"{fmt.format(s.p50 * scale)} ± {fmt.format(s.stdev * scale)} (n={s.count})"
    return f"{fmt.format(s.p50 * scale)} ({fmt.format(s.p10 * scale)}-{fmt.format(s.p90 * scale)}, n={s.count})"


def _f(v: float | None, fmt: str = "{:.3g}") -> str:
    return "-" if v is None else fmt.format(v)


def to_json(records: list[BenchRecord], config: dict[str, Any]) -> str:
    return json.dumps(
        {"config": config, "records": [r.to_dict() for r in records]}, indent=2, sort_keys=True, default=str
    )


def fingerprint_lines(fp: Fingerprint) -> list[str]:
    """The hardware and versions lines every report and bench script prints with its numbers."""
    gpu = f"; GPU {fp.gpu_name} {fp.gpu_memory_gb} GiB" if fp.gpu_name else ""
    return [
        f"- hardware: {fp.cpu_model}, {fp.cores} logical cores, {fp.threads} threads, flags "
        f"{', '.join(fp.cpu_flags) or 'none'}{gpu}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in sorted(fp.versions.items()))}",
    ]


def to_markdown(records: list[BenchRecord], config: dict[str, Any]) -> str:
    if not records:
        return "# slimserve bench\n\nNo variant was benchmarked.\n"
    fp = records[0].fingerprint
    targets = list(dict.fromkeys(r.target for r in records))
    runs = list(dict.fromkeys(r.run_id for r in records))
    if len(targets) > 1:  # one report over several targets' runs: a row is variant@target, as in routing exports
        records = [dataclasses.replace(r, variant=f"{r.variant}@{r.target}") for r in records]
    lines = [
        f"# slimserve bench: {' + '.join(targets)} (run{'s' if len(runs) > 1 else ''} {', '.join(runs)})",
        "",
        f"- command: `{fp.command}`",
        *fingerprint_lines(fp),
        f"- created: {records[0].created}",
    ]
    if profile_line(config):
        lines.append(profile_line(config))
    if config.get("load_avg") is not None:
        lines.append(f"- load average (1/5/15 min) at start: {config['load_avg']}")
    loops = sorted({r.speed.loop for r in records if r.speed})
    if loops:
        lines.append(f"- decode loop timed: {', '.join(loops)}")
    n_rounds = max((r.speed.rounds for r in records if r.speed), default=1)
    lines.append(
        "- values are median (p10-p90, n) of n timed iterations after warm-up"
        + (
            f", pooled from {n_rounds} rounds; each round loads every variant afresh, in turn, so drift of the"
            " machine reaches every variant and the spread"
            if n_rounds > 1
            else ""
        )
    )
    lines.append(
        "- peak MiB: whole-process peak RSS on CPU (includes the Python/torch runtime), max allocated on CUDA, "
        "lowest over rounds; "
        "decode and ITL at batch 1 over the decode scenario's new tokens"
    )
    lines.append("")

    speed = [r for r in records if r.speed]
    if speed:
        lens = sorted({n for r in speed for n in r.speed.prefill_tok_s})
        ttft_len = (config.get("speed") or {}).get("prompt_lens", [lens[0] if lens else "?"])[0]
        batches = sorted({b for r in speed for b in (*r.speed.batch_tok_s, *r.speed.batch_errors)})
        head = (
            ["variant", "load s", f"TTFT ms ({ttft_len}-token prompt)"]
            + [f"prefill@{n} tok/s" for n in lens]
            + ["decode tok/s", "ITL p50 ms", "ITL p99 ms"]
            + [f"batch {b} tok/s (p99 ITL ms)" for b in batches]
            + ["peak MiB", "size MiB"]
        )
        lines += ["## Speed", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in speed:
            s = r.speed
            row = [r.variant, _f(s.load_s, "{:.2f}"), _pm(s.ttft_s, "{:.1f}", 1000.0)]
            row += [_pm(s.prefill_tok_s.get(n)) for n in lens]
            row += [
                _pm(s.decode_tok_s, "{:.2f}"),
                _f(s.itl_ms.p50 if s.itl_ms else None, "{:.1f}"),
                _f(s.itl_ms.p99 if s.itl_ms else None, "{:.1f}"),
            ]
            for b in batches:
                if b in s.batch_tok_s:
                    row.append(f"{s.batch_tok_s[b]:.1f} ({s.batch_itl_p99_ms.get(b, float('nan')):.0f})")
                else:
                    row.append("did not run: " + s.batch_errors.get(b, "-"))
            row += [_f(s.peak_mem_mb, "{:.0f}"), _f(s.size_mb, "{:.1f}")]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")

    by_round = [r for r in records if r.speed and r.speed.rounds > 1 and r.speed.round_p50]
    if by_round:
        keys = [k for k in ("decode", "ttft_ms", "load_s") if any(k in r.speed.round_p50 for r in by_round)]
        names = {"decode": "decode tok/s", "ttft_ms": "TTFT ms", "load_s": "load s"}
        lines += [
            "## Rounds",
            "",
            "Median of each round, in the order measured.",
            "",
            "| variant | " + " | ".join(names[k] for k in keys) + " |",
            "|---|" + "---|" * len(keys),
        ]
        for r in by_round:
            cells = [", ".join(f"{x:.2f}" for x in r.speed.round_p50.get(k, [])) or "-" for k in keys]
            lines.append(f"| {r.variant} | " + " | ".join(cells) + " |")
        lines.append("")

    qual = [r for r in records if r.quality]
    if qual:
        tasks = sorted({t for r in qual for t in r.quality.mc_accuracy})
        head = ["variant", "ppl", "ppl vs ref", "KLD", "KLD p99", "top-1 agree"] + [f"{t} acc (n)" for t in tasks]
        src = qual[0].quality
        lines += [
            "## Quality",
            "",
            f"Text: {src.eval_text}, {src.tokens} scored tokens; KLD = mean KL(reference ||"
            " variant) of next-token distributions in nats.",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head),
        ]
        for r in qual:
            q = r.quality
            row = [
                r.variant,
                _f(q.ppl, "{:.3f}"),
                _f(None if q.ppl_delta is None else 100 * q.ppl_delta, "{:+.2f}%"),
                _f(q.kld, "{:.5f}"),
                _f(q.kld_p99, "{:.4f}"),
                _f(q.top1, "{:.4f}"),
            ]
            row += [f"{q.mc_accuracy[t]:.3f} ({q.mc_counts.get(t, '?')})" if t in q.mc_accuracy else "-" for t in tasks]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")

    gated = [r for r in records if r.gate and r.gate.get("status") in ("passed", "rejected", "unchecked")]
    if gated:
        lines += ["## Gates", "", "The recipe's quality gates on this run's quality (same text and target).", "",
                  "| variant | verdict | checks |", "|---|---|---|"]  # fmt: skip
        for r in gated:
            g = GateResult.from_dict(r.gate)
            checks = "; ".join(c.describe() for c in g.checks) or (g.reason or "-")
            lines.append(f"| {r.variant} | {g.status} | {checks} |")
        lines.append("")

    cost = [r for r in records if r.cost]
    if cost:
        c0 = cost[0].cost
        lines += [
            "## Cost",
            "",
            f"Price: ${c0.price_per_hour}/h for `{c0.hardware_key}` ({c0.price_source}). "
            f"Output cost at the best-throughput batch whose p99 inter-token latency is under {c0.slo_ms:g} ms.",
            "",
            "| variant | $/1M input | $/1M output | batch | input tok/s | output tok/s |",
            "|---|---|---|---|---|---|",
        ]
        for r in cost:
            c = r.cost
            lines.append(
                f"| {r.variant} | {c.usd_per_1m_input:.4f} | {c.usd_per_1m_output:.4f} | {c.batch} | "
                f"{c.input_tok_s:.1f} | {c.output_tok_s:.2f} |"
            )
        lines.append("")

    notes = [(r.variant, n) for r in records for n in r.notes]
    if notes:
        lines += ["## Notes", ""] + [f"- {v}: {n}" for v, n in notes] + [""]
    return "\n".join(lines)


def write_reports(
    records: list[BenchRecord], config: dict[str, Any], out_dir: Path, stem: str | None = None
) -> tuple[Path, Path]:
    """Write <run_id>.json and <run_id>.md (or <stem>.*) into out_dir (via temp files, so an interrupted write
    leaves none)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    run_id = stem or (records[0].run_id if records else "empty")
    paths = (out_dir / f"{run_id}.json", out_dir / f"{run_id}.md")
    for path, text in zip(paths, (to_json(records, config), to_markdown(records, config)), strict=True):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text + "\n", encoding="utf-8")
        tmp.replace(path)
    return paths
