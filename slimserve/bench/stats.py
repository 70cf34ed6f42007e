"""Summary statistics of repeated measurements (pure Python, no torch)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from .record import LatencyStats


def percentile(samples: Sequence[float], q: float) -> float:
    """q-th percentile (0..100) with linear interpolation between closest ranks (numpy's default method)."""
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be in [0, 100], got {q}")
    xs = sorted(samples)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def latency_stats(samples: Sequence[float]) -> LatencyStats:
    """count, mean, sample stdev (n-1; 0 for one sample), p10/p50/p90/p99, min, max."""
    xs = [float(x) for x in samples]
    if not xs:
        raise ValueError("latency_stats of no samples")
    n = len(xs)
    mean = sum(xs) / n
    stdev = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0
    return LatencyStats(
        count=n,
        mean=mean,
        stdev=stdev,
        p50=percentile(xs, 50),
        p90=percentile(xs, 90),
        p99=percentile(xs, 99),
        min=min(xs),
        max=max(xs),
        p10=percentile(xs, 10),
    )


def scaled(stats: LatencyStats, factor: float) -> LatencyStats:
    """The same stats in other units (e.g. seconds -> milliseconds); order statistics scale linearly."""
    return LatencyStats(
        count=stats.count,
        mean=stats.mean * factor,
        stdev=stats.stdev * abs(factor),
        p50=stats.p50 * factor,
        p90=stats.p90 * factor,
        p99=stats.p99 * factor,
        min=stats.min * factor,
        max=stats.max * factor,
        p10=None if stats.p10 is None else stats.p10 * factor,
    )
