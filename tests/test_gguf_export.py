"""The GGUF export step without llama.cpp: read back with gguf.GGUFReader and transformers' GGUF loader; bad input."""

import json

import numpy as np
import pytest
import torch

pytest.importorskip("gguf")

import slimserve  # noqa: E402
from slimserve.bench.metrics import kl_divergence  # noqa: E402
from slimserve.errors import UserError, UserErrors  # noqa: E402
from slimserve.llamacpp import writer  # noqa: E402
from slimserve.llamacpp.tools import ENV, find_tool  # noqa: E402

from .helpers import run_cli, write_recipe  # noqa: E402

VARIANTS = """  - name: ref
    tier: reference
    reference: true
  - name: g-f32
    tier: t
    steps: [{export: {format: gguf, type: F32}}]
  - name: g-q8
    tier: t
    steps: [{export: {format: gguf, type: q8_0}}]
  - name: g-q4
    tier: t
    steps: [{export: {format: gguf, type: Q4_0}}]
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_llama_dir):
    d = tmp_path_factory.mktemp("gguf")
    rows = slimserve.build(write_recipe(d / "r.yaml", tiny_llama_dir, VARIANTS), catalog=d / "cat")
    return {r.name: r for r in rows}


def _ref_logits(tiny_llama_dir, ids):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        return model, model(ids).logits


def test_permute_heads_round_trips():
    w = np.arange(8 * 3 * 5, dtype=np.float32).reshape(8 * 3, 5)
    p = writer.permute_heads(w, 3)
    assert not np.array_equal(p, w)
    np.testing.assert_array_equal(writer.unpermute_heads(p, 3), w)
    # head 0's rows: HF halves [0..3] and [4..7] become interleaved pairs (0, 4), (1, 5), ...
    assert p[:8, 0].tolist() == [w[i, 0] for i in (0, 4, 1, 5, 2, 6, 3, 7)]


def test_reader_sees_llama_cpp_names_types_and_metadata(built, tiny_llama_dir):
    from gguf import GGUFReader
    from gguf.quants import dequantize
    from safetensors.torch import load_file

    row = built["g-q4"]
    assert row.format == "gguf" and row.manifest["steps"][0]["records"]["quantizer"] == "gguf-py"
    r = GGUFReader(row.path / "model.gguf")
    f = {k: v.contents() for k, v in r.fields.items() if not k.startswith("tokenizer.ggml.merges")}
    cfg = json.loads((tiny_llama_dir / "config.json").read_text())
    assert f["general.architecture"] == "llama" and f["general.file_type"] == 2
    assert f["llama.block_count"] == cfg["num_hidden_layers"] and f["llama.attention.head_count_kv"] == 2
    assert f["llama.embedding_length"] == 64 and f["llama.rope.dimension_count"] == 16
    assert len(f["tokenizer.ggml.tokens"]) == cfg["vocab_size"] and f["tokenizer.ggml.model"] == "gpt2"
    types = {t.name: t.tensor_type.name for t in r.tensors}
    assert types["token_embd.weight"] == "Q8_0"  # tied: the output projection, Q8_0 as llama.cpp does
    assert types["blk.0.attn_norm.weight"] == "F32" and types["blk.1.ffn_down.weight"] == "Q4_0"
    assert "output.weight" not in types and len(types) == 2 + 9 * cfg["num_hidden_layers"]
    state = load_file(tiny_llama_dir / "model.safetensors")
    t = next(t for t in r.tensors if t.name == "blk.0.attn_q.weight")
    got = writer.unpermute_heads(dequantize(t.data, t.tensor_type).reshape(64, 64), 4)
    want = state["model.layers.0.self_attn.q_proj.weight"].numpy()
    sqnr = 10 * np.log10((want**2).sum() / ((want - got) ** 2).sum())
    assert sqnr > 15  # 4-bit blocks of 32: about 20 dB on Gaussian weights
    assert row.manifest["quantized_layers"]["blk.0.attn_q.weight"] == {"gguf_type": "Q4_0"}


@pytest.mark.parametrize(("name", "max_kld"), [("g-f32", 1e-9), ("g-q8", 1e-4), ("g-q4", 5e-3)])
def test_transformers_gguf_loader_gives_the_same_logits(built, tiny_llama_dir, name, max_kld):
    from transformers import AutoModelForCausalLM

    ids = torch.randint(3, 300, (1, 48), generator=torch.Generator().manual_seed(0))
    _, ref = _ref_logits(tiny_llama_dir, ids)
    model = AutoModelForCausalLM.from_pretrained(built[name].path, gguf_file="model.gguf", dtype=torch.float32)
    with torch.no_grad():
        got = model.eval()(ids).logits
    kld = float(kl_divergence(ref[0], got[0]).mean())
    assert kld <= max_kld
    if name == "g-f32":
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_unknown_type_exits_2_listing_the_types(tmp_path, tiny_llama_dir):
    recipe = write_recipe(tmp_path / "r.yaml", tiny_llama_dir, VARIANTS.replace("type: Q4_0", "type: Q9_9"))
    res = run_cli("build", recipe, "--catalog", tmp_path / "cat")
    assert res.returncode == 2
    assert "variants[3].steps[0].export.type" in res.stderr and "Q4_K_M" in res.stderr and "Q9_9" in res.stderr
    assert not (tmp_path / "cat").exists()


def test_k_quant_without_llama_quantize_is_a_clear_error(tmp_path, tiny_llama_dir, monkeypatch):
    monkeypatch.setenv(ENV, str(tmp_path / "no-tools"))
    variants = "  - name: k\n    tier: t\n    steps: [{export: {format: gguf, type: Q4_K_M}}]\n"
    with pytest.raises(UserError, match="llama-quantize") as e:
        slimserve.build(write_recipe(tmp_path / "r.yaml", tiny_llama_dir, variants), catalog=tmp_path / "cat")
    assert ENV in str(e.value) and "steps[0].export" in str(e.value)
    assert not (tmp_path / "cat" / "k").exists()


def test_gguf_py_cannot_do_k_quants_and_quantize_steps_before_it_are_refused(tmp_path, tiny_llama_dir):
    bad = "  - name: k\n    tier: t\n    steps: [{export: {format: gguf, type: Q6_K, quantizer: gguf-py}}]\n"
    with pytest.raises(UserErrors, match="gguf-py cannot round Q6_K"):
        slimserve.build(write_recipe(tmp_path / "a.yaml", tiny_llama_dir, bad), catalog=tmp_path / "cat")
    twice = (
        "  - name: k\n    tier: t\n    steps: [{quantize: {method: rtn, bits: 4, group_size: 32}}, "
        "{export: {format: gguf, type: Q4_0}}]\n"
    )
    with pytest.raises(UserError, match="rounds float weights itself"):
        slimserve.build(write_recipe(tmp_path / "b.yaml", tiny_llama_dir, twice), catalog=tmp_path / "cat")
    assert not (tmp_path / "cat" / "k").exists()


@pytest.mark.skipif(find_tool("llama-quantize") is None, reason="llama.cpp's llama-quantize is not built here")
def test_k_quant_through_llama_quantize(tmp_path, tiny_llama_dir):
    variants = "  - name: k\n    tier: t\n    steps: [{export: {format: gguf, type: Q4_K_M}}]\n"
    (row,) = slimserve.build(write_recipe(tmp_path / "r.yaml", tiny_llama_dir, variants), catalog=tmp_path / "cat")
    rec = row.manifest["steps"][0]["records"]
    assert rec["quantizer"] == "llama-quantize" and rec["llama_quantize"].endswith("llama-quantize")
    assert sorted(p.name for p in row.path.glob("*.gguf")) == ["model.gguf"]  # the F32 intermediate is gone
    # rows of 64 are not a multiple of 256: llama-quantize falls back from Q4_K to legacy types, and says so
    assert rec["tensor_types"]["F32"] == 5 and sum(rec["tensor_types"].values()) == 20


@pytest.mark.slow  # real model: SmolLM2-135M (converts the shipped GGUF once, then ~1 min)
@pytest.mark.skipif(find_tool("llama-quantize") is None, reason="llama.cpp's llama-quantize is not built here")
def test_smollm2_q4_0_is_byte_identical_to_llama_quantize(tmp_path):
    import hashlib
    import subprocess

    from gguf import GGUFReader

    from slimserve.sources import builtin_gguf

    variants = "  - name: q4\n    tier: t\n    steps: [{export: {format: gguf, type: Q4_0}}]\n"
    (row,) = slimserve.build(write_recipe(tmp_path / "r.yaml", "smollm2-135m", variants), catalog=tmp_path / "cat")
    theirs = tmp_path / "llama-quantize-q4_0.gguf"
    cmd = [str(find_tool("llama-quantize")), "--allow-requantize", str(builtin_gguf("smollm2-135m")), str(theirs)]
    subprocess.run([*cmd, "Q4_0", "2"], check=True, capture_output=True)

    def tensors(p):
        return {t.name: (t.tensor_type.name, hashlib.sha1(t.data.tobytes()).hexdigest()) for t in GGUFReader(p).tensors}

    assert tensors(row.path / "model.gguf") == tensors(theirs)
