"""Metric math and summary statistics against hand-computed values."""

import math

import pytest
import torch

from slimserve.bench.metrics import (
    choice_loglik,
    kl_divergence,
    mc_pick,
    perplexity,
    token_nll,
    top1_agreement,
)
from slimserve.bench.stats import latency_stats, percentile, scaled


def test_kld_of_identical_distributions_is_zero():
    logits = torch.randn(5, 7, 50)
    assert torch.all(kl_divergence(logits, logits) == 0)
    assert torch.all(kl_divergence(logits, logits + 3.0) < 1e-12)  # a constant shift is the same distribution


def test_kld_matches_hand_computation():
    p, q = torch.tensor([0.5, 0.5], dtype=torch.float64), torch.tensor([0.25, 0.75], dtype=torch.float64)
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)  # 0.14384
    got = float(kl_divergence(p.log(), q.log()))
    assert got == pytest.approx(expected, abs=1e-9)
    assert got == pytest.approx(0.143841, abs=1e-6)
    assert float(kl_divergence(q.log(), p.log())) != pytest.approx(got)  # KL is not symmetric


def test_uniform_model_perplexity_equals_vocab_size():
    vocab = 37
    logits = torch.zeros(20, vocab)
    targets = torch.randint(0, vocab, (20,))
    nll = token_nll(logits, targets)
    assert torch.allclose(nll, torch.full((20,), math.log(vocab), dtype=torch.float64))
    assert perplexity(float(nll.sum()), nll.numel()) == pytest.approx(vocab)


def test_perplexity_of_zero_tokens_is_an_error():
    with pytest.raises(ValueError):
        perplexity(0.0, 0)


def test_top1_agreement():
    ref = torch.tensor([[0.0, 1.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
    var = torch.tensor([[0.0, 3.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
    assert top1_agreement(ref, var).tolist() == [1.0, 0.0, 1.0]


def test_choice_loglik_sums_the_continuation_tokens():
    vocab = 4
    ids = torch.tensor([0, 1, 2, 3])
    logits = torch.zeros(4, vocab)
    logits[1, 2] = math.log(3.0)  # p(2 | 0,1) = 3 / 6 = 0.5
    # continuation = tokens 2 and 3: log 0.5 + log(1/4)
    assert choice_loglik(logits, ids, 2) == pytest.approx(math.log(0.5) + math.log(0.25))
    with pytest.raises(ValueError):
        choice_loglik(logits, ids, 0)


def test_mc_pick_length_normalisation():
    choices = [" a", " a much longer answer"]
    lls = [-3.0, -10.0]
    assert mc_pick(lls, choices, normalize=False) == 0
    assert mc_pick(lls, choices, normalize=True) == 1  # -10/21 per byte beats -3/2


def test_percentiles_linear_interpolation():
    xs = [4.0, 1.0, 3.0, 2.0]
    assert percentile(xs, 50) == pytest.approx(2.5)
    assert percentile(xs, 90) == pytest.approx(3.7)
    assert percentile(xs, 99) == pytest.approx(3.97)
    assert percentile(xs, 0) == 1.0 and percentile(xs, 100) == 4.0
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile(xs, 101)


def test_latency_stats_and_scaling():
    s = latency_stats([2, 4, 4, 4, 5, 5, 7, 9])
    assert (s.count, s.mean, s.min, s.max) == (8, 5.0, 2.0, 9.0)
    assert s.stdev == pytest.approx(math.sqrt(32 / 7))  # sample stdev, n - 1
    assert s.p50 == pytest.approx(4.5)
    # sorted 2 4 4 4 5 5 7 9: p10 at rank 0.7 -> 2 + 0.7 * 2, p90 at rank 6.3 -> 7 + 0.3 * 2
    assert s.p10 == pytest.approx(3.4) and s.p90 == pytest.approx(7.6)
    one = latency_stats([0.25])
    assert one.stdev == 0.0 and one.p99 == 0.25
    ms = scaled(s, 1000.0)
    assert (
        ms.p10 == pytest.approx(3400.0)
        and ms.p50 == pytest.approx(4500.0)
        and ms.stdev == pytest.approx(s.stdev * 1000)
        and ms.count == 8
    )
