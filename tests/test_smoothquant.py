"""SmoothQuant on a tiny random Llama: the float function is unchanged, activation outliers move into the weights."""

import copy

import torch

from slimserve.quant import smooth
from slimserve.quant.configs import SmoothQuantConfig

from ._compress_helpers import calib, context, tiny_llama, write_text


def test_scales_follow_alpha():
    x = torch.tensor([1.0, 100.0, 4.0])
    w = [torch.ones(3, 3)]
    assert torch.allclose(smooth.smooth_scales(x, w, 0.0), torch.ones(3))
    assert torch.allclose(smooth.smooth_scales(x, w, 1.0), x)
    assert torch.allclose(smooth.smooth_scales(x, w, 0.5), x.sqrt())


def test_smoothing_keeps_the_function_and_flattens_activations(tmp_path):
    model = tiny_llama(heads=4, kv_heads=2)
    with torch.no_grad():  # one outlier channel in the first layer's normed input, as real models have
        model.model.layers[0].input_layernorm.weight[3] = 40.0
    ref = copy.deepcopy(model)
    ids = torch.randint(0, 256, (2, 32), generator=torch.Generator().manual_seed(0))
    ctx = context(tmp_path)
    out = smooth.apply(model, SmoothQuantConfig(alpha=0.5, calibration=calib(write_text(tmp_path))), ctx)
    with torch.no_grad():
        torch.testing.assert_close(out(ids).logits, ref(ids).logits, rtol=1e-4, atol=1e-4)
        before = ref.model.layers[0].input_layernorm.weight.abs()
        after = out.model.layers[0].input_layernorm.weight.abs()
    assert after.max() / after.median() < 0.5 * before.max() / before.median()
    rec = ctx.records["smoothed"]
    assert rec["groups"] == 2 * 3 and ctx.records["calibration"]["token_range"][0] == 0  # qkv, gate_up, down per layer
    assert ctx.artifact_format == "hf"  # still a float model; an int8 export follows
