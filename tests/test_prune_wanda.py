"""Wanda: 2:4 and unstructured sparsity on a tiny random Llama, and bad N:M patterns."""

import copy

import pytest
import torch
from pydantic import ValidationError

from slimserve.errors import UserError
from slimserve.prune import wanda

from ._compress_helpers import calib, context, tiny_llama, write_text


def test_two_four_sparsity_on_every_decoder_linear(tmp_path):
    model = tiny_llama()
    emb = model.model.embed_tokens.weight.clone()
    ctx = context(tmp_path)
    out = wanda.apply(model, wanda.WandaConfig(pattern="2:4", calibration=calib(write_text(tmp_path))), ctx)
    for name, mod in out.model.layers.named_modules():
        if isinstance(mod, torch.nn.Linear):
            zeros = (mod.weight == 0).reshape(mod.out_features, -1, 4).sum(-1)
            assert (zeros == 2).all(), name
    assert torch.equal(out.model.embed_tokens.weight, emb)
    assert "lm_head" in ctx.skipped and ctx.records["sparsity"] == 0.5
    assert ctx.artifact_format == "hf"
    assert torch.isfinite(out(torch.randint(0, 256, (1, 16))).logits).all()


def test_unstructured_sparsity_per_row(tmp_path):
    ctx = context(tmp_path)
    cfg = wanda.WandaConfig(sparsity=0.25, calibration=calib(write_text(tmp_path)))
    out = wanda.apply(tiny_llama(), cfg, ctx)
    w = out.model.layers[0].mlp.down_proj.weight
    assert ((w == 0).sum(1) == w.shape[1] // 4).all()


def test_nm_pattern_not_dividing_input_dim_is_rejected_before_any_change(tmp_path):
    model = tiny_llama(hidden=96, heads=4, kv_heads=2)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(UserError) as e:
        wanda.apply(model, wanda.WandaConfig(pattern="32:64"), context(tmp_path))
    assert "M=64 does not divide" in str(e.value)
    assert e.value.allowed == ["2:4", "4:8", "8:16", "16:32", "unstructured"]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("bad", [{"pattern": "4:2"}, {"pattern": "two-four"}, {"pattern": "2:4", "sparsity": 0.3}])
def test_bad_patterns_fail_validation(bad):
    with pytest.raises(ValidationError):
        wanda.WandaConfig(**bad)


def test_pruned_variant_records_its_calibration_windows_for_the_bench(tmp_path):
    """The bench refuses to score a variant on the windows it calibrated on; that needs the text's hash and range."""
    import hashlib

    from slimserve.bench.quality import calibration_overlap

    text = write_text(tmp_path)
    ctx = context(tmp_path)
    wanda.apply(tiny_llama(), wanda.WandaConfig(sparsity=0.25, calibration=calib(text)), ctx)
    cal = ctx.records["calibration"]
    sha = hashlib.sha256(open(text, encoding="utf-8").read().encode("utf-8")).hexdigest()
    assert cal["text_sha256"] == sha and cal["token_range"] == [0, cal["tokens"]] and cal["tokens"] > 0
    manifest = {"steps": [{"kind": "prune", "records": ctx.records}]}
    assert "calibrated (calibration) on tokens [0," in calibration_overlap(manifest, sha, (0, 8))
    assert calibration_overlap(manifest, sha, (cal["tokens"], cal["tokens"] + 8)) is None
