"""Quality gates: a recipe's `gates:` checked against measured quality (pure; no model, file or catalog knowledge).

```yaml
gates: {max_kld: 0.08, min_top1: 0.83, max_ppl_increase: 0.10, check: build}
```

`slimserve bench` checks every variant's gates against the reference on the same text and target and stores the
verdict with the record; `check: build` also runs the check before the variant lands in the catalog. The catalog,
`tier`, `export` and the report leave rejected variants out (`--include-rejected` keeps them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# gate field -> (QualityResult attribute, comparison, what the number is)
GATE_METRICS: dict[str, tuple[str, str, str]] = {
    "max_ppl_increase": ("ppl_delta", "<=", "relative perplexity increase"),
    "max_kld": ("kld", "<=", "mean KL divergence"),
    "min_top1": ("top1", ">=", "top-1 agreement"),
}

# Variant status in the catalog, from the latest gate verdict.
BUILT, PASSED, REJECTED, UNGATED, UNCHECKED, REFERENCE = (
    "built",
    "passed",
    "rejected",
    "ungated",
    "unchecked",
    "reference",
)
STATUSES = (BUILT, PASSED, REJECTED, UNGATED, UNCHECKED, REFERENCE)


@dataclass
class GateCheck:
    gate: str  # e.g. "max_kld"
    metric: str  # QualityResult attribute, e.g. "kld"
    limit: float
    value: float | None  # None: not measured
    ok: bool

    def describe(self) -> str:
        op = GATE_METRICS[self.gate][1]
        if self.value is None:
            return f"{self.metric} not measured (gate {self.gate} {op} {self.limit:g})"
        verdict = "ok" if self.ok else "FAILS"
        return f"{self.metric} {self.value:.4g} {op} {self.limit:g}: {verdict}"


@dataclass
class GateResult:
    status: str  # passed | rejected | ungated | unchecked | reference
    checks: list[GateCheck] = field(default_factory=list)
    reason: str | None = None  # one line: why rejected / unchecked
    target: str | None = None
    run_id: str | None = None  # the bench run, or "build" for a build-time check
    eval_text: str | None = None
    tokens: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> GateResult | None:
        if not d:
            return None
        return cls(**{**d, "checks": [GateCheck(**c) for c in d.get("checks") or []]})

    def summary(self) -> str:
        where = f" on {self.target}" if self.target else ""
        if self.status in (PASSED, REJECTED):
            return f"{self.status}{where}: " + "; ".join(c.describe() for c in self.checks)
        return f"{self.status}{where}" + (f": {self.reason}" if self.reason else "")


def gate_limits(gates: dict[str, Any] | None) -> dict[str, float]:
    """The metric limits of a manifest's `gates` (drops `check` and unset limits)."""
    return {k: float(v) for k, v in (gates or {}).items() if k in GATE_METRICS and v is not None}


def evaluate(gates: dict[str, Any] | None, quality: Any, *, reference: bool = False, **where: Any) -> GateResult:
    """Verdict of a variant's gates on one quality measurement (a QualityResult or None).

    A metric the gates need but the run did not measure (no reference in the catalog, --no-quality) gives
    `unchecked`, never `passed`.
    """
    if reference:
        return GateResult(REFERENCE, reason="the quality reference itself", **where)
    limits = gate_limits(gates)
    if not limits:
        return GateResult(UNGATED, reason="the recipe declares no gates", **where)
    if quality is None:
        return GateResult(UNCHECKED, reason="quality was not measured in this run", **where)
    checks = []
    for gate, limit in limits.items():
        attr, op, _ = GATE_METRICS[gate]
        value = getattr(quality, attr, None)
        ok = value is not None and (value <= limit if op == "<=" else value >= limit)
        checks.append(GateCheck(gate, attr, limit, None if value is None else float(value), ok))
    where.setdefault("eval_text", getattr(quality, "eval_text", None))
    where.setdefault("tokens", getattr(quality, "tokens", None))
    missing = [c for c in checks if c.value is None]
    if missing:
        why = ", ".join(c.metric for c in missing) + " not measured (the catalog needs a reference variant)"
        return GateResult(UNCHECKED, checks, why, **where)
    failed = [c for c in checks if not c.ok]
    if failed:
        return GateResult(REJECTED, checks, "; ".join(c.describe() for c in failed), **where)
    return GateResult(PASSED, checks, **where)
