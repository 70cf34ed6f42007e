"""Do two stored runs agree? Per variant and speed metric: each run's median against the other's printed spread.

"Agree" is the report's own promise: run B's median lies within run A's printed p10-p90 band, and A's within B's
(median ± stdev for records written before p10 was kept).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError, flag
from .record import BenchRecord, LatencyStats, SpeedResult
from .stats import scaled


@dataclass
class Agreement:
    variant: str
    metric: str
    a: LatencyStats
    b: LatencyStats

    @property
    def delta(self) -> float:
        return self.b.p50 - self.a.p50

    @property
    def within(self) -> bool:
        return _inside(self.b.p50, self.a) and _inside(self.a.p50, self.b)


def band(s: LatencyStats) -> tuple[float, float]:
    """The spread a report prints: p10-p90, or median ± stdev for older records."""
    if s.p10 is None:
        return s.p50 - s.stdev, s.p50 + s.stdev
    return s.p10, s.p90


def _inside(x: float, s: LatencyStats) -> bool:
    lo, hi = band(s)
    return lo <= x <= hi


def speed_metrics(s: SpeedResult) -> dict[str, LatencyStats]:
    """The speed numbers a report prints with a spread, by display name."""
    out: dict[str, LatencyStats] = {}
    if s.ttft_s is not None:
        out["TTFT ms"] = scaled(s.ttft_s, 1000.0)
    for n, st in sorted(s.prefill_tok_s.items()):
        out[f"prefill@{n} tok/s"] = st
    if s.decode_tok_s is not None:
        out["decode tok/s"] = s.decode_tok_s
    return out


def agreement(a: list[BenchRecord], b: list[BenchRecord]) -> list[Agreement]:
    """Rows for every variant measured for speed in both runs, metric by metric."""
    by_b = {r.variant: r for r in b if r.speed}
    rows = []
    for ra in a:
        rb = by_b.get(ra.variant)
        if ra.speed is None or rb is None:
            continue
        mb = speed_metrics(rb.speed)
        rows += [Agreement(ra.variant, m, st, mb[m]) for m, st in speed_metrics(ra.speed).items() if m in mb]
    return rows


def to_markdown(rows: list[Agreement], run_a: str, run_b: str) -> str:
    lines = [
        f"Run A {run_a} vs run B {run_b}: a metric agrees when each run's median lies within the spread the other's "
        "report prints (p10-p90 of its timed iterations). Best = fastest iteration.",
        "",
        "| variant | metric | A median (spread, n) | B median (spread, n) | B - A | agree | best A / B |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        (alo, ahi), (blo, bhi) = band(r.a), band(r.b)
        best = (r.a.min, r.b.min) if r.metric.endswith(" ms") else (r.a.max, r.b.max)
        lines.append(
            f"| {r.variant} | {r.metric} | {r.a.p50:.2f} ({alo:.2f}-{ahi:.2f}, {r.a.count}) | "
            f"{r.b.p50:.2f} ({blo:.2f}-{bhi:.2f}, {r.b.count}) | {r.delta:+.2f} ({100 * r.delta / r.a.p50:+.1f}%) | "
            f"{'yes' if r.within else 'NO'} | {best[0]:.2f} / {best[1]:.2f} |"
        )
    n_ok = sum(r.within for r in rows)
    lines += ["", f"{n_ok} of {len(rows)} metrics agree."]
    return "\n".join(lines)


# The runs to compare: compare_runs(run_a, run_b), or `slimserve bench --compare A B`.
RUN_IDS = flag("--compare", "run_a, run_b")


def compare_runs(
    run_a: str | None = None, run_b: str | None = None, *, catalog: str | Path | None = None
) -> tuple[str, str, list[Agreement]]:
    """Agreement of two stored runs of the same target; with no ids, the two newest runs of the newest run's
    target. Returns (run_a, run_b, rows)."""
    from ..catalog import Catalog
    from .store import run_records, runs

    cat = Catalog.open(catalog, create=False)
    stored: list[dict[str, Any]] = list(runs(cat))
    known = {r["run_id"]: r for r in stored}
    if (run_a is None) != (run_b is None):
        raise UserError("give two run ids to compare, or none for the two newest runs", field=RUN_IDS)
    if run_a is None:
        if not stored:
            raise UserError(f"catalog '{cat.root}' has no stored bench runs", field=RUN_IDS)
        same = [r for r in stored if r["target"] == stored[0]["target"]]
        if len(same) < 2:
            raise UserError(
                f"catalog '{cat.root}' has one stored run on target '{stored[0]['target']}'; two are needed",
                field=RUN_IDS,
            )
        run_b, run_a = same[0]["run_id"], same[1]["run_id"]
    for rid in (run_a, run_b):
        if rid not in known:
            raise UserError(f"no stored bench run '{rid}'", field=RUN_IDS, allowed=list(known)[:10])
    if known[run_a]["target"] != known[run_b]["target"]:
        raise UserError(
            f"runs '{run_a}' ({known[run_a]['target']}) and '{run_b}' ({known[run_b]['target']}) are on different "
            "targets",
            field=RUN_IDS,
        )
    rows = agreement(run_records(cat, run_a), run_records(cat, run_b))
    if not rows:
        raise UserError(f"runs '{run_a}' and '{run_b}' share no variant with speed results", field=RUN_IDS)
    return run_a, run_b, rows
