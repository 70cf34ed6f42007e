"""The tier and gate-status columns of `slimserve catalog list`, from the stored `catalog tier` assignment.

`catalog tier` is the one place tiers are decided: a variant's tier here is the best tier its targets hold in the
stored assignment, never the recipe's label (which `catalog list` shows as `label`). A stored assignment made from
other measurements than the current ones is stale and not shown.
"""

from __future__ import annotations

from typing import Any

from .tiers import Assignment

# A variant without a tier shows its targets' status closest to being routed.
STATUS_ORDER = ("leader", "member", "below_floor", "dominated", "unrated", "rejected")
TIER_NOTES = {
    "none": "tiers: run 'slimserve catalog tier' to assign tiers from measurements",
    "stale": "tiers: measurements changed since the stored tiering; run 'slimserve catalog tier' to assign tiers "
    "from measurements",
    "unmeasured": "tiers: bench the variants ('slimserve bench'), then run 'slimserve catalog tier' to assign tiers "
    "from measurements",
}


def variant_tier(ids: list[str], a: Assignment | None, rejected: set[str]) -> tuple[str | None, str | None]:
    """(tier, status) of a variant with these target ids: the best (last) tier any of them holds and whether that
    target leads it; else (None, the status closest to routed: below_floor, dominated, ..., rejected, no_bench)."""
    if not ids:
        return None, "no_bench"
    if a is not None:
        held = [(i, tr, tid) for i, tr in enumerate(a.tiers) for tid in ids if tid in tr.members]
        if held:
            _, tr, tid = max(held, key=lambda h: h[0])
            return tr.name, "leader" if tr.leader == tid else "member"
    found = [a.status[tid]["status"] for tid in ids if a is not None and tid in a.status]
    found += ["rejected" for tid in ids if tid in rejected]
    known = [s for s in found if s in STATUS_ORDER]
    return None, min(known, key=STATUS_ORDER.index) if known else None


def variant_status(manifest: dict[str, Any] | None, records: list[Any], fallback: str | None) -> str:
    """Gate status: the latest records' verdicts (one per target, `passed@cpu,rejected@onnx-cpu` when they
    differ), else the manifest's build-time gate_check, else the catalog's status (`built`)."""
    verdicts = {r.target: r.gate["status"] for r in records if r.gate and r.gate.get("status")}
    if len(set(verdicts.values())) == 1:
        return next(iter(verdicts.values()))
    if verdicts:
        return ",".join(f"{s}@{t}" for t, s in sorted(verdicts.items()))
    check = (manifest or {}).get("gate_check") or {}
    return check.get("status") or fallback or "built"


def tier_columns(cat: Any) -> tuple[dict[str, dict[str, Any]], str | None]:
    """variant -> {tier, tier_status, status}, and the footer line when no current tiering is stored."""
    from ..bench.store import latest_records  # lazy, as in entries.load_records
    from .api import stored_assignment

    records = latest_records(cat)
    a, why = stored_assignment(cat) if records else (None, "unmeasured")
    by_variant: dict[str, list[Any]] = {}
    for r in records:
        by_variant.setdefault(r.variant, []).append(r)
    rejected = {f"{r.variant}@{r.target}" for r in records if (r.gate or {}).get("status") == "rejected"}
    cols = {}
    for v in cat.variants():
        recs = by_variant.get(v.name, [])
        tier, tier_status = variant_tier([f"{r.variant}@{r.target}" for r in recs], a, rejected)
        cols[v.name] = {
            "tier": tier,
            "tier_status": tier_status,
            "status": variant_status(v.manifest, recs, v.status),
        }
    return cols, None if a is not None else TIER_NOTES[why]
