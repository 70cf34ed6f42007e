"""Tier rules (tiers.yaml) and their assignment over the cost/quality Pareto front.

    tiers:
      - {name: nano, floor: 0.80}       # cheapest front target with metric >= 0.80 leads `nano`
      - {name: premium, kind: external} # no floor: cheapest external model

A tier's members are the front targets that meet its floor and no later tier's rule (the band); when the band is
empty the tier borrows the cheapest eligible target from above (`Tier.borrowed_from` names the tier it belongs to,
and a note says so and what would fill the tier). A rule that no target meets is an error.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import UserError
from . import explain, metrics
from .entries import RoutingTarget, gate_status
from .pareto import Point, dominated_by

DEFAULT_RULES = Path(__file__).with_name("tiers.yaml")


class TierRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1)
    floor: float | None = None  # at least this good on the metric (<= for lower-is-better metrics)
    kind: Literal["any", "local", "external"] = "any"
    optional: bool = False  # dropped (with a note) instead of an error when no target meets it

    @field_validator("name")
    @classmethod
    def _no_reserved(cls, v: str) -> str:
        if v in ("dominated", "unrated", "below_floor"):
            raise ValueError(f"'{v}' is a status, not a tier name")
        return v


class RouteLLMRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    weak_floor: float | None = None
    router: str = "mf"
    threshold: float = Field(0.11593, ge=0, le=1)


class TierRules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    version: Literal[1] = 1
    metric: str = "top1"
    blend_input_share: float = Field(0.75, ge=0, le=1)
    routellm: RouteLLMRule = RouteLLMRule()
    tiers: list[TierRule] = Field(min_length=1)

    @field_validator("metric")
    @classmethod
    def _metric(cls, v: str) -> str:
        try:
            return metrics.check_metric(v)
        except UserError as e:
            raise ValueError(e.message) from None

    @model_validator(mode="after")
    def _unique(self) -> TierRules:
        names = [t.name for t in self.tiers]
        if len(set(names)) != len(names):
            raise ValueError(f"tier names repeat: {names}")
        return self

    def blended(self, t: RoutingTarget) -> float:
        s = self.blend_input_share
        return s * t.usd_per_1m_input + (1 - s) * t.usd_per_1m_output


def load_rules(path: str | Path | None = None) -> TierRules:
    p = Path(path) if path else DEFAULT_RULES
    if not p.is_file():
        raise UserError(f"tier rules file {p} does not exist", field="rules")
    try:
        data = yaml.safe_load(p.read_text()) or {}
        return TierRules.model_validate(data)
    except yaml.YAMLError as e:
        raise UserError(f"not valid YAML: {e}", file=str(p)) from None
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        raise UserError(err["msg"], file=str(p), field=loc or None) from None


@dataclass
class Tier:
    name: str
    floor: float | None
    kind: str
    leader: str
    members: list[str]  # leader first, then by cost
    borrowed_from: str | None = None  # empty band: the leader is this (later) tier's target


@dataclass
class Assignment:
    metric: str
    blend_input_share: float
    source: str  # "rules:<path>" or "recipe"
    tiers: list[Tier]
    status: dict[str, dict[str, Any]] = field(
        default_factory=dict
    )  # id -> {status, tiers, dominated_by, cost, quality, on_front, gate}
    routellm: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Assignment:
        return cls(**{**d, "tiers": [Tier(**t) for t in d["tiers"]]})

    def tier_of(self, target_id: str) -> str | None:
        tiers = self.status.get(target_id, {}).get("tiers") or []
        return tiers[0] if tiers else None

    def next_up(self, name: str) -> str | None:
        names = [t.name for t in self.tiers]
        i = names.index(name)
        return names[i + 1] if i + 1 < len(names) else None


def _kind_ok(rule: TierRule, t: RoutingTarget) -> bool:
    return rule.kind == "any" or rule.kind == t.kind


def assign(targets: list[RoutingTarget], rules: TierRules, source: str = "rules") -> Assignment:
    """Pareto front + tier rules -> Assignment. Raises UserError naming a rule that matches nothing."""
    if not targets:
        raise UserError("the catalog has no benchmarked targets or external models to tier")
    m = rules.metric
    by_id = {t.id: t for t in targets}
    cost = {t.id: rules.blended(t) for t in targets}
    rated = [t for t in targets if m in t.quality]
    dom = dominated_by([Point(t.id, cost[t.id], metrics.oriented(m, t.quality[m])) for t in rated])
    on_front = [t for t in rated if dom[t.id] is None]
    unrated = [t for t in targets if m not in t.quality]

    def eligible(rule: TierRule) -> list[RoutingTarget]:
        pool = [t for t in on_front if _kind_ok(rule, t)]
        if rule.floor is not None:
            return [t for t in pool if metrics.passes(m, t.quality[m], rule.floor)]
        return pool + [t for t in unrated if _kind_ok(rule, t)]

    order = sorted(targets, key=lambda t: (cost[t.id], -metrics.oriented(m, t.quality.get(m, 0.0)), t.id))
    rank = {t.id: i for i, t in enumerate(order)}
    tiers: list[Tier] = []
    notes: list[str] = []
    elig = [eligible(r) for r in rules.tiers]
    for i, rule in enumerate(rules.tiers):
        if not elig[i] and rule.optional:
            why = (
                " (no external model is declared: `slimserve catalog add-external`)"
                if rule.kind == "external" and not any(t.kind == "external" for t in targets)
                else ""
            )
            notes.append(f"optional tier '{rule.name}' left out: no target meets it{why}")
            continue
        if not elig[i]:
            raise explain.no_match(rule, i, m, on_front)
        later = {t.id for e in elig[i + 1 :] for t in e}
        band = [t for t in elig[i] if t.id not in later]
        borrowed = not band
        band = sorted(band or [min(elig[i], key=lambda t: rank[t.id])], key=lambda t: rank[t.id])
        tiers.append(
            Tier(rule.name, rule.floor, rule.kind, band[0].id, [t.id for t in band], "?" if borrowed else None)
        )

    if not tiers:
        raise UserError("no tier rule matches any target", hint="; ".join(notes))
    for k, tr in enumerate(tiers):
        if tr.borrowed_from:  # the first later tier of its own that holds the borrowed leader
            owner = next((o for o in tiers[k + 1 :] if not o.borrowed_from and tr.leader in o.members), None)
            tr.borrowed_from = owner.name if owner else tiers[-1].name  # (always found: its band is later)
    status: dict[str, dict[str, Any]] = {}
    for t in targets:
        in_tiers = [tr.name for tr in tiers if t.id in tr.members]
        if t.id in dom and dom[t.id] is not None:
            st = "dominated"
        elif any(tr.leader == t.id for tr in tiers):
            st = "leader"
        elif in_tiers:
            st = "member"
        elif m not in t.quality:
            st = "unrated"
        else:
            st = "below_floor"
        status[t.id] = {
            "status": st,
            "tiers": in_tiers,
            "dominated_by": dom.get(t.id),
            "cost": cost[t.id],
            "quality": t.quality.get(m),
            "on_front": t.id in {f.id for f in on_front},
            "gate": gate_status(t),
        }
    a = Assignment(m, rules.blend_input_share, source, tiers, status, notes=notes)
    a.notes += explain.borrow_notes(a)
    a.routellm = routellm_pair(a, by_id, rules)
    return a


def routellm_pair(a: Assignment, by_id: dict[str, RoutingTarget], rules: TierRules) -> dict[str, Any]:
    """Weak: the cheapest tier leader that meets weak_floor; strong: the leader of the last (best) tier."""
    strong = a.tiers[-1].leader
    floor = rules.routellm.weak_floor
    weak = None
    for tr in a.tiers:
        q = by_id[tr.leader].quality.get(a.metric)
        if tr.leader != strong and (floor is None or (q is not None and metrics.passes(a.metric, q, floor))):
            weak = tr.leader
            break
    pair = {"strong": strong, "weak": weak, "weak_floor": floor, **rules.routellm.model_dump(exclude={"weak_floor"})}
    if weak is None:  # said by `catalog tier` and in the JSON export, before an export of the pair fails
        pair["problem"], pair["fix"] = explain.routellm_problem(a, by_id.values(), pair=pair)
    return pair


def assign_from_recipe(targets: list[RoutingTarget], rules: TierRules) -> Assignment:
    """Keep the recipe labels as tiers (externals go to `premium`); tiers ordered by their cheapest member."""
    if not targets:
        raise UserError("the catalog has no benchmarked targets or external models to tier")
    m = rules.metric
    cost = {t.id: rules.blended(t) for t in targets}
    groups: dict[str, list[RoutingTarget]] = {}
    for t in targets:
        label = t.recipe_tier or ("premium" if t.kind == "external" else t.variant)
        groups.setdefault(label, []).append(t)
    rated = [t for t in targets if m in t.quality]
    dom = dominated_by([Point(t.id, cost[t.id], metrics.oriented(m, t.quality[m])) for t in rated])
    tiers = []
    for label, ts in groups.items():
        ts.sort(key=lambda t: (cost[t.id], t.id))
        tiers.append(Tier(label, None, "any", ts[0].id, [t.id for t in ts]))
    tiers.sort(key=lambda tr: (cost[tr.leader], tr.name))
    status = {
        t.id: {
            "status": "dominated"
            if dom.get(t.id)
            else ("leader" if any(tr.leader == t.id for tr in tiers) else "member"),
            "tiers": [tr.name for tr in tiers if t.id in tr.members],
            "dominated_by": dom.get(t.id),
            "cost": cost[t.id],
            "quality": t.quality.get(m),
            "on_front": t.id in dom and dom[t.id] is None,
            "gate": gate_status(t),
        }
        for t in targets
    }
    a = Assignment(m, rules.blend_input_share, "recipe", tiers, status)
    a.routellm = routellm_pair(a, {t.id: t for t in targets}, rules)
    return a
