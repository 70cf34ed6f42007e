"""Routing targets: one entry per variant x benchmark target, built only from stored measurements.

A variant benchmarked on `cpu` and on `onnx-cpu` gives two targets with different prices. A variant without a
benchmark record, or whose record lacks a cost, is left out with the reason printed (never exported with made-up
numbers).
A target whose latest record's gate verdict is `rejected` is built like any other and carries the verdict (`gate`);
`rejected()` splits those off, and the callers leave them out unless asked to keep them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .metrics import REFERENCE_VALUES, quality_values


@dataclass
class RoutingTarget:
    id: str  # "<variant>@<target>" for local targets, the declared name for external models
    kind: str  # "local" | "external"
    variant: str
    target: str  # bench target ("cpu", "onnx-cpu") or "external"
    base_model: str | None
    method: str  # one-line summary of the recipe steps
    recipe_tier: str | None  # the label the recipe gave the variant
    context_length: int | None
    usd_per_1m_input: float
    usd_per_1m_output: float
    price_kind: str  # "measured" (throughput x hourly price) | "list" (declared list price)
    price_source: str
    price_date: str | None
    quality: dict[str, float] = field(default_factory=dict)
    quality_kind: str = "measured"  # "measured" | "declared"
    quality_notes: list[str] = field(default_factory=list)
    latency: dict[str, float] = field(default_factory=dict)  # ttft_p50_s, ttft_p99_s, itl_p50_ms, itl_p99_ms, ...
    bits_per_weight: float | None = None
    size_bytes: int | None = None
    run_id: str | None = None
    created: str | None = None
    fingerprint: dict[str, Any] | None = None
    cost_detail: dict[str, Any] | None = None  # the CostResult the price comes from
    model: str | None = None  # what a router sends as `model` for external targets (litellm name)
    api_base: str | None = None  # external endpoint when not the provider default
    gate: dict[str, Any] | None = None  # GateResult.to_dict() of the record; None: measured before gates existed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_records(cat: Any, target: str | None = None) -> list[Any]:
    """Latest BenchRecord per (variant, target) from the benchmark store."""
    from ..bench.store import latest_records  # lazy: the store pulls in sqlite helpers only when needed

    return latest_records(cat, target=target)


def method_summary(manifest: dict[str, Any]) -> str:
    from ..artifact.manifest import Manifest  # lazy: the router imports fast

    return Manifest.of(manifest).method_summary


def _context_length(manifest: dict[str, Any]) -> int | None:
    config = (manifest.get("base") or {}).get("config") or {}
    n = config.get("max_position_embeddings") if isinstance(config, dict) else None
    return int(n) if n else None


def _latency(speed: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    if speed is None:
        return out
    if speed.ttft_s is not None:
        out.update(ttft_p50_s=speed.ttft_s.p50, ttft_p99_s=speed.ttft_s.p99)
    if speed.itl_ms is not None:
        out.update(itl_p50_ms=speed.itl_ms.p50, itl_p99_ms=speed.itl_ms.p99)
    if speed.decode_tok_s is not None:
        out["decode_tok_s_p50"] = speed.decode_tok_s.p50
    return out


def from_record(manifest: dict[str, Any], rec: Any) -> tuple[RoutingTarget | None, str | None]:
    """(target, None) or (None, why it is left out)."""
    if rec.cost is None:
        return None, f"{rec.variant}@{rec.target}: benchmark run {rec.run_id} has no cost (no speed/price measured)"
    quality = quality_values(rec.quality)
    notes = []
    if manifest.get("reference"):
        for k, v in REFERENCE_VALUES.items():
            if k not in quality:
                quality[k] = v
                notes.append(f"{k}={v} by definition (reference variant)")
    c = rec.cost
    t = RoutingTarget(
        id=f"{rec.variant}@{rec.target}",
        kind="local",
        variant=rec.variant,
        target=rec.target,
        base_model=(manifest.get("base") or {}).get("source"),
        method=method_summary(manifest),
        recipe_tier=manifest.get("tier"),
        context_length=_context_length(manifest),
        usd_per_1m_input=float(c.usd_per_1m_input),
        usd_per_1m_output=float(c.usd_per_1m_output),
        price_kind="measured",
        price_source=f"{c.hardware_key} at ${c.price_per_hour}/h ({c.price_source}); batch {c.batch}, "
        f"p99 ITL <= {c.slo_ms} ms",
        price_date=rec.created,
        quality=quality,
        quality_kind="measured",
        quality_notes=notes,
        latency=_latency(rec.speed),
        bits_per_weight=manifest.get("bits_per_weight"),
        size_bytes=manifest.get("size_bytes"),
        run_id=rec.run_id,
        created=rec.created,
        fingerprint=asdict(rec.fingerprint) if rec.fingerprint is not None else None,
        cost_detail=asdict(c),
        gate=rec.gate,
    )
    return t, None


def build_targets(variants: list[Any], records: list[Any]) -> tuple[list[RoutingTarget], list[str]]:
    """Pair catalog variants with their latest records. Returns (targets, reasons for what was left out)."""
    by_variant: dict[str, list[Any]] = {}
    for r in records:
        by_variant.setdefault(r.variant, []).append(r)
    targets, skipped = [], []
    known = {v.name for v in variants}
    for v in variants:
        recs = by_variant.get(v.name)
        if not recs:
            skipped.append(f"{v.name}: no benchmark record (run `slimserve bench {v.name}`)")
            continue
        for rec in sorted(recs, key=lambda r: r.target):
            t, why = from_record(v.manifest or {}, rec)
            if t is None:
                skipped.append(why)
            else:
                targets.append(t)
    for name in sorted(set(by_variant) - known):
        skipped.append(f"{name}: benchmark records exist but the variant is not in the catalog")
    return targets, skipped


def gate_status(t: RoutingTarget) -> str | None:
    return (t.gate or {}).get("status")


def rejection(t: RoutingTarget) -> str:
    """Why the gates rejected t, in one line: the run and each failing check."""
    from ..gates import GateResult  # lazy: the router imports fast without the gate checks

    g = GateResult.from_dict(t.gate)
    if g is None:
        return "no gate verdict"
    failing = "; ".join(c.describe() for c in g.checks if not c.ok) or g.reason or "no failing check recorded"
    return f"run {g.run_id}: {failing}"


def split_rejected(
    targets: list[RoutingTarget], *, include_rejected: bool = False
) -> tuple[list[RoutingTarget], list[RoutingTarget], list[str]]:
    """(targets to route, targets their gates rejected, one line each on what happened to them).

    A rejected target is left out unless include_rejected; a record without a verdict counts as unchecked and stays.
    """
    from ..gates import REJECTED

    rejected = [t for t in targets if gate_status(t) == REJECTED]
    if include_rejected:
        lines = [f"{t.id}: rejected by its gates ({rejection(t)}), kept by --include-rejected" for t in rejected]
        return targets, rejected, lines
    lines = [f"{t.id}: rejected by its gates ({rejection(t)}); --include-rejected keeps it" for t in rejected]
    return [t for t in targets if gate_status(t) != REJECTED], rejected, lines
