"""Recipe validation: every shipped recipe parses; each bad input names file, field and choices."""

import copy
from pathlib import Path

import pytest
import yaml

from slimserve.errors import UserError
from slimserve.recipe import json_schema, load_recipe, parse_recipe

RECIPES = sorted((Path(__file__).parents[1] / "recipes").glob("*.yaml"))

GOOD = {
    "version": 1,
    "name": "t",
    "base": {"source": "smollm2-135m"},
    "variants": [
        {"name": "ref", "tier": "reference", "reference": True},
        {"name": "q4", "tier": "nano", "steps": [{"quantize": {"method": "rtn", "bits": 4, "group_size": 128}}]},
    ],
}


def test_recipes_exist():
    assert any(p.name == "llama-int4.yaml" for p in RECIPES)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_shipped_recipe_validates(path):
    r = load_recipe(path)
    assert r.variants and r.version == 1


def _err(mutate) -> str:
    d = copy.deepcopy(GOOD)
    mutate(d)
    with pytest.raises(UserError) as e:
        parse_recipe(d, file="r.yaml")
    return str(e.value)


def _q(d):
    return d["variants"][1]["steps"][0]["quantize"]


@pytest.mark.parametrize(
    "mutate,expected",
    [
        (
            lambda d: _q(d).update(goup_size=64),
            [
                "r.yaml",
                "variants[1].steps[0].quantize",
                "unknown key 'goup_size'",
                "did you mean 'group_size'",
                "allowed:",
            ],
        ),
        (
            lambda d: _q(d).update(group_size=48),
            ["variants[1].steps[0].quantize.group_size", "32, 64 or 128", "got 48"],
        ),
        (lambda d: _q(d).update(bits=3), ["quantize.bits", "4 or 8", "got 3"]),
        (lambda d: _q(d).update(bits="four"), ["quantize.bits", "got 'four'"]),
        (lambda d: _q(d).update(method="magic"), ["quantize", "magic", "rtn"]),
        (
            lambda d: d["variants"][1]["steps"].append({"bake": {}}),
            ["variants[1].steps[1]", "exactly one key", "quantize"],
        ),
        (lambda d: d.update(version=2), ["version", "Input should be 1"]),
        (lambda d: d["variants"].append(copy.deepcopy(d["variants"][1])), ["variants", "unique", "q4"]),
        (lambda d: d["variants"][1].update(name="Bad Name"), ["variants[1].name", "pattern"]),
        (lambda d: d["variants"][0].update(steps=[{"quantize": {"method": "rtn"}}]), ["reference", "takes no steps"]),
        (lambda d: d["base"].pop("source"), ["base.source", "Field required"]),
    ],
)
def test_bad_input_messages(mutate, expected):
    msg = _err(mutate)
    for part in expected:
        assert part in msg, (part, msg)


def test_unreadable_yaml(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("version: 1\nname: [unclosed\n")
    with pytest.raises(UserError, match=r"broken.yaml: not readable as YAML"):
        load_recipe(p)


def test_missing_recipe_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")


def test_per_layer_overrides_validate():
    d = copy.deepcopy(GOOD)
    _q(d)["overrides"] = {r".*down_proj": "skip", r"model\.layers\.0\..*": {"group_size": 32}}
    r = parse_recipe(d)
    q = r.variants[1].steps[0].quantize
    assert q.overrides[".*down_proj"] == "skip" and q.overrides[r"model\.layers\.0\..*"].group_size == 32
    _q(d)["overrides"] = {".*": {"group_size": 48}}
    with pytest.raises(UserError, match="group_size"):
        parse_recipe(d)


def test_json_schema_lists_methods_and_forbids_extras():
    s = json_schema()
    text = yaml.safe_dump(s)
    assert "rtn" in text and s["additionalProperties"] is False
    assert set(s["required"]) >= {"version", "name", "base", "variants"}


def test_hash_is_stable_and_content_based():
    a, b = parse_recipe(copy.deepcopy(GOOD)), parse_recipe(copy.deepcopy(GOOD))
    assert a.content_hash() == b.content_hash()
    d = copy.deepcopy(GOOD)
    _q(d)["group_size"] = 64
    assert parse_recipe(d).content_hash() != a.content_hash()
