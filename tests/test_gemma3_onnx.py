"""Gemma 3 on ONNX: the stock optimum-onnx graph (gemma3_text config) runs on onnx-cpu's optimum-graph loop with the
logits of PyTorch, its MatMulNBits variants build from recipes/gemma3-int4.yaml, and an architecture a graph path
cannot export is refused with the supported types listed."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("optimum.exporters.onnx")

import slimserve  # noqa: E402
from slimserve.bench.targets import get_target  # noqa: E402
from slimserve.errors import UserError  # noqa: E402
from slimserve.testing import make_tiny_gemma3  # noqa: E402

from .helpers import REPO, write_recipe  # noqa: E402


@pytest.fixture(scope="module")
def tiny_gemma_dir(tmp_path_factory):
    return make_tiny_gemma3(tmp_path_factory.mktemp("gemma") / "tiny-gemma3")


@pytest.fixture(scope="module")
def torch_model(tiny_gemma_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_gemma_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def built(tiny_gemma_dir, tmp_path_factory):
    """The recipe's ONNX variants plus a float optimum graph, built on the tiny Gemma 3."""
    cat = tmp_path_factory.mktemp("cat")
    recipe = write_recipe(
        tmp_path_factory.mktemp("r") / "r.yaml",
        tiny_gemma_dir,
        "  - name: onnx-float\n    tier: small\n    steps: [{export: {format: onnx, graph: optimum}}]\n",
    )
    rows = slimserve.build(recipe, catalog=cat)
    rows += slimserve.build(
        REPO / "recipes" / "gemma3-int4.yaml",
        catalog=cat,
        base=str(tiny_gemma_dir),
        variants=["gemma3-onnx-int8", "gemma3-onnx-int4"],
    )
    return {r.name: r for r in rows}


def _runner(row):
    target = get_target("onnx-cpu")
    assert target.supports(row.manifest) is None
    return target.load(row.path, row.manifest, threads=1)


def _sqnr_db(ref: torch.Tensor, x: torch.Tensor) -> float:
    return float(10 * torch.log10(ref.pow(2).mean() / (ref - x).pow(2).mean()))


def test_optimum_graph_matches_torch_logits_past_the_sliding_window(built, torch_model):
    runner = _runner(built["onnx-float"])
    assert runner.loop == "ort-optimum-kv-concat"
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
