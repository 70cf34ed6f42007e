"""Calibrated and mixed-precision grids on the fast ONNX path: the export packs an earlier quantize step's codes,
scales and zero points into MatMulNBits unchanged (int4 and int8), honours a mixed-precision plan, and refuses a
grid MatMulNBits cannot hold unless the recipe allows re-rounding."""

import onnx
import pytest
import torch

pytest.importorskip("onnxruntime")

from slimserve.errors import UserError  # noqa: E402
from slimserve.onnx.export import export_fused  # noqa: E402
from slimserve.onnx.packing import unpack_nbits  # noqa: E402
from slimserve.onnx.quantize import WeightPlan  # noqa: E402
from slimserve.onnx.runtime import OrtRunner  # noqa: E402
from slimserve.onnx.steps import OnnxExportConfig, apply_onnx  # noqa: E402
from slimserve.quant import gptq, rtn  # noqa: E402
from slimserve.quant.base import get_qparams  # noqa: E402
from slimserve.quant.configs import GPTQConfig, MixedConfig, RTNConfig  # noqa: E402
from slimserve.quant.math import fake_quantize  # noqa: E402

from ._compress_helpers import calib, context, tiny_llama, write_text  # noqa: E402
from ._onnx_helpers import rel_err  # noqa: E402


def _export(model, tmp_path, ctx, **settings):
    packed = {}
    plan = WeightPlan(OnnxExportConfig(accuracy_level=0, **settings), ctx)

    def recording(name, w, sources):
        packed[name] = plan(name, w, sources)
        return packed[name]

    path = export_fused(model, tmp_path / "onnx", recording, accuracy_level=0)
    return path, packed


def _node_bits(path) -> dict[str, int]:
    g = onnx.load(str(path), load_external_data=False).graph
    out = {}
    for n in g.node:
        if n.op_type in ("MatMulNBits", "GatherBlockQuantized"):
            out[n.name.split("/")[0]] = next(a.i for a in n.attribute if a.name == "bits")
    return out


def _ids():
    return torch.randint(0, 256, (2, 24), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("bits", [4, 8])
def test_gptq_codes_go_into_matmulnbits_unchanged(tmp_path, bits):
    """ONNX logits == PyTorch logits of the same GPTQ weights (fake-quant), lm_head included (GPTQ covers it)."""
    model = tiny_llama(hidden=64, inter=128, heads=4, kv_heads=2)
    ctx = context(tmp_path)
    cfg = GPTQConfig(bits=bits, group_size=32, ignore=[], search=True, calibration=calib(write_text(tmp_path)))
    model = gptq.apply(model, cfg, ctx)
    assert get_qparams(model.lm_head) is not None and model.lm_head.weight is not model.model.embed_tokens.weight
    assert not model.config.tie_word_embeddings
    path, packed = _export(model, tmp_path, ctx, weights="int4", quantize_embedding=False)
    assert all(ctx.layers[n]["grid"] == "earlier quantize step" for n in packed if n != "model.embed_tokens")
    # the packed codes are exactly the step's grid
    torch.testing.assert_close(unpack_nbits(packed["lm_head"]), model.lm_head.weight, rtol=0, atol=0)
    q = model.model.layers[1].self_attn
    qkv = torch.cat([q.q_proj.weight, q.k_proj.weight, q.v_proj.weight])
    torch.testing.assert_close(unpack_nbits(packed["model.layers.1.self_attn.qkv_proj"]), qkv, rtol=0, atol=0)
    assert set(_node_bits(path).values()) == {bits}
    with torch.no_grad():
        ref = model(_ids()).logits
    assert rel_err(OrtRunner(path, None, threads=1).logits(_ids()), ref) < 1e-3


def test_int8_export_is_weight_only_matmulnbits(tmp_path):
    model = tiny_llama(hidden=64, inter=128, heads=4, kv_heads=2)
    ctx = context(tmp_path)
    apply_onnx(model, OnnxExportConfig(weights="int8", block_size=32), ctx)
    ops = ctx.records["onnxruntime_ops"]
    assert ops["MatMulNBits"] == 4 * 2 + 1 and "MatMulInteger" not in ops and "DynamicQuantizeLinear" not in ops
    assert set(_node_bits(ctx.work_dir / "model.onnx").values()) == {8}
    assert ctx.layers["lm_head"]["bits"] == 8 and ctx.layers["model.embed_tokens"]["bits"] == 8


def test_rtn_int8_grid_is_reused_and_matches_pytorch(tmp_path):
    model = tiny_llama(hidden=64, inter=128, heads=4, kv_heads=2)
    ctx = context(tmp_path)
    model = rtn.apply(model, RTNConfig(bits=8, group_size=32, symmetric=True, search=True), ctx)
    path, _ = _export(model, tmp_path, ctx, weights="int8", quantize_lm_head=False, quantize_embedding=False)
    assert ctx.layers["model.layers.0.mlp.gate_up_proj"]["grid"] == "earlier quantize step"
    with torch.no_grad():
        ref = model(_ids()).logits
    assert rel_err(OrtRunner(path, None, threads=1).logits(_ids()), ref) < 1e-3


def test_mixed_plan_sets_each_node_and_the_head(tmp_path):
    model = tiny_llama(hidden=64, inter=128, heads=4, kv_heads=2)
    ctx = context(tmp_path)
    text = write_text(tmp_path)
    mixed = MixedConfig(budget_bpw=5.0, include_head=True, calibration=calib(text, samples=2, seq_len=64))
    model = rtn.apply(model, RTNConfig(bits=4, group_size=32, mixed=mixed), ctx)
    plan = ctx.records["mixed"]
    assert 4.0 < plan["achieved_bpw"] <= 5.0 and plan["high"]
    units = plan["units"]
    assert len(units) == 4 * 2 + 2 and all(u["sensitivity"] is not None and u["why"] for u in units.values())
    path, _ = _export(model, tmp_path, ctx, weights="int4")
    bits = _node_bits(path)
    for name, unit in units.items():
        node = "embed" if name == "model.embed_tokens" else name
        assert bits[node] == unit["bits"], name
    # the tied lm_head and the embedding follow the plan (the step left them float)
    assert ctx.layers["lm_head"]["bits"] == units["lm_head"]["bits"] and "mixed" in ctx.layers["lm_head"]["why"]


def test_per_channel_grid_fails_naming_the_layer_and_block_sizes(tmp_path):
    model = tiny_llama(hidden=64, inter=128, heads=4, kv_heads=2)
    ctx = context(tmp_path)
    model = rtn.apply(model, RTNConfig(bits=8, group_size=None, symmetric=True), ctx)
    with pytest.raises(UserError) as e:
        _export(model, tmp_path, ctx, weights="int8")
    msg = str(e.value)
    assert "model.layers.0.self_attn.qkv_proj" in msg and "16, 32, 64, 128, 256" in msg
    assert "on_unsupported_grid: reround" in msg and e.value.field == ctx.field


def test_reround_is_explicit_and_recorded(tmp_path):
    model = tiny_llama(hidden=64, inter=128, heads=4, kv_heads=2)
    ctx = context(tmp_path)
    model = rtn.apply(model, RTNConfig(bits=8, group_size=None, symmetric=True), ctx)
    _export(model, tmp_path, ctx, weights="int8", on_unsupported_grid="reround")
    rec = ctx.layers["model.layers.0.self_attn.qkv_proj"]
    assert "rounded again" in rec["note"] and rec["grid"] == "rtn" and rec["bits"] == 8


def test_quantizing_a_tied_head_unties_it_first(tmp_path):
    model = tiny_llama(hidden=64, inter=128, heads=4, kv_heads=2)
    emb_before = model.model.embed_tokens.weight.detach().clone()
    ctx = context(tmp_path)
    model = rtn.apply(model, RTNConfig(bits=4, group_size=32, ignore=[]), ctx)
    assert torch.equal(model.model.embed_tokens.weight, emb_before)  # the embedding was not rounded with it
    assert torch.equal(fake_quantize(model.lm_head.weight, get_qparams(model.lm_head)), model.lm_head.weight)
    assert any("untied" in msg for msg in ctx.records["notes"])
