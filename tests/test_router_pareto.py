"""Pareto front and tier rules on hand-made measurements (ties, dominated points, floors, bad rules)."""

from __future__ import annotations

import itertools

import pytest

from slimserve.errors import UserError
from slimserve.router.entries import RoutingTarget
from slimserve.router.pareto import Point, dominated_by, dominates, front
from slimserve.router.tiers import TierRules, assign, assign_from_recipe, load_rules


def test_dominance_needs_one_strict_axis():
    a, b = Point("a", 1.0, 0.9), Point("b", 1.0, 0.9)
    assert not dominates(a, b) and not dominates(b, a)  # exact tie: both stay
    assert dominates(Point("c", 1.0, 0.95), a)  # same cost, better
    assert dominates(Point("d", 0.5, 0.9), a)  # same quality, cheaper
    assert not dominates(Point("e", 0.5, 0.8), a)  # cheaper but worse: a trade-off


def test_front_with_ties_and_dominated_points():
    pts = [
        Point("cheap", 0.1, 0.80),
        Point("tie1", 0.3, 0.95),
        Point("tie2", 0.3, 0.95),
        Point("worse_same_cost", 0.3, 0.90),
        Point("dominated", 0.4, 0.93),
        Point("best", 1.0, 1.00),
        Point("costly_same_quality", 1.5, 1.00),
    ]
    f = front(pts)
    assert [p.id for p in f] == ["cheap", "tie1", "tie2", "best"]
    dom = dominated_by(pts)
    assert dom["worse_same_cost"] in ("tie1", "tie2")
    assert dom["dominated"] in ("tie1", "tie2")
    assert dom["costly_same_quality"] == "best"
    assert all(dom[p.id] is None for p in f)
    # the front is monotone: more cost buys more (or equal, for exact ties) quality
    assert all(b.cost >= a.cost and b.quality >= a.quality for a, b in itertools.pairwise(f))


def test_front_of_nothing_and_one():
    assert front([]) == []
    assert [p.id for p in front([Point("x", 0.0, 0.0)])] == ["x"]


def _t(id: str, cost: float, q: dict[str, float], kind: str = "local", tier: str | None = None) -> RoutingTarget:
    return RoutingTarget(
        id=id,
        kind=kind,
        variant=id,
        target="cpu" if kind == "local" else "external",
        base_model="b",
        method="m",
        recipe_tier=tier,
        context_length=2048,
        usd_per_1m_input=cost,
        usd_per_1m_output=cost,  # blended cost == cost
        price_kind="measured" if kind == "local" else "list",
        price_source="test",
        price_date=None,
        quality=q,
    )


RULES = TierRules.model_validate(
    {
        "metric": "top1",
        "routellm": {"weak_floor": 0.90},
        "tiers": [
            {"name": "nano", "floor": 0.80},
            {"name": "small", "floor": 0.90},
            {"name": "base", "floor": 0.97},
            {"name": "premium", "kind": "external"},
        ],
    }
)


def test_cheapest_on_front_wins_and_dominated_never_leads():
    ts = [
        _t("int4", 0.10, {"top1": 0.85}),
        _t("int4-bad", 0.12, {"top1": 0.84}),  # dominated by int4
        _t("int4-g32", 0.15, {"top1": 0.92}),
        _t("int4-g32-twin", 0.15, {"top1": 0.92}),  # exact tie with int4-g32
        _t("int8", 0.20, {"top1": 0.98}),
        _t("ref", 0.40, {"top1": 1.0}),
        _t("gpt", 5.0, {"mc:arc": 0.9}, kind="external"),
    ]
    a = assign(ts, RULES)
    tiers = {t.name: t for t in a.tiers}
    assert tiers["nano"].leader == "int4" and tiers["nano"].members == ["int4"]
    assert tiers["small"].leader == "int4-g32" and tiers["small"].members == ["int4-g32", "int4-g32-twin"]
    assert tiers["base"].leader == "int8" and tiers["base"].members == ["int8", "ref"]
    assert tiers["premium"].leader == "gpt"
    assert a.status["int4-bad"]["status"] == "dominated" and a.status["int4-bad"]["dominated_by"] == "int4"
    assert all(t.leader != "int4-bad" for t in a.tiers)
    assert a.status["int4-g32-twin"]["status"] == "member"
    # RouteLLM: weak is the cheapest tier leader meeting weak_floor 0.90, strong the last tier's leader
    assert a.routellm["weak"] == "int4-g32" and a.routellm["strong"] == "gpt"
    assert a.next_up("nano") == "small" and a.next_up("premium") is None


def test_empty_band_borrows_cheapest_eligible_from_above():
    a = assign([_t("int8", 0.2, {"top1": 0.98}), _t("gpt", 5, {}, kind="external")], RULES)
    assert [t.leader for t in a.tiers] == ["int8", "int8", "int8", "gpt"]
    assert a.status["int8"]["tiers"] == ["nano", "small", "base"]
    assert a.status["gpt"]["status"] == "leader"


def test_rule_that_matches_nothing_is_a_clear_error():
    with pytest.raises(UserError) as e:
        assign([_t("int4", 0.1, {"top1": 0.85}), _t("gpt", 5, {}, kind="external")], RULES)
    msg = str(e.value)
    assert "small" in msg and "matches no target" in msg and "0.85" in msg
    with pytest.raises(UserError, match="premium"):
        assign([_t("ref", 0.4, {"top1": 1.0})], RULES)  # no external model for the premium rule
    with pytest.raises(UserError, match="no benchmarked targets"):
        assign([], RULES)


def test_optional_rule_is_dropped_with_a_note():
    rules = TierRules.model_validate(
        {"tiers": [{"name": "small", "floor": 0.9}, {"name": "premium", "kind": "external", "optional": True}]}
    )
    a = assign([_t("int8", 0.2, {"top1": 0.98}), _t("ref", 0.4, {"top1": 1.0})], rules)
    assert [t.name for t in a.tiers] == ["small"] and "premium" in a.notes[0]
    assert a.tiers[0].members == ["int8", "ref"]
    only_optional = TierRules.model_validate({"tiers": [{"name": "p", "kind": "external", "optional": True}]})
    with pytest.raises(UserError, match="no tier rule matches"):
        assign([_t("ref", 0.4, {"top1": 1.0})], only_optional)


def test_lower_is_better_metric_floors_are_maxima():
    rules = TierRules.model_validate(
        {"metric": "kld", "tiers": [{"name": "lo", "floor": 0.2}, {"name": "hi", "floor": 0.01}]}
    )
    a = assign([_t("int4", 0.1, {"kld": 0.1}), _t("int8", 0.2, {"kld": 0.005}), _t("bad", 0.3, {"kld": 0.3})], rules)
    assert [t.leader for t in a.tiers] == ["int4", "int8"]
    assert a.status["bad"]["status"] == "dominated"


def test_targets_without_the_metric_are_unrated_not_dropped():
    rules = TierRules.model_validate({"metric": "mc_mean", "tiers": [{"name": "all"}]})
    a = assign([_t("a", 0.1, {"mc_mean": 0.4}), _t("b", 0.2, {"top1": 0.9})], rules)
    assert a.status["b"]["status"] == "member" and a.status["b"]["quality"] is None
    assert a.tiers[0].leader == "a"


def test_recipe_labels_kept():
    ts = [
        _t("x", 0.1, {"top1": 0.9}, tier="nano"),
        _t("y", 0.3, {"top1": 0.99}, tier="base"),
        _t("g", 4, {}, "external"),
    ]
    a = assign_from_recipe(ts, RULES)
    assert [(t.name, t.leader) for t in a.tiers] == [("nano", "x"), ("base", "y"), ("premium", "g")]
    assert a.source == "recipe"


def test_rules_file_errors_name_the_field(tmp_path):
    bad = tmp_path / "t.yaml"
    bad.write_text("metric: top1\ntiers:\n  - name: nano\n    flor: 0.8\n")
    with pytest.raises(UserError) as e:
        load_rules(bad)
    assert "tiers.0.flor" in str(e.value) and str(bad) in str(e.value)
    bad.write_text("metric: accuracy\ntiers: [{name: a}]\n")
    with pytest.raises(UserError, match="unknown quality metric"):
        load_rules(bad)
    bad.write_text("tiers: [{name: a}, {name: a}]\n")
    with pytest.raises(UserError, match="repeat"):
        load_rules(bad)
    with pytest.raises(UserError, match="does not exist"):
        load_rules(tmp_path / "missing.yaml")
    assert [t.name for t in load_rules().tiers] == ["nano", "small", "base", "premium"]  # packaged default parses
