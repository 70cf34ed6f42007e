"""`slimserve generate` / `slimserve chat` on tiny random variants: greedy parity, streaming, history, quiet stderr."""

from __future__ import annotations

import io

import pytest
import torch

import slimserve
from slimserve.cli import main
from slimserve.generate import Engine, Sampling, TextStream, TorchEngine, open_engine, prompt_ids, stop_ids
from slimserve.testing import make_tiny_llama

from .helpers import run_cli, write_recipe

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
VARIANTS = """\
  - {name: ref, tier: reference, reference: true}
  - name: w8
    tier: small
    steps: [{quantize: {method: rtn, bits: 8, group_size: null, symmetric: true}}]
"""
ONNX = """\
  - name: onnx
    tier: small
    steps: [{export: {format: onnx, graph: fused, weights: float}}]
"""
PROMPT = "It is a truth universally acknowledged"
N = 12


@pytest.fixture(scope="module")
def cat(tmp_path_factory):
    """ref (hf), w8 (compressed-tensors) and, with onnxruntime, a fused fp32 ONNX graph; ChatML chat template."""
    from transformers import AutoTokenizer

    tmp = tmp_path_factory.mktemp("gen")
    base = make_tiny_llama(tmp / "base", initializer_range=0.2)  # wide logits: no near-ties between runtimes
    tok = AutoTokenizer.from_pretrained(base)
    tok.chat_template = CHATML
    tok.save_pretrained(base)
    try:
        import onnxruntime  # noqa: F401

        variants = VARIANTS + ONNX
    except ImportError:
        variants = VARIANTS
    slimserve.build(write_recipe(tmp / "r.yaml", base, variants), catalog=tmp / "cat")
    return tmp / "cat"


def _direct_greedy(cat, name: str, chat: bool = True) -> tuple[list[int], object]:
    """N greedy tokens from plain transformers generate() on the loaded variant, never stopping early."""
    model, tok = slimserve.load(cat / name)
    ids = torch.tensor([prompt_ids(tok, [{"role": "user", "content": PROMPT}], chat=chat)])
    out = model.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=N, min_new_tokens=N, do_sample=False, pad_token_id=2
    )
    new = out[0, ids.shape[1] :].tolist()
    assert len(new) == N and not set(new) & stop_ids(tok, Engine(), chat=True)
    return new, tok


@pytest.mark.parametrize("name", ["ref", "w8"])
def test_engine_decodes_exactly_max_new_tokens_like_generate(cat, name):
    want, tok = _direct_greedy(cat, name)
    eng = open_engine(name, catalog=cat)
    ids = prompt_ids(eng.tokenizer, [{"role": "user", "content": PROMPT}])
    seen: list[int] = []
    got = eng.decode(ids, Sampling(max_new_tokens=N), stop_ids(eng.tokenizer, eng, chat=True), seen.append)
    assert got == want and seen == want


def test_cli_generate_streams_the_greedy_text_and_stderr_is_quiet(cat):
    """A fresh process, as a user runs it: no warnings, no progress bars, just the text on stdout."""
    want, tok = _direct_greedy(cat, "w8")
    r = run_cli("generate", "w8", PROMPT, "--catalog", cat, "--max-new-tokens", N)
    assert r.returncode == 0, r.stderr
    assert r.stdout == tok.decode(want, skip_special_tokens=True) + "\n"
    assert r.stderr == ""


def test_no_chat_sends_the_raw_prompt(cat, capsys):
    want, tok = _direct_greedy(cat, "ref", chat=False)
    assert main(["generate", "ref", PROMPT, "--catalog", str(cat), "--max-new-tokens", str(N), "--no-chat"]) == 0
    assert capsys.readouterr().out == tok.decode(want, skip_special_tokens=True) + "\n"


def test_onnx_variant_matches_its_runner_and_pytorch(cat, capsys):
    pytest.importorskip("onnxruntime")
    from slimserve.onnx.runtime import OrtRunner

    want, tok = _direct_greedy(cat, "ref")  # the fp32 graph decodes the same tokens as the model it came from
    ids = torch.tensor([prompt_ids(tok, [{"role": "user", "content": PROMPT}])])
    assert OrtRunner(cat / "onnx" / "model.onnx", tok).generate(ids, N).tokens[0].tolist() == want
    assert main(["generate", "onnx", PROMPT, "--catalog", str(cat), "--max-new-tokens", str(N)]) == 0
    assert capsys.readouterr().out == tok.decode(want, skip_special_tokens=True) + "\n"


def test_sampling_is_reproducible_with_a_seed(cat):
    kw = dict(catalog=cat, max_new_tokens=N, temperature=1.5, top_p=0.9, seed=7, chat=False)
    a, b = slimserve.generate("ref", PROMPT, **kw), slimserve.generate("ref", PROMPT, **kw)
    assert a == b and a != slimserve.generate("ref", PROMPT, **{**kw, "temperature": 0.0})


def test_chat_keeps_the_history(cat, capsys, monkeypatch):
    prompts: list[list[int]] = []
    real = TorchEngine.decode

    def spy(self, ids, *a, **kw):
        prompts.append(list(ids))
        return real(self, ids, *a, **kw)

    monkeypatch.setattr(TorchEngine, "decode", spy)
    monkeypatch.setattr("sys.stdin", io.StringIO("first question\n\nsecond question\n/exit\nnever read\n"))
    assert main(["chat", "ref", "--catalog", str(cat), "--max-new-tokens", "6"]) == 0
    replies = capsys.readouterr().out.splitlines()
    assert len(prompts) == 2 and len(replies) == 2  # the blank line is skipped; /exit ends before "never read"
    tok = open_engine("ref", catalog=cat).tokenizer
    second = tok.decode(prompts[1])
    assert second.startswith(tok.decode(prompts[0]))  # the first exchange, as it was sent and answered
    assert "first question" in second and "second question" in second and replies[0] in second
    assert second.count("<|im_start|>assistant") == 2


def test_unknown_variant_lists_the_names(cat, capsys):
    assert main(["generate", "nope", "hi", "--catalog", str(cat)]) == 2
    err = capsys.readouterr().err
    assert "no variant 'nope'" in err and "ref" in err and "w8" in err


def test_text_stream_never_splits_a_character():
    from slimserve.testing import tiny_tokenizer

    tok = tiny_tokenizer()
    text = "naïve café, 日本語 ✓"
    ids = tok(text).input_ids
    assert len(ids) > len(text)  # byte-level: some characters take several tokens
    pieces: list[str] = []
    stream = TextStream(tok, pieces.append, stop=set())
    for t in ids:
        stream.push(t)
    assert stream.close() == text and "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)


def test_compression_bars_are_hidden_only_inside_the_block():
    mc = pytest.importorskip("compressed_tensors.compressors.model_compressors.model_compressor")
    from slimserve.quiet import no_compression_bars

    original = mc.tqdm
    with no_compression_bars():
        with no_compression_bars():  # re-entrant: the inner exit must not bring the bar back early
            pass
        assert mc.tqdm is not original and mc.tqdm(range(3)).disable
    assert mc.tqdm is original
