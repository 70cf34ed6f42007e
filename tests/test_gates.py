"""Quality gates: the pure verdict, recipe validation, and the build-time check that keeps a bad variant out."""

import pytest

import slimserve
from slimserve.bench.record import QualityResult
from slimserve.catalog import Catalog
from slimserve.errors import GateRejected, UserError
from slimserve.gates import GateResult, evaluate
from slimserve.recipe import parse_recipe

from .helpers import write_recipe


def _q(**kw):
    return QualityResult(eval_text="t", tokens=100, **kw)


def test_verdicts():
    gates = {"max_kld": 0.08, "min_top1": 0.83, "check": "bench"}
    ok = evaluate(gates, _q(kld=0.05, top1=0.9, ppl_delta=0.1), target="onnx-cpu", run_id="r1")
    assert ok.status == "passed" and [c.ok for c in ok.checks] == [True, True] and ok.target == "onnx-cpu"
    bad = evaluate(gates, _q(kld=0.3, top1=0.9))
    assert bad.status == "rejected" and "kld 0.3 <= 0.08: FAILS" in bad.reason and "top1" not in bad.reason
    assert evaluate(gates, _q(kld=None, top1=0.9)).status == "unchecked"  # no reference: never "passed"
    assert evaluate(gates, None).status == "unchecked"
    assert evaluate(None, _q(kld=0.3)).status == "ungated"
    assert evaluate(gates, _q(), reference=True).status == "reference"
    back = GateResult.from_dict(bad.to_dict())
    assert back == bad and "rejected" in back.summary()


def _recipe(gates: str) -> dict:
    import yaml

    return yaml.safe_load(
        "version: 1\nname: t\nbase: {source: x}\nvariants:\n"
        f"  - {{name: a, tier: nano, steps: [{{quantize: {{method: rtn}}}}], gates: {gates}}}\n"
    )


@pytest.mark.parametrize(
    "gates,needle",
    [
        ("{max_kdl: 0.1}", "unknown key 'max_kdl' (did you mean 'max_kld'?) (allowed: check, max_kld"),
        ("{check: build}", "at least one of max_ppl_increase, max_kld, min_top1"),
        ("{max_kld: 0.1, check: later}", "variants[0].gates.check"),
    ],
)
def test_bad_gates_name_the_field(gates, needle):
    with pytest.raises(UserError) as e:
        parse_recipe(_recipe(gates), file="r.yaml")
    assert needle in str(e.value) and "r.yaml" in str(e.value)


VARIANTS = """\
  - {name: ref, tier: reference, reference: true}
  - name: good
    tier: small
    steps: [{quantize: {method: rtn, bits: 8, group_size: 32, symmetric: true}}]
    gates: {max_kld: 0.05, min_top1: 0.9, check: build}
  - name: bad
    tier: nano
    steps: [{quantize: {method: rtn, bits: 4, group_size: 32}}]
    gates: {max_kld: 0.000001, check: build}
"""


def test_build_time_gates_keep_a_bad_variant_out(tiny_llama_dir, tmp_path):
    pytest.importorskip("guidellm", reason="the held-out text is Pride and Prejudice from guidellm")
    recipe = write_recipe(tmp_path / "r.yaml", tiny_llama_dir, VARIANTS)
    with pytest.raises(GateRejected) as e:
        slimserve.build(recipe, catalog=tmp_path / "cat")
    assert set(e.value.rejected) == {"bad"} and "FAILS" in e.value.rejected["bad"]
    cat = Catalog.open(tmp_path / "cat")
    assert cat.names() == ["good", "ref"] and not (tmp_path / "cat" / "bad").exists()
    assert not any((tmp_path / "cat" / ".staging").iterdir())
    good = cat.get("good")
    assert good.status == "passed" and cat.get("ref").status == "reference"
    check = good.manifest["gate_check"]
    assert check["status"] == "passed" and check["target"] == "cpu" and check["run_id"] == "build"
    assert {c["metric"] for c in check["checks"]} == {"kld", "top1"} and check["tokens"] > 1000
