"""Raw speed samples of one measurement round, and their summary over rounds (pure Python, no torch).

A round loads a variant afresh and runs every speed scenario once (each scenario with its own warm-up and iteration
floor). The harness interleaves rounds across variants (A B A B ...), so slow drift of a shared machine (memory
bandwidth taken by neighbours, frequency) lands on every variant alike and shows up in the spread, instead of in
the difference between two runs. Summaries pool the iterations of all rounds; per-round medians are kept too.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from .record import SpeedResult
from .stats import latency_stats, scaled


@dataclass
class RoundSamples:
    """Per-iteration measurements of one round on one variant (seconds or tok/s, as named)."""

    load_s: float | None = None
    ttft_s: list[float] = field(default_factory=list)
    prefill_tok_s: dict[int, list[float]] = field(default_factory=dict)  # prompt len -> samples
    decode_tok_s: list[float] = field(default_factory=list)  # batch 1, one sample per generate()
    itl_s: list[float] = field(default_factory=list)  # every decode step of every iteration
    batch_tok_s: dict[int, list[float]] = field(default_factory=dict)  # batch -> samples (batch 1: the decode's)
    batch_itl_s: dict[int, list[float]] = field(default_factory=dict)
    batch_errors: dict[int, str] = field(default_factory=dict)
    peak_mem_mb: float | None = None


def _round_p50(rounds: list[RoundSamples], get) -> list[float]:  # noqa: ANN001
    return [statistics.median(xs) for xs in (get(r) for r in rounds) if xs]


def summarize(rounds: list[RoundSamples], *, loop: str, size_mb: float | None = None) -> SpeedResult:
    """One SpeedResult from the rounds of one variant: stats over the pooled iterations, load time and per-round
    medians from each round. Peak memory is the smallest round's peak: every round's process peak also holds heap
    left over from the variants loaded before it, which belongs to the harness, not to this variant. A batch that
    failed in any round is reported as not run (with the first reason): a batch that fits only sometimes cannot be
    priced."""
    if not rounds:
        raise ValueError("summarize needs at least one round")
    res = SpeedResult(loop=loop, size_mb=size_mb, rounds=len(rounds))
    loads = [r.load_s for r in rounds if r.load_s is not None]
    res.load_s = statistics.median(loads) if loads else None
    peaks = [r.peak_mem_mb for r in rounds if r.peak_mem_mb is not None]
    res.peak_mem_mb = min(peaks) if peaks else None

    def pooled(get):  # noqa: ANN001, ANN202
        return [x for r in rounds for x in get(r)]

    if loads:
        res.round_p50["load_s"] = loads
    ttft = pooled(lambda r: r.ttft_s)
    if ttft:
        res.ttft_s = latency_stats(ttft)
        res.round_p50["ttft_ms"] = [1000.0 * x for x in _round_p50(rounds, lambda r: r.ttft_s)]
    for n in sorted({n for r in rounds for n in r.prefill_tok_s}):
        res.prefill_tok_s[n] = latency_stats(pooled(lambda r, n=n: r.prefill_tok_s.get(n, [])))
        res.round_p50[f"prefill@{n}"] = _round_p50(rounds, lambda r, n=n: r.prefill_tok_s.get(n, []))
    decode = pooled(lambda r: r.decode_tok_s)
    if decode:
        res.decode_tok_s = latency_stats(decode)
        res.itl_ms = scaled(latency_stats(pooled(lambda r: r.itl_s)), 1000.0)
        res.round_p50["decode"] = _round_p50(rounds, lambda r: r.decode_tok_s)

    errors: dict[int, str] = {}
    for r in rounds:
        for b, why in r.batch_errors.items():
            errors.setdefault(b, why)
    res.batch_errors = dict(sorted(errors.items()))
    for b in sorted({b for r in rounds for b in r.batch_tok_s} - set(errors)):
        res.batch_tok_s[b] = statistics.median(pooled(lambda r, b=b: r.batch_tok_s.get(b, [])))
        res.batch_itl_p99_ms[b] = latency_stats(pooled(lambda r, b=b: r.batch_itl_s.get(b, []))).p99 * 1000.0
        res.round_p50[f"batch{b}"] = _round_p50(rounds, lambda r, b=b: r.batch_tok_s.get(b, []))
    return res
