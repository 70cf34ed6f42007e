"""ONNX export: fp32 parity with PyTorch, KV-cache loop vs generate(), int4/int8 graphs, the recipe step."""

from pathlib import Path

import pytest
import torch

pytest.importorskip("onnxruntime")

from slimserve.errors import UserError  # noqa: E402
from slimserve.onnx.export import export_fused  # noqa: E402
from slimserve.onnx.graph import float_plan  # noqa: E402
from slimserve.onnx.packing import unpack_nbits  # noqa: E402
from slimserve.onnx.runtime import OrtRunner  # noqa: E402
from slimserve.steps import StepContext  # noqa: E402
from tests._onnx_helpers import hf_greedy, rel_err, tiny_model  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def fp32_runner(model, tmp_path_factory):
    d = tmp_path_factory.mktemp("fp32")
    return OrtRunner(export_fused(model, d, float_plan), None, threads=1)


def test_fp32_logits_match_pytorch(model, fp32_runner):
    ids = torch.randint(0, 256, (2, 33), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = model(ids).logits
    out = fp32_runner.logits(ids)
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert rel_err(out, ref) < 1e-3


@pytest.mark.parametrize("batch", [1, 2])
def test_kv_cache_loop_matches_hf_generate(model, fp32_runner, batch):
    ids = torch.randint(3, 256, (batch, 9), generator=torch.Generator().manual_seed(batch))
    res = fp32_runner.generate(ids, 24)
    expected = hf_greedy(model, ids, 24)
    assert len(set(expected[0].tolist())) > 3, "degenerate reference; pick another seed"
    assert torch.equal(res.tokens, expected)
    assert len(res.step_s) == 23 and res.ttft_s > 0
    # a second call reuses the cache buffers and must not see the previous sequence
    assert torch.equal(fp32_runner.generate(ids, 24).tokens, expected)


def test_generate_stops_at_eos_and_samples(fp32_runner):
    ids = torch.randint(3, 256, (1, 5), generator=torch.Generator().manual_seed(7))
    greedy = fp32_runner.generate(ids, 12).tokens[0]
    eos = int(greedy[4])
    stopped = fp32_runner.generate(ids, 12, eos_token_id=eos).tokens[0]
    first = int((greedy == eos).nonzero()[0])
    assert stopped.tolist() == greedy[: first + 1].tolist()
    a = fp32_runner.generate(ids, 12, do_sample=True, temperature=1.0, top_p=0.9, seed=1).tokens
    b = fp32_runner.generate(ids, 12, do_sample=True, temperature=1.0, top_p=0.9, seed=1).tokens
    assert torch.equal(a, b) and a.shape == (1, 12)


@pytest.mark.parametrize(
    "settings",
    [
        {"block_size": 32, "lm_head_bits": 4, "embedding_bits": 4},  # int zero points, int4 everywhere
        {"block_size": 32, "zero_point": "float", "lm_head_bits": 8, "embedding_bits": 8},  # Q4_1-file numerics
        {"block_size": 128, "symmetric": True},  # 64-wide inputs: padded last block; embedding falls back to 64
        {"weights": "int8", "block_size": 32, "search": True},  # weight-only 8-bit MatMulNBits, searched grid
    ],
)
def test_int4_graph_equals_dequantized_model(model, tmp_path, settings):
    """With float accuracy (level 0), the quantized graph computes the model whose weights are the unpacked codes."""
    import onnx

    from slimserve.onnx.quantize import WeightPlan
    from slimserve.onnx.steps import OnnxExportConfig

    packed = {}
    plan = WeightPlan(OnnxExportConfig(**{"weights": "int4", **settings}, accuracy_level=0))

    def recording_plan(name, w, sources):
        packed[name] = plan(name, w, sources)
        return packed[name]

    path = export_fused(model, tmp_path, recording_plan, accuracy_level=0)
    ops = [n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node]
    assert ops.count("MatMulNBits") == 4 * 2 + 1 and "MatMul" not in ops  # 4 per layer + the untied lm_head
    assert ops.count("GatherBlockQuantized") == 1
    assert packed["lm_head"].bits == settings.get("lm_head_bits", 8)  # default: llama.cpp's Q8_0 output tensor
    deq = tiny_model()
    with torch.no_grad():
        for i, layer in enumerate(deq.model.layers):
            a, m = layer.self_attn, layer.mlp
            q, k, v = unpack_nbits(packed[f"model.layers.{i}.self_attn.qkv_proj"]).split(
                [a.q_proj.out_features, a.k_proj.out_features, a.v_proj.out_features]
            )
            a.q_proj.weight.copy_(q), a.k_proj.weight.copy_(k), a.v_proj.weight.copy_(v)
            a.o_proj.weight.copy_(unpack_nbits(packed[f"model.layers.{i}.self_attn.o_proj"]))
            g, u = unpack_nbits(packed[f"model.layers.{i}.mlp.gate_up_proj"]).chunk(2)
            m.gate_proj.weight.copy_(g), m.up_proj.weight.copy_(u)
            m.down_proj.weight.copy_(unpack_nbits(packed[f"model.layers.{i}.mlp.down_proj"]))
        deq.lm_head.weight = torch.nn.Parameter(unpack_nbits(packed["lm_head"]))  # untied, like the graph
        deq.model.embed_tokens.weight = torch.nn.Parameter(unpack_nbits(packed["model.embed_tokens"]))
        ids = torch.randint(0, 256, (1, 20), generator=torch.Generator().manual_seed(0))
        ref = deq(ids).logits
    out = OrtRunner(path, None, threads=1).logits(ids)
    assert rel_err(out, ref) < 1e-3


def _ctx(d: Path) -> StepContext:
    return StepContext(base_dir=d, work_dir=d, tokenizer=None, field="variants[0].steps[0].export")


@pytest.mark.parametrize(
    "settings,op",
    [
        ({"weights": "int4", "block_size": 128}, "MatMulNBits"),
        ({"weights": "int8"}, "MatMulNBits"),
    ],
)
def test_export_step_writes_a_self_describing_dir(model, tmp_path, settings, op):
    from slimserve.onnx.steps import OnnxExportConfig, apply_onnx

    ctx = _ctx(tmp_path)
    apply_onnx(model, OnnxExportConfig(**settings), ctx)
    assert ctx.artifact_format == "onnx"
    assert {"model.onnx", "model.onnx_data", "config.json"} <= {p.name for p in tmp_path.iterdir()}
    assert ctx.records["onnxruntime_ops"][op] == 9
    assert "lm_head" in ctx.layers or "lm_head/MatMul" in ctx.layers
    ids = torch.randint(0, 256, (1, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(ids).logits
    out = OrtRunner(tmp_path / "model.onnx", None, threads=1).logits(ids)
    # random tiny weights are harsh on 4 bits; exactness of the int4 path is checked above
    assert torch.nn.functional.cosine_similarity(out.flatten(), ref.flatten(), dim=0) > 0.8


def test_directory_loads_in_optimum_without_slimserve(model, tmp_path):
    optimum_ort = pytest.importorskip("optimum.onnxruntime")
    export_fused(model, tmp_path, float_plan)
    om = optimum_ort.ORTModelForCausalLM.from_pretrained(tmp_path)
    ids = torch.randint(3, 256, (1, 6), generator=torch.Generator().manual_seed(5))
    out = om.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=10, do_sample=False, pad_token_id=2)
    assert torch.equal(out[:, 6:], hf_greedy(model, ids, 10))


def test_earlier_quantize_step_grid_is_reused(tmp_path):
    from slimserve.onnx.quantize import WeightPlan
    from slimserve.onnx.steps import OnnxExportConfig
    from slimserve.quant.base import attach_qparams, set_weight
    from slimserve.quant.math import compute_qparams, fake_quantize

    m = tiny_model()
    for name, mod in m.named_modules():
        if isinstance(mod, torch.nn.Linear) and name != "lm_head":
            qp = compute_qparams(mod.weight.detach(), 4, 64, symmetric=True)
            set_weight(mod, fake_quantize(mod.weight.detach(), qp))
            attach_qparams(mod, qp)
    ctx = _ctx(tmp_path)
    plan = WeightPlan(OnnxExportConfig(weights="int4", block_size=32), ctx)
    export_fused(m, tmp_path, plan)
    assert ctx.layers["model.layers.0.self_attn.qkv_proj"]["grid"] == "earlier quantize step"
    assert ctx.layers["model.layers.0.self_attn.qkv_proj"]["block_size"] == 64
    assert ctx.layers["lm_head"]["grid"] == "rtn"  # no grid attached: rounded with the export step's block


def test_optimum_graph_int4_covers_tied_lm_head(model, tmp_path):
    pytest.importorskip("optimum.exporters.onnx")
    from slimserve.onnx.steps import OnnxExportConfig, apply_onnx

    ctx = _ctx(tmp_path)
    apply_onnx(model, OnnxExportConfig(graph="optimum", weights="int4"), ctx)
    assert any("lm_head" in n for n in ctx.layers), sorted(ctx.layers)
    assert ctx.records["onnxruntime_ops"]["MatMulNBits"] == 15  # 7 projections x 2 layers + lm_head


def test_unsupported_architecture_is_a_user_error():
    from transformers import GPT2Config, GPT2LMHeadModel

    from slimserve.onnx.graph import build_decoder

    m = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64))
    with pytest.raises(UserError, match="model_type 'gpt2'.*graph: optimum"):
        build_decoder(m, float_plan)


def test_missing_execution_provider_names_alternatives(tmp_path, model):
    from slimserve.onnx.targets import OnnxCUDA

    path = export_fused(model, tmp_path, float_plan)
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA; the refusal cannot be exercised")
    assert "CUDA" in OnnxCUDA().available()
    with pytest.raises(UserError, match="onnx-cpu"):
        OrtRunner(path, None, device="cuda")
