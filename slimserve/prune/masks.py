"""Pure sparsity masks and structured-pruning math: no model or recipe knowledge.

Masks are boolean tensors, True = keep.
"""

from __future__ import annotations

import torch


def unstructured_mask(score: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Zero the `sparsity` fraction of lowest scores in every row (Wanda compares weights per output row)."""
    out_f, in_f = score.shape
    n_drop = int(in_f * sparsity)
    keep = torch.ones_like(score, dtype=torch.bool)
    if n_drop:
        idx = torch.topk(score, n_drop, dim=1, largest=False).indices
        keep.scatter_(1, idx, False)
    return keep


def nm_mask(score: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """N:M sparsity: keep the `n` highest scores in every `m` consecutive inputs of each row."""
    out_f, in_f = score.shape
    if not 0 < n < m:
        raise ValueError(f"N:M needs 0 < N < M, got {n}:{m}")
    if in_f % m:
        raise ValueError(f"input dimension {in_f} is not divisible by M={m}")
    blocks = score.reshape(out_f, in_f // m, m)
    idx = torch.topk(blocks, n, dim=-1).indices
    keep = torch.zeros_like(blocks, dtype=torch.bool).scatter_(-1, idx, True)
    return keep.reshape(out_f, in_f)


def wanda_score(w: torch.Tensor, input_norm: torch.Tensor) -> torch.Tensor:
    """|W_ij| * ||X_j||_2 (Sun et al., 2023)."""
    return w.abs().float() * input_norm.float().unsqueeze(0)


def channel_importance(sq_mean: torch.Tensor, consumer_weight: torch.Tensor) -> torch.Tensor:
    """Expected squared contribution of each input channel j to the consumer's output:
    E[x_j^2] * ||W[:, j]||^2. Activation-aware, unlike weight magnitude alone."""
    return sq_mean.float() * consumer_weight.float().pow(2).sum(0)


def least_squares_refit(w: torch.Tensor, gram: torch.Tensor, keep: torch.Tensor, damp: float = 0.01) -> torch.Tensor:
    """Best W' over the kept input channels: argmin ||X_K W'^T - X W^T||^2 given G = X^T X.

    W' = W_K + W_D G_DK G_KK^-1: the dropped channels' contribution is re-expressed through the kept ones.
    Returns W' [out, |K|]."""
    keep_idx = torch.nonzero(keep).squeeze(1)
    drop_idx = torch.nonzero(~keep).squeeze(1)
    g = gram.double()
    g_kk = g[keep_idx][:, keep_idx]
    g_kk = g_kk + damp * torch.diag(g_kk).mean().clamp(min=1e-12) * torch.eye(len(keep_idx), dtype=g.dtype)
    g_dk = g[drop_idx][:, keep_idx]
    wd = w.double()
    correction = torch.linalg.solve(g_kk, (wd[:, drop_idx] @ g_dk).T).T
    return (wd[:, keep_idx] + correction).to(w.dtype)
