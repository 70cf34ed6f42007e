"""RouteLLM's metrics, pure: the call-performance curve, PGR, APGR, CPT(x%), and the price at each point.

A router's scores order the items; sending the top k to the strong tier gives one point (k/n strong calls, accuracy).
Tied scores are split fractionally (the expected accuracy over the orders a tie allows), so a router that cannot
tell items apart traces the straight line between the weak and the strong tier, like the random router in
expectation.

  PGR(p) = (acc(p) - acc_weak) / (acc_strong - acc_weak)     performance gap recovered at p strong calls
  APGR   = the area under PGR(p) for p in [0, 1] (trapezoids over the n + 1 item-level points)
  CPT(x) = the smallest share of strong calls with PGR >= x
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class Curve:
    share: np.ndarray  # [n + 1] share of strong calls, 0 .. 1
    accuracy: np.ndarray  # [n + 1]


def call_performance(scores, weak_correct, strong_correct) -> Curve:
    """Expected accuracy when the k highest-scoring items go to the strong tier, k = 0..n (ties split evenly)."""
    s = np.asarray(scores, np.float64)
    w = np.asarray(weak_correct, np.float64)
    gain = np.asarray(strong_correct, np.float64) - w
    n = len(s)
    order = np.argsort(-s, kind="stable")
    s_sorted, g_sorted = s[order], gain[order]
    cum = np.zeros(n + 1)
    start = 0
    while start < n:  # one tie group at a time: gain grows linearly across the group
        end = start + 1
        while end < n and s_sorted[end] == s_sorted[start]:
            end += 1
        group = g_sorted[start:end].sum()
        steps = np.arange(1, end - start + 1)
        cum[start + 1 : end + 1] = cum[start] + group * steps / (end - start)
        start = end
    return Curve(np.arange(n + 1) / n, (w.sum() + cum) / n)


def pgr(curve: Curve, acc_weak: float, acc_strong: float) -> np.ndarray:
    gap = acc_strong - acc_weak
    if gap <= 0:
        return np.full_like(curve.accuracy, np.nan)
    return (curve.accuracy - acc_weak) / gap


def apgr(curve: Curve, pgr_values: np.ndarray) -> float:
    x, y = curve.share, pgr_values
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2)


def cpt(curve: Curve, pgr_values: np.ndarray, target: float) -> float | None:
    """Smallest strong-call share reaching PGR >= target (None when none does or PGR is undefined)."""
    hit = np.nonzero(pgr_values >= target - 1e-12)[0]
    return float(curve.share[hit[0]]) if len(hit) else None


@dataclass
class Prices:
    """Blended $/1M tokens of each tier, from the catalog's measured prices (None: not measured)."""

    weak: float | None
    strong: float | None
    weak_id: str | None = None
    strong_id: str | None = None

    def at(self, share: float, *, cascade: bool = False) -> float | None:
        if self.weak is None or self.strong is None:
            return None
        return (1.0 if cascade else 1 - share) * self.weak + share * self.strong


@dataclass
class RouterResult:
    router: str
    kind: str
    apgr: float
    cpt50: float | None
    cpt80: float | None
    acc_at_cpt50: float | None
    usd_per_1m_at_cpt50: float | None
    usd_per_1m_at_cpt80: float | None
    points: list[dict] = field(default_factory=list)  # 11 points: share, accuracy, pgr, usd_per_1m
    note: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(name: str, kind: str, scores, weak_correct, strong_correct, prices: Prices) -> RouterResult:
    curve = call_performance(scores, weak_correct, strong_correct)
    aw, as_ = float(np.mean(weak_correct)), float(np.mean(strong_correct))
    p = pgr(curve, aw, as_)
    cascade = kind == "cascade"
    c50, c80 = cpt(curve, p, 0.5), cpt(curve, p, 0.8)
    n = len(curve.share) - 1
    points = []
    for q in np.linspace(0, 1, 11):
        k = int(round(q * n))
        points.append({"share": round(float(curve.share[k]), 4), "accuracy": round(float(curve.accuracy[k]), 4),
                       "pgr": None if np.isnan(p[k]) else round(float(p[k]), 4),
                       "usd_per_1m": prices.at(float(curve.share[k]), cascade=cascade)})  # fmt: skip
    acc50 = float(curve.accuracy[int(round(c50 * n))]) if c50 is not None else None
    note = "strong tier is not more accurate than the weak one: PGR undefined" if as_ <= aw else None
    if cascade:
        note = "cascade: the weak tier answers every item, so its cost is paid at every share"
    return RouterResult(
        router=name,
        kind=kind,
        apgr=apgr(curve, p) if as_ > aw else float("nan"),
        cpt50=c50,
        cpt80=c80,
        acc_at_cpt50=acc50,
        usd_per_1m_at_cpt50=prices.at(c50, cascade=cascade) if c50 is not None else None,
        usd_per_1m_at_cpt80=prices.at(c80, cascade=cascade) if c80 is not None else None,
        points=points,
        note=note,
    )


def random_baseline(weak_correct, strong_correct, prices: Prices, draws: int = 200, seed: int = 0) -> RouterResult:
    """The random router: mean APGR / CPT over `draws` seeded random orders (its expectation is APGR 0.5)."""
    rng = np.random.default_rng(seed)
    runs = [summarize("random", "random", rng.random(len(weak_correct)), weak_correct, strong_correct, prices)
            for _ in range(draws)]  # fmt: skip
    mean = summarize("random", "random", np.zeros(len(weak_correct)), weak_correct, strong_correct, prices)

    def avg(xs):
        xs = [x for x in xs if x is not None]
        return float(np.mean(xs)) if xs else None

    mean.apgr = float(np.mean([r.apgr for r in runs]))
    mean.cpt50, mean.cpt80 = avg([r.cpt50 for r in runs]), avg([r.cpt80 for r in runs])
    mean.usd_per_1m_at_cpt50 = prices.at(mean.cpt50) if mean.cpt50 is not None else None
    mean.usd_per_1m_at_cpt80 = prices.at(mean.cpt80) if mean.cpt80 is not None else None
    std = float(np.std([r.apgr for r in runs]))
    mean.note = f"mean of {draws} seeded draws (APGR std {std:.3f}); points: the expected (straight) curve"
    return mean
