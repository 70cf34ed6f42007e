"""AWQ: exact scale folding, the scale and clip searches, and the recipe step on a tiny random Llama."""

import torch

from slimserve.quant import awq
from slimserve.quant.awq_math import fold_scales_into_linear, fold_scales_into_norm, search_clip, search_scale
from slimserve.quant.base import get_qparams
from slimserve.quant.math import compute_qparams, fake_quantize

from ._compress_helpers import calib, context, tiny_llama, write_text


@torch.no_grad()
def test_scales_fold_exactly_into_norms_and_producers():
    model = tiny_llama(kv_heads=8)  # no GQA: the v_proj -> o_proj group is folded too
    ids = torch.randint(0, 256, (2, 32), generator=torch.Generator().manual_seed(0))
    ref = model(ids).logits
    g = torch.Generator().manual_seed(1)
    for layer in model.model.layers:
        mods = dict(layer.named_modules())
        groups = awq.scale_groups(layer)
        assert [x["name"] for x in groups] == ["qkv", "o", "gate_up", "down"]
        for grp in groups:
            consumers = [mods[c].weight.data for c in grp["consumers"]]
            s = torch.rand(consumers[0].shape[1], generator=g) * 3 + 0.2
            if "norm" in grp:
                fold_scales_into_norm(grp["norm"].weight.data, consumers, s)
            else:
                fold_scales_into_linear(grp["prev"].weight.data, grp["prev"].bias, consumers, s)
    out = model(ids).logits
    assert not torch.equal(out, ref)  # weights really changed...
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)  # ...but not the function


def test_gqa_layer_has_no_v_to_o_group():
    layer = tiny_llama(heads=8, kv_heads=2).model.layers[0]
    assert [x["name"] for x in awq.scale_groups(layer)] == ["qkv", "gate_up", "down"]


def salient_inputs(n=1024, d=128):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g)
    x[:, :4] *= 30  # a few salient channels, as in LLM activations
    return x


def test_scale_search_protects_salient_channels():
    x = salient_inputs()
    ws = [torch.randn(64, 128, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    res = search_scale(ws, [(4, 32, False)] * 2, x, x.abs().mean(0), grid=10)
    assert res.alpha > 0 and res.error < 0.9 * res.error_unscaled
    assert res.scales[:4].min() > res.scales[4:].max()


def test_clip_search_never_worse_than_full_range():
    x = salient_inputs()
    w = torch.randn(64, 128, generator=torch.Generator().manual_seed(3))
    w[0, 0] = 8.0  # an outlier weight that stretches its group's range
    qp = search_clip(w, x, 4, 32, False, grid=10)
    plain = fake_quantize(w, compute_qparams(w, 4, 32, False))
    clipped = fake_quantize(w, qp)
    err = lambda wq: float(((x @ (w - wq).T) ** 2).mean())  # noqa: E731
    assert err(clipped) <= err(plain)
    assert torch.equal(fake_quantize(clipped, qp), clipped)


def test_awq_step_quantizes_every_decoder_linear_on_grid(tmp_path):
    model = tiny_llama(heads=8, kv_heads=2)
    ctx = context(tmp_path)
    cfg = awq.AWQConfig(bits=4, group_size=32, grid=5, calibration=calib(write_text(tmp_path)))
    out = awq.apply(model, cfg, ctx)
    linears = {n: m for n, m in out.named_modules() if isinstance(m, torch.nn.Linear)}
    quantized = {n for n, m in linears.items() if get_qparams(m) is not None}
    assert quantized == set(linears) - {"lm_head"}  # o_proj too, although GQA leaves it without a scale group
    for n in quantized:
        assert torch.equal(fake_quantize(linears[n].weight, get_qparams(linears[n])), linears[n].weight)
    assert ctx.artifact_format == "compressed-tensors"
    assert 0 <= ctx.records["alpha"]["mean"] < 1
