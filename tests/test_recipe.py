"""Recipe validation: every shipped recipe parses; each bad input names file, field and choices."""

import copy
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from slimserve.cli import main
from slimserve.errors import UserError
from slimserve.recipe import json_schema, load_recipe, parse_recipe

ROOT = Path(__file__).parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))

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


def test_validating_a_recipe_imports_no_torch():
    code = (
        "from slimserve.recipe import load_recipe; load_recipe('recipes/llama-tiers.yaml'); import sys; "
        "heavy = [m for m in ('torch', 'transformers', 'onnx', 'onnxruntime') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_every_method_resolves_its_apply():
    from slimserve import methods
    from slimserve.steps import STEPS

    assert len(methods.METHODS) == sum(len(STEPS[k].names()) for k in STEPS)
    for kind, method, config_ref, apply_ref in methods.METHODS:
        spec = STEPS[kind].get(method)
        assert callable(spec.apply), apply_ref
        # The method module re-exports its config, so `rtn.RTNConfig` and the registry agree.
        module = importlib.import_module(apply_ref.split(":")[0])
        assert getattr(module, spec.config.__name__) is spec.config, config_ref


def test_committed_schema_is_current():
    committed = json.loads((ROOT / "slimserve" / "schema" / "recipe.schema.json").read_text())
    assert committed == json_schema(), "regenerate: slimserve recipe schema -o slimserve/schema/recipe.schema.json"


def test_every_error_is_reported_with_file_and_field():
    d = copy.deepcopy(GOOD)
    d["variants"][0]["colour"] = "red"
    _q(d)["group_size"] = 48
    d["variants"].append({"name": "nf", "tier": "nano", "steps": [{"quantize": {"method": "nope"}}]})
    lines = _err(lambda x: x.update(d)).splitlines()
    assert lines[0] == "r.yaml: invalid recipe (3 errors):"
    assert all(line.startswith("  r.yaml: variants[") for line in lines[1:])
    text = "\n".join(lines)
    assert "variants[0]: unknown key 'colour'" in text and "allowed: description, gates" in text
    assert "variants[1].steps[0].quantize.group_size: Input should be 32, 64 or 128 (got 48)" in text
    assert "variants[2].steps[0].quantize: unknown quantize method 'nope' (allowed: awq, " in text


def test_cross_field_errors_are_reported_next_to_field_errors():
    # A field error makes pydantic skip the variant's and the recipe's after-validators; they still report.
    d = copy.deepcopy(GOOD)
    d["variants"][0]["steps"] = [{"quantize": {"method": "rtn", "bits": 3}}]
    d["variants"].append({"name": "q4", "tier": "Bad Tier", "reference": True})
    text = _err(lambda x: x.update(d))
    for part in [
        "variants[0].steps[0].quantize.bits: Input should be 4 or 8 (got 3)",
        "variants[0]: a reference variant is the unmodified base and takes no steps",
        "variants[2].tier: String should match pattern",
        "variants: variant names must be unique; repeated: q4",
        "variants: at most one variant may be the reference",
    ]:
        assert part in text, (part, text)
    assert text.count("takes no steps") == 1


def test_union_members_failing_at_one_field_give_one_line():
    d = copy.deepcopy(GOOD)
    _q(d)["overrides"] = {".*x": "skp"}
    text = _err(lambda x: x.update(d))
    assert "overrides['.*x']: Input should be 'skip', or a valid dictionary" in text and "\n" not in text


def test_recipe_check_reports_every_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**GOOD, "variants": [{"name": "a", "tier": "t", "colour": 1}]}))
    assert main(["recipe", "check", str(bad), "recipes/llama-int4.yaml", str(tmp_path / "none.yaml")]) == 2
    out, err = capsys.readouterr()
    assert "recipes/llama-int4.yaml: ok" in out
    assert f"{bad}: invalid recipe: variants[0]: unknown key 'colour'" in err
    assert "none.yaml' does not exist" in err and "2 of 3 recipe files failed" in err
    assert main(["recipe", "check", "recipes/llama-int4.yaml", "recipes/llama-tiers.yaml"]) == 0
