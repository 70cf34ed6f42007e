"""Structured pruning: GQA-aware head removal, config consistency, save/reload, bad ratios, recovery."""

import copy

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from slimserve.calibration.config import CalibrationConfig
from slimserve.errors import UserError
from slimserve.prune import structured
from slimserve.prune.recovery import RecoveryConfig, recover

from ._compress_helpers import ByteTokenizer, calib, context, tiny_llama, write_text


def test_gqa_pruning_keeps_model_runnable_config_consistent_and_reloadable(tmp_path):
    model = tiny_llama(heads=8, kv_heads=4, hidden=64, inter=128)
    ctx = context(tmp_path)
    cfg = structured.StructuredConfig(
        round_to=8, mlp_ratio=0.25, attention_ratio=0.5, calibration=calib(write_text(tmp_path))
    )
    out = structured.apply(model, cfg, ctx)
    c = out.config
    assert (c.num_attention_heads, c.num_key_value_heads, c.intermediate_size) == (4, 2, 96)
    hd = c.head_dim
    for layer in out.model.layers:
        a = layer.self_attn
        assert a.q_proj.out_features == c.num_attention_heads * hd == a.o_proj.in_features
        assert a.k_proj.out_features == a.v_proj.out_features == c.num_key_value_heads * hd
        assert a.num_key_value_groups == c.num_attention_heads // c.num_key_value_heads
        assert (
            layer.mlp.gate_proj.out_features == layer.mlp.up_proj.out_features == layer.mlp.down_proj.in_features == 96
        )
    ids = torch.randint(0, 256, (2, 24))
    logits = out(ids).logits
    assert torch.isfinite(logits).all()
    assert ctx.records["params_after"] < ctx.records["params_before"]
    assert all(len(v) == 2 for v in ctx.records["dropped_kv_groups"].values())
    out.save_pretrained(tmp_path / "pruned")
    back = AutoModelForCausalLM.from_pretrained(tmp_path / "pruned")
    torch.testing.assert_close(back(ids).logits, logits)
    # Cached generation also runs (the KV cache uses the pruned head count).
    assert back.generate(ids[:1, :4], max_new_tokens=3, do_sample=False).shape == (1, 7)


@pytest.mark.parametrize("ratio", [0.3, 0.6])
def test_attention_ratio_must_remove_whole_kv_groups(tmp_path, ratio):
    model = tiny_llama(heads=8, kv_heads=4)
    with pytest.raises(UserError) as e:
        structured.apply(model, structured.StructuredConfig(attention_ratio=ratio), context(tmp_path))
    assert e.value.allowed == [0.0, 0.25, 0.5, 0.75] and "attention_ratio" in e.value.field


def test_attention_ratio_leaving_zero_heads_is_rejected(tmp_path):
    model = tiny_llama(heads=4, kv_heads=2)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(UserError, match="zero attention heads") as e:
        structured.apply(model, structured.StructuredConfig(attention_ratio=0.999), context(tmp_path))
    assert e.value.allowed == [0.0, 0.5]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def _kld(model, ref_logits, ids):
    with torch.no_grad():
        lp = F.log_softmax(model(ids).logits, -1)
    rp = F.log_softmax(ref_logits, -1)
    return float((rp.exp() * (rp - lp)).sum(-1).mean())


def test_least_squares_compensation_reduces_error(tmp_path):
    text = write_text(tmp_path)
    base = tiny_llama(seed=3)
    ids = torch.tensor([list(text.read_text()[4000:4128].encode())])
    with torch.no_grad():
        ref = base(ids).logits
    err = {}
    for comp in (False, True):
        cfg = structured.StructuredConfig(
            round_to=8, mlp_ratio=0.5, compensate=comp, calibration=calib(text, samples=16)
        )
        err[comp] = _kld(structured.apply(copy.deepcopy(base), cfg, context(tmp_path)), ref, ids)
    assert err[True] < err[False], err


def test_recovery_records_quality_before_and_after(tmp_path):
    text = write_text(tmp_path)
    cfg = structured.StructuredConfig(
        mlp_ratio=0.5,
        calibration=calib(text),
        recovery={"steps": 2, "batch_size": 2, "seq_len": 64, "eval_windows": 2},
    )
    ctx = context(tmp_path)
    structured.apply(tiny_llama(), cfg, ctx)
    rec = ctx.records["recovery"]
    assert set(rec["before"]) == set(rec["after"]) == {"ppl", "kld"}
    assert rec["config"]["steps"] == 2 and rec["seconds"] > 0


def test_distillation_moves_a_damaged_student_towards_the_teacher(tmp_path):
    text = write_text(tmp_path)
    teacher = tiny_llama(seed=5)
    student = copy.deepcopy(teacher)
    with torch.no_grad():
        for layer in student.model.layers:
            layer.mlp.down_proj.weight.add_(torch.randn_like(layer.mlp.down_proj.weight) * 0.5)
    cfg = RecoveryConfig(steps=12, lr=2e-3, batch_size=4, seq_len=64, eval_windows=2)
    rec = recover(student, teacher, ByteTokenizer(), cfg, CalibrationConfig(**calib(text)))
    assert rec["after"]["kld"] < 0.7 * rec["before"]["kld"], rec
    assert not any(p.requires_grad for p in student.parameters())
