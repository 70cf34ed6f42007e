"""GPTQ: the pure algorithm against round-to-nearest, and the recipe step on a tiny random Llama."""

import copy

import pytest
import torch

from slimserve.errors import UserError
from slimserve.quant import gptq
from slimserve.quant.base import get_qparams
from slimserve.quant.gptq_math import gptq_quantize, layer_output_error
from slimserve.quant.math import compute_qparams, fake_quantize

from ._compress_helpers import calib, context, tiny_llama, write_text


def correlated_inputs(n=2048, d=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g) / d**0.5
    scale = torch.rand(d, generator=g) * 4 + 0.1  # uneven channel magnitudes, like real activations
    return (torch.randn(n, d, generator=g) @ mix) * scale


@pytest.mark.parametrize("group_size", [32, None])
@pytest.mark.parametrize("act_order", [False, True])
@pytest.mark.parametrize("symmetric", [False, True])
def test_gptq_beats_rtn_on_layer_output(group_size, act_order, symmetric):
    x = correlated_inputs()
    w = torch.randn(64, 128, generator=torch.Generator().manual_seed(1))
    h = 2 * x.T @ x / x.shape[0]
    wq, qp = gptq_quantize(w, h, 4, group_size, symmetric, act_order=act_order)
    rtn = fake_quantize(w, compute_qparams(w, 4, group_size, symmetric))
    err_gptq, err_rtn = layer_output_error(w, wq, x), layer_output_error(w, rtn, x)
    assert err_gptq < 0.8 * err_rtn, (err_gptq, err_rtn)
    # Exactly on the grid of the returned parameters: the writer re-derives the same codes.
    assert torch.equal(fake_quantize(wq, qp), wq)
    n_groups = 1 if group_size is None else 128 // group_size
    assert qp.scale.shape == (64, n_groups) and qp.bits == 4 and qp.group_size == group_size
    assert (qp.zero_point is None) == symmetric


def test_gptq_handles_dead_inputs():
    x = correlated_inputs(d=64)
    x[:, 5] = 0  # a channel never active: zero Hessian row
    w = torch.randn(16, 64)
    wq, qp = gptq_quantize(w, 2 * x.T @ x / len(x), 4, 32, False)
    assert torch.isfinite(wq).all() and torch.equal(fake_quantize(wq, qp), wq)


def test_gptq_step_quantizes_every_decoder_linear(tmp_path):
    model = tiny_llama()
    ctx = context(tmp_path)
    cfg = gptq.GPTQConfig(bits=4, group_size=32, calibration=calib(write_text(tmp_path)))
    out = gptq.apply(model, cfg, ctx)
    linears = {n: m for n, m in out.named_modules() if isinstance(m, torch.nn.Linear)}
    quantized = {n for n, m in linears.items() if get_qparams(m) is not None}
    assert quantized == set(linears) - {"lm_head"}
    assert "lm_head" in ctx.skipped
    for n in quantized:
        m = linears[n]
        assert torch.equal(fake_quantize(m.weight, get_qparams(m)), m.weight), n
    assert ctx.artifact_format == "compressed-tensors"
    assert ctx.records["calibration"]["tokens"] == 8 * 64
    assert all(v["sqnr_db"] > 10 for v in ctx.layers.values())


def test_gptq_step_reports_layers_whose_width_does_not_divide_the_group(tmp_path):
    model = tiny_llama(hidden=96, heads=4, kv_heads=2, inter=128)
    ctx = context(tmp_path)
    cfg = gptq.GPTQConfig(bits=4, group_size=64, on_indivisible="skip", calibration=calib(write_text(tmp_path)))
    gptq.apply(model, cfg, ctx)
    # in_features 96 (q/k/v/o/gate/up) does not divide 64; down_proj (128) does.
    assert {n for n in ctx.layers} == {f"model.layers.{i}.mlp.down_proj" for i in range(2)}
    assert "not divisible by group size 64" in ctx.skipped["model.layers.0.self_attn.q_proj"]


def test_gptq_step_falls_back_to_a_smaller_group_by_default(tmp_path):
    model = tiny_llama(hidden=96, heads=4, kv_heads=2, inter=128)
    ctx = context(tmp_path)
    gptq.apply(model, gptq.GPTQConfig(bits=4, group_size=64, calibration=calib(write_text(tmp_path))), ctx)
    assert ctx.layers["model.layers.0.self_attn.q_proj"]["group_size"] == 32
    assert ctx.layers["model.layers.0.mlp.down_proj"]["group_size"] == 64
    assert get_qparams(model.model.layers[0].self_attn.q_proj).group_size == 32


def test_gptq_rejects_calibration_text_too_short(tmp_path):
    model = tiny_llama()
    before = copy.deepcopy(model.state_dict())
    cfg = gptq.GPTQConfig(calibration=calib(write_text(tmp_path, n_chars=500), samples=16, seq_len=64))
    with pytest.raises(UserError) as e:
        gptq.apply(model, cfg, context(tmp_path))
    assert "calibration" in e.value.field and "16 x 64" in str(e.value)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
