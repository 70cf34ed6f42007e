"""A tiering that leaves tiers without a target of their own says so, and what to do; an export that cannot be
made names the measurements it is missing."""

from __future__ import annotations

import json

import pytest
import yaml

import slimserve.router as router
from slimserve.cli import main
from slimserve.errors import UserError
from slimserve.router.tiers import Assignment, TierRules, assign

from .router_demo import demo
from .router_helpers import make_catalog, manifest, record, use_records
from .test_router_pareto import RULES, _t

FP32 = "smollm2-fp32@cpu"


def test_borrowed_tiers_are_marked_and_explained():
    a = assign([_t("int8", 0.2, {"top1": 0.98}), _t("gpt", 5, {}, kind="external")], RULES)
    assert [(t.name, t.leader, t.borrowed_from) for t in a.tiers] == [
        ("nano", "int8", "base"), ("small", "int8", "base"), ("base", "int8", None), ("premium", "gpt", None),
    ]  # fmt: skip
    nano, small, shared = a.notes
    assert nano.startswith(
        "tier nano has no target of its own: nothing on the front with top1 >= 0.8 is cheaper than base's leader; "
        "it routes to int8 (borrowed from base). To fill it, build a variant cheaper than int8 with top1 >= 0.8 but "
        "short of small's floor 0.9"
    )
    assert "recipes/llama-tiers.yaml" in nano and "onnx-cpu" in nano
    assert "short of base's floor 0.97" in small
    assert shared == (
        "tiers nano, small, base all route to int8 ($0.2/1M blended): routing among them saves nothing until a "
        "cheaper target fills the lower tiers"
    )


def test_tiers_with_targets_of_their_own_say_nothing():
    a = assign([_t("int4", 0.1, {"top1": 0.85}), _t("int4-g32", 0.15, {"top1": 0.92}), _t("int8", 0.2, {"top1": 0.98}),
                _t("gpt", 5, {}, kind="external")], RULES)  # fmt: skip
    assert all(t.borrowed_from is None for t in a.tiers) and a.notes == []


def test_an_external_tier_that_borrows_asks_for_an_external_model():
    rules = TierRules.model_validate(
        {"tiers": [{"name": "cloud", "kind": "external"}, {"name": "cloud-best", "kind": "external", "floor": 0.5}]}
    )
    a = assign([_t("gpt", 5, {"top1": 0.9}, kind="external")], rules)
    assert a.tiers[0].borrowed_from == "cloud-best"
    assert "nothing external on the front is cheaper than cloud-best's leader" in a.notes[0]
    assert "declare an external model cheaper than gpt with `slimserve catalog add-external" in a.notes[0]


def test_stored_assignments_from_before_borrowing_still_load():
    d = assign([_t("int8", 0.2, {"top1": 0.98}), _t("gpt", 5, {}, kind="external")], RULES).to_dict()
    for t in d["tiers"]:
        del t["borrowed_from"]
    assert [t.borrowed_from for t in Assignment.from_dict(d).tiers] == [None] * 4


def test_catalog_tier_on_the_demo_says_what_is_missing(tmp_path, capsys):
    cat = demo(tmp_path)
    assert main(["catalog", "tier", "--catalog", str(cat.root)]) == 0
    out = capsys.readouterr().out
    assert f"nano       leader {FP32} (borrowed from base)" in out
    assert f"small      leader {FP32} (borrowed from base)" in out
    nano = "note: tier nano has no target of its own: nothing on the front with top1 >= 0.8 is cheaper than "
    assert f"{nano}base's leader; it routes to {FP32} (borrowed from base)" in out
    assert f"note: tiers nano, small, base all route to {FP32}" in out and "saves nothing" in out
    assert "no external model is declared" in out  # why the optional premium tier is missing
    assert "RouteLLM pair: none: " in out and "smollm2-int8@cpu has 0.969 but leads no tier below" in out


def test_exports_carry_the_borrowed_note(tmp_path, capsys):
    cat = demo(tmp_path)
    lite = router.export("litellm", tmp_path / "r.yaml", catalog=cat).read_text()
    assert "# note: tier nano has no target of its own" in lite
    assert f"# note: tiers nano, small, base all route to {FP32}" in lite
    info = {m["model_name"]: m["model_info"] for m in yaml.safe_load(lite)["model_list"]}
    assert info["nano"]["slimserve_borrowed_from"] == "base" and info["small"]["slimserve_borrowed_from"] == "base"
    assert "slimserve_borrowed_from" not in info["base"]
    assert info["nano"]["slimserve_note"] == (
        f"tier nano has no target of its own: it routes to {FP32}, which belongs to base"
    )
    doc = json.loads(router.export("json", tmp_path / "c.json", catalog=cat).read_text())
    assert [t["borrowed_from"] for t in doc["tiers"]] == ["base", "base", None]
    assert any(n.startswith("tier small has no target of its own") for n in doc["notes"])
    by = {t["id"]: t for t in doc["targets"]}
    assert by[FP32]["tier"] == "base" and by[FP32]["tiers"] == ["nano", "small", "base"]  # its own tier first
    assert "weak floor top1 >= 0.9" in doc["routellm"]["problem"]
    orr = json.loads(router.export("openrouter", tmp_path / "o.json", catalog=cat).read_text())
    (fp32,) = [d for d in orr["data"] if d["id"] == FP32]
    assert fp32["name"] == "slimserve base: smollm2-fp32 (cpu)"
    assert "also serves nano, small (tiers without a target of their own)" in fp32["description"]
    assert "routes to" in capsys.readouterr().err  # the notes are said on stderr too


def test_routellm_names_the_targets_and_their_values_against_the_floor(tmp_path, capsys):
    cat = demo(tmp_path)
    out = tmp_path / "rl.yaml"
    rc = main(["catalog", "export", "--format", "routellm", "-o", str(out), "--catalog", str(cat.root)])
    err = capsys.readouterr().err
    assert rc == 2 and not out.exists()
    assert f"RouteLLM needs a weak model cheaper than the strong one, {FP32} (leader of nano, small, base)" in err
    assert (
        f"weak floor top1 >= 0.9: smollm2-int8@cpu has 0.969 but leads no tier below the strongest (dominated by "
        f"{FP32}, which costs no more and is at least as good)"
    ) in err
    assert "left out as rejected by their gates: smollm2-int4-g128@cpu (top1 0.685)" in err
    assert "To get a pair, declare an external premium model" in err and "lower routellm.weak_floor" in err
    assert "Traceback" not in err


def test_routellm_without_any_top1_measurement_says_to_measure_quality(tmp_path):
    cat = make_catalog(tmp_path / "c", [manifest("a", "nano"), manifest("b", "small")])
    use_records(cat, [record("a", usd_in=0.1), record("b", usd_in=0.2)])  # speed and cost only, no quality
    rules = tmp_path / "t.yaml"
    rules.write_text("routellm: {weak_floor: 0.9}\ntiers: [{name: all}]\n")
    with pytest.raises(UserError) as e:
        router.export("routellm", tmp_path / "rl.yaml", catalog=cat, rules=rules)
    msg = str(e.value)
    assert "RouteLLM needs a weak model with top1 >= 0.9 (routellm.weak_floor), but no target has a top1 " in msg
    assert "run `slimserve bench VARIANT` with quality measured" in msg


def test_a_floor_without_measurements_says_to_measure_quality(tmp_path):
    cat = make_catalog(tmp_path / "c", [manifest("a", "nano")])
    use_records(cat, [record("a", usd_in=0.1)])
    with pytest.raises(UserError) as e:
        router.tier(cat)
    assert "tier rule 'nano'" in str(e.value) and "no target has a top1 measurement: run `slimserve bench" in str(
        e.value
    )


def test_routellm_member_that_meets_the_floor_is_named():
    rules = TierRules.model_validate(
        {"routellm": {"weak_floor": 0.9}, "tiers": [{"name": "lo", "floor": 0.8}, {"name": "hi", "floor": 0.99}]}
    )
    a = assign([_t("x", 0.1, {"top1": 0.85}), _t("y", 0.2, {"top1": 0.95}), _t("ref", 0.4, {"top1": 1.0})], rules)
    assert a.routellm["weak"] is None
    assert (
        "y has 0.95 but leads no tier below the strongest (it is only a member of lo (led by x))"
        in (a.routellm["problem"])
    )
