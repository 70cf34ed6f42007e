"""Do two stored runs agree? Per variant and speed metric: each run's median against the other's printed spread.

"Agree" is the report's own promise: run B's median lies within run A's printed p10-p90 band, and A's within B's
(median ± stdev for records written before p10 was kept). Under the verdict: what differed between the runs (profile,
settings, load at the start, threads, CPU, versions, variant builds) and whether the medians moved together (the
host drifted) or apart.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError, flag
from .record import BenchRecord, Fingerprint, LatencyStats, SpeedResult
from .stats import scaled

SETTINGS = ("rounds", "warmup", "min_iters", "min_seconds", "max_iters", "prompt_lens", "new_tokens", "decode_iters")
SETTINGS += ("batches", "batch_prompt_len", "batch_new_tokens")
UNCHANGED = 0.02  # a median that moved less than 2% counts as unmoved when telling drift from scatter


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


def speedup(r: Agreement) -> float:
    """How much faster B is than A on this metric (>1: faster; latencies count inverted)."""
    if r.a.p50 <= 0 or r.b.p50 <= 0:
        return 1.0
    return r.a.p50 / r.b.p50 if r.metric.endswith(" ms") else r.b.p50 / r.a.p50


def drift(rows: list[Agreement], *, explained: bool = False) -> str | None:
    """Did B's medians move together (one host-wide shift) or apart (something specific to variants/scenarios)?
    explained: the runs' settings or host differ (differences() found something), which can shift everything too."""
    if not rows:
        return None
    ups = [speedup(r) for r in rows]
    faster = sum(x > 1 + UNCHANGED for x in ups)
    slower = sum(x < 1 / (1 + UNCHANGED) for x in ups)
    n, med = len(rows), 100 * (statistics.median(ups) - 1)
    if faster + slower == 0:
        return f"Every median moved less than {100 * UNCHANGED:g}%"
    if n >= 2 and max(faster, slower) >= 0.8 * n:
        way = "faster" if faster > slower else "slower"
        cause = "what differed above (or host drift) moves" if explained else "that is host drift (load, clock)"
        return (
            f"Medians moved together: B is {way} on {max(faster, slower)} of {n} metrics (median speed {med:+.1f}%), "
            f"across variants and scenarios alike: {cause}, not a change in one variant; ratios between variants "
            "within each run stay comparable"
        )
    return (
        f"Medians moved apart: B is faster on {faster}, slower on {slower} and within {100 * UNCHANGED:g}% on "
        f"{n - faster - slower} of {n} metrics (median speed {med:+.1f}%): not one host-wide shift; look at the "
        "variants and scenarios that disagree"
    )


@dataclass
class RunContext:
    """What a stored run was measured under."""

    run_id: str
    command: str
    config: dict[str, Any]
    fingerprint: Fingerprint | None
    builds: dict[str, str | None] = field(default_factory=dict)  # variant -> build id
    loops: dict[str, str] = field(default_factory=dict)  # variant -> decode loop timed


def _first_load(ctx: RunContext) -> float | None:
    try:
        return float(str(ctx.config.get("load_avg") or "").split()[0])
    except (IndexError, ValueError):
        return None


def _pair(label: str, a: Any, b: Any) -> str:
    return f"{label}: A {a}, B {b}"


def differences(a: RunContext, b: RunContext) -> list[str]:
    """What differed between two runs that can move their speed numbers, one line each (empty: nothing found)."""
    out: list[str] = []
    pa, pb = a.config.get("profile"), b.config.get("profile")
    if pa != pb:
        out.append(_pair("profile", pa or "not recorded", pb or "not recorded"))
    sa, sb = a.config.get("speed") or {}, b.config.get("speed") or {}
    changed = [f"{k} {_v(sa.get(k))} vs {_v(sb.get(k))}" for k in SETTINGS if sa.get(k) != sb.get(k)]
    if changed:
        out.append("settings (A vs B): " + "; ".join(changed))
    la, lb = _first_load(a), _first_load(b)
    cores = (a.fingerprint or b.fingerprint).cores if (a.fingerprint or b.fingerprint) else None
    if la is not None and lb is not None and (abs(la - lb) >= 0.5 or (cores and max(la, lb) >= cores)):
        busy = [n for n, x in (("A", la), ("B", lb)) if cores and x >= cores]
        note = f" ({' and '.join(busy)} started busy: load at or above the core count)" if busy else ""
        out.append(f"load average at start (1 min): A {la:.2f}, B {lb:.2f} on {cores} cores{note}")
    out += _host_differences(a.fingerprint, b.fingerprint)
    rebuilt = sorted(v for v in set(a.builds) & set(b.builds) if a.builds[v] != b.builds[v])
    if rebuilt:
        out.append("variant builds differ (rebuilt between the runs): " + ", ".join(rebuilt))
    loops = sorted(v for v in set(a.loops) & set(b.loops) if a.loops[v] != b.loops[v])
    out += [_pair(f"{v}: decode loop", a.loops[v], b.loops[v]) for v in loops]
    return out


def _v(x: Any) -> str:
    return ",".join(map(str, x)) if isinstance(x, list | tuple) else str(x)


def _host_differences(fa: Fingerprint | None, fb: Fingerprint | None) -> list[str]:
    if fa is None or fb is None:
        return []
    out = []
    if fa.threads != fb.threads:
        out.append(_pair("threads", fa.threads, fb.threads))
    if (fa.cpu_model, fa.cores, fa.cpu_flags) != (fb.cpu_model, fb.cores, fb.cpu_flags):
        out.append(
            _pair(
                "CPU",
                f"{fa.cpu_model} ({fa.cores} cores, {','.join(fa.cpu_flags)})",
                f"{fb.cpu_model} ({fb.cores} cores, {','.join(fb.cpu_flags)})",
            )
        )
    elif fa.hostname_hash != fb.hostname_hash:
        out.append("different machines of the same CPU model (host hashes differ)")
    vers = sorted(k for k in set(fa.versions) | set(fb.versions) if fa.versions.get(k) != fb.versions.get(k))
    if vers:
        out.append("versions (A vs B): " + "; ".join(f"{k} {fa.versions.get(k)} vs {fb.versions.get(k)}" for k in vers))
    return out


def run_context(cat: Any, run_id: str) -> RunContext:
    """A stored run's command, config, fingerprint, variant builds and decode loops."""
    from .store import ensure, run_records

    ensure(cat)
    with cat.connect() as con:
        row = con.execute("SELECT command, config FROM bench_runs WHERE run_id = ?", (run_id,)).fetchone()
        builds = con.execute("SELECT variant, variant_build FROM bench_results WHERE run_id = ?", (run_id,)).fetchall()
    if row is None:
        raise UserError(f"no stored bench run '{run_id}'", field=RUN_IDS)
    recs = run_records(cat, run_id)
    return RunContext(
        run_id=run_id,
        command=row["command"],
        config=json.loads(row["config"]),
        fingerprint=recs[0].fingerprint if recs else None,
        builds={v: b for v, b in builds},
        loops={r.variant: r.speed.loop for r in recs if r.speed},
    )


def explain(run_a: str, run_b: str, *, catalog: str | Path | None = None) -> list[str]:
    """differences() of two stored runs."""
    from ..catalog import Catalog

    cat = Catalog.open(catalog, create=False)
    return differences(run_context(cat, run_a), run_context(cat, run_b))


def to_markdown(rows: list[Agreement], run_a: str, run_b: str, why: list[str] | None = None) -> str:
    """The agreement table and verdict; under it, `why` (differences() of the runs) and whether medians drifted
    together."""
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
    if why is not None:
        lines += [
            "",
            "What differed between the runs:"
            if why
            else "Same profile, settings, threads, CPU, versions and variant builds; no load difference at the start.",
        ]
        lines += [f"- {w}" for w in why]
    moved = drift(rows, explained=bool(why))
    if moved:
        lines += ["", moved + "."]
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
