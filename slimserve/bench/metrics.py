"""Quality metrics on logits (pure tensor math, no model or file knowledge).

Conventions follow llama.cpp's --kl-divergence: KL(reference || variant) of next-token distributions, averaged over
scored positions; top-1 agreement is the fraction of positions where both argmaxes agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def token_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of each target token: logits [..., V], targets [...] -> [...] (float64)."""
    logp = torch.log_softmax(logits.double(), dim=-1)
    return -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def perplexity(nll_sum: float, count: int) -> float:
    """exp(mean NLL)."""
    if count <= 0:
        raise ValueError("perplexity over zero tokens")
    return math.exp(nll_sum / count)


def kl_divergence(ref_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Per-position KL(ref || variant) in nats: [..., V] x [..., V] -> [...] (float64)."""
    ref_logp = torch.log_softmax(ref_logits.double(), dim=-1)
    logp = torch.log_softmax(logits.double(), dim=-1)
    kl = (ref_logp.exp() * (ref_logp - logp)).sum(-1)
    return kl.clamp_min(0.0)  # rounding can make identical distributions a hair negative


def top1_agreement(ref_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Per-position 1.0 where the argmaxes agree, else 0.0."""
    return (ref_logits.argmax(-1) == logits.argmax(-1)).double()


@dataclass
class MCItem:
    """One multiple-choice question: a shared context and candidate continuations; answer is the correct index."""

    context: str
    choices: list[str]
    answer: int


def choice_loglik(logits: torch.Tensor, ids: torch.Tensor, start: int) -> float:
    """Sum log p(ids[t] | ids[:t]) for t >= start, from logits [T, V] of the sequence ids [T]."""
    if start < 1 or start >= ids.shape[0]:
        raise ValueError("the continuation must start after the first token and hold at least one token")
    logp = torch.log_softmax(logits[start - 1 : -1].double(), dim=-1)
    return float(logp.gather(-1, ids[start:].unsqueeze(-1)).sum())


def mc_pick(logliks: list[float], choices: list[str], normalize: bool = True) -> int:
    """Index of the chosen answer: highest log-likelihood, per byte of the choice text when normalize
    (lm-evaluation-harness acc_norm, which keeps long answers from losing by length alone)."""
    if normalize:
        scores = [ll / max(1, len(c.encode("utf-8"))) for ll, c in zip(logliks, choices, strict=True)]
    else:
        scores = list(logliks)
    return max(range(len(scores)), key=scores.__getitem__)
