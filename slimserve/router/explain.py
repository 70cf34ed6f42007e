"""Plain words for what a tiering cannot do, and what to do about it: pure text from the assignment and targets.

Used by `catalog tier` (printed), the exports (header comments, notes, errors) and the report.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import UserError
from . import metrics

if TYPE_CHECKING:
    from .entries import RoutingTarget
    from .tiers import Assignment, TierRule

# What fills a local tier on the shipped demo: cheap calibrated int4 served by ONNX Runtime; more of its projections
# at 8 bits (mixed precision) raise its quality toward the higher floors.
FILL_EXAMPLE = (
    "e.g. the fast calibrated int4 of recipes/llama-tiers.yaml (GPTQ on onnx-cpu; a larger `mixed: {budget_bpw: ...}` "
    "keeps more layers at 8 bits for a higher floor), then `slimserve bench`"
)
ADD_EXTERNAL = "`slimserve catalog add-external NAME --input-per-1m .. --output-per-1m .. --source URL`"
BENCH_QUALITY = (
    "run `slimserve bench VARIANT` with quality measured (not --no-quality; top1/kld/ppl_delta are measured "
    "against the catalog's reference variant), then `slimserve catalog tier`"
)


def op(metric: str) -> str:
    return ">=" if metrics.higher_is_better(metric) else "<="


def q(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


def floor_text(metric: str, floor: float | None) -> str:
    return "" if floor is None else f"{metric} {op(metric)} {floor:g}"


def _best(items: Iterable[tuple[str, float]], metric: str, n: int = 3) -> str:
    ranked = sorted(items, key=lambda kv: (-metrics.oriented(metric, kv[1]), kv[0]))[:n]
    return ", ".join(f"{tid} {q(v)}" for tid, v in ranked)


def no_match(rule: TierRule, index: int, metric: str, on_front: list[RoutingTarget]) -> UserError:
    """The error for a tier rule no target meets, naming the closest targets and what would meet it."""
    crit = ", ".join(x for x in (floor_text(metric, rule.floor), f"kind {rule.kind}") if x)
    pool = [t for t in on_front if rule.kind in ("any", t.kind)]
    if rule.kind == "external" and not pool:
        hint = f"no external model is declared: add one with {ADD_EXTERNAL}, or mark the rule `optional: true`"
    elif not pool:
        hint = f"no target has a {metric} measurement: {BENCH_QUALITY}"
    else:
        best = _best(((t.id, t.quality[metric]) for t in pool), metric)
        hint = (
            f"closest on the front: {best}; lower the floor, build and bench a variant that meets it, "
            "or drop the rule (or mark it `optional: true`)"
        )
    return UserError(f"tier rule '{rule.name}' ({crit}) matches no target", field=f"tiers[{index}]", hint=hint)


def _fill(a: Assignment, i: int) -> str:
    """What would give tier i a target of its own."""
    tr = a.tiers[i]
    if tr.kind == "external":
        return f"declare an external model cheaper than {tr.leader} with {ADD_EXTERNAL}"
    m = a.metric
    above = [t for t in a.tiers[i + 1 :] if t.floor is not None and t.kind != "external"]
    nxt = min(above, key=lambda t: metrics.oriented(m, t.floor), default=None)  # the easiest later floor
    cond = floor_text(m, tr.floor) or "any quality"
    if nxt is not None:
        cond += f" but short of {nxt.name}'s floor {nxt.floor:g} (meeting it, the variant joins {nxt.name})"
    return f"build a variant cheaper than {tr.leader} with {cond}, {FILL_EXAMPLE}"


def borrow_notes(a: Assignment) -> list[str]:
    """One note per tier that borrows its leader from a later tier, and one per leader that several tiers share."""
    notes = []
    by_name = {t.name: t for t in a.tiers}
    for i, tr in enumerate(a.tiers):
        if not tr.borrowed_from:
            continue
        owner = by_name.get(tr.borrowed_from)
        whose = f"{owner.name}'s leader" if owner and owner.leader == tr.leader else f"{tr.leader} ({tr.borrowed_from})"
        crit = floor_text(a.metric, tr.floor)
        what = f"nothing{'' if tr.kind == 'any' else ' ' + tr.kind} on the front{' with ' + crit if crit else ''}"
        notes.append(
            f"tier {tr.name} has no target of its own: {what} is cheaper than {whose}; it routes to {tr.leader} "
            f"(borrowed from {tr.borrowed_from}). To fill it, {_fill(a, i)}"
        )
    shared: dict[str, list[str]] = {}
    for tr in a.tiers:
        shared.setdefault(tr.leader, []).append(tr.name)
    for leader, names in shared.items():
        if len(names) > 1:
            cost = a.status.get(leader, {}).get("cost")
            price = f" (${cost:.4g}/1M blended)" if cost is not None else ""
            notes.append(
                f"tiers {', '.join(names)} all route to {leader}{price}: routing among them saves nothing "
                "until a cheaper target fills the lower tiers"
            )
    return notes


def _why_not_weak(tid: str, st: dict[str, Any], a: Assignment) -> str:
    if st["status"] == "dominated":
        return f"dominated by {st['dominated_by']}, which costs no more and is at least as good"
    if st["status"] == "member":
        leads = [f"{tr.name} (led by {tr.leader})" for tr in a.tiers if tid in tr.members]
        return f"it is only a member of {', '.join(leads)}"
    return "it meets no tier's floor"


def routellm_problem(
    a: Assignment,
    targets: Iterable[RoutingTarget],
    rejected: Iterable[RoutingTarget] = (),
    pair: dict[str, Any] | None = None,
) -> tuple[str, str]:
    """(message, what to do) when the assignment has no RouteLLM weak/strong pair (pair: default a.routellm)."""
    pair, m = pair or a.routellm, a.metric
    strong, floor = pair.get("strong"), pair.get("weak_floor")
    rated = {tid: st for tid, st in a.status.items() if st.get("quality") is not None}
    left_out = [f"{t.id} ({m} {q(t.quality.get(m))})" for t in rejected]
    gone = f"; left out as rejected by their gates: {', '.join(left_out)}" if left_out else ""
    if floor is not None and not rated:
        return (
            f"RouteLLM needs a weak model with {floor_text(m, floor)} (routellm.weak_floor), but no target has a "
            f"{m} measurement{gone}",
            BENCH_QUALITY,
        )
    led = [tr.name for tr in a.tiers if tr.leader == strong]
    head = f"RouteLLM needs a weak model cheaper than the strong one, {strong} (leader of {', '.join(led)})"
    if floor is None:
        msg = f"{head}, but every tier routes to {strong}{gone}"
    else:
        parts = [
            f"{tid} has {q(st['quality'])} but leads no tier below the strongest ({_why_not_weak(tid, st, a)})"
            for tid, st in sorted(rated.items(), key=lambda kv: kv[1]["cost"])
            if tid != strong and metrics.passes(m, st["quality"], floor)
        ]
        if not parts:
            best = _best(((tid, st["quality"]) for tid, st in rated.items() if tid != strong), m)
            parts = ["no other target meets it" + (f" (closest: {best})" if best else "")]
        msg = f"{head}; weak floor {floor_text(m, floor)}: {'; '.join(parts)}{gone}"
    fixes = []
    if not any(t.kind == "external" for t in targets):
        fixes.append(f"declare an external premium model ({ADD_EXTERNAL}) so that it is the strong one")
    crit = f" with {floor_text(m, floor)}" if floor is not None else ""
    fixes.append(f"build and bench a variant cheaper than {strong}{crit} ({FILL_EXAMPLE})")
    if floor is not None:
        fixes.append("lower routellm.weak_floor in a tier rules file (--rules FILE)")
    return msg, "To get a pair, " + "; or ".join(fixes)
