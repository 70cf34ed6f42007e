"""AWQ (Lin et al., 2023): search per-input-channel scales s = mean|x|^alpha that protect salient
channels before group-wise quantization, and per-group clipping of the weight range.

Pure tensor math: no model or recipe knowledge. Scaling W[:, j] by s_j and the producer of x_j by
1/s_j leaves the float function unchanged; only the rounding error moves.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .math import QParams, compute_qparams, fake_quantize

# (bits, group_size, symmetric) of one weight, or None for a weight that is scaled but stays float.
QuantSpec = tuple[int, int | None, bool] | None


def _fq(w: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    if spec is None:
        return w
    bits, group, sym = spec
    return fake_quantize(w, compute_qparams(w, bits, group, sym))


def candidate_scales(x_mean_abs: torch.Tensor, alpha: float) -> torch.Tensor:
    """s = mean|x|^alpha, normalised so that max(s) * min(s) = 1."""
    s = x_mean_abs.float().clamp(min=1e-4).pow(alpha)
    return s / (s.max() * s.min()).sqrt()


@dataclass
class ScaleSearch:
    scales: torch.Tensor  # [in]
    alpha: float
    error: float  # output MSE at the chosen alpha
    error_unscaled: float  # output MSE at alpha = 0 (plain round-to-nearest)


@torch.no_grad()
def search_scale(
    weights: list[torch.Tensor], specs: list[QuantSpec], x: torch.Tensor, x_mean_abs: torch.Tensor, grid: int = 20
) -> ScaleSearch:
    """Pick alpha in {0, 1/grid, ..., (grid-1)/grid} minimising || X W^T - (X/s) Q(W s)^T ||^2 over all weights
    that share the input X [n, in]. alpha = 0 is plain rounding, so the result is never worse on X."""
    x = x.float()
    ref = torch.cat([x @ w.float().T for w in weights], dim=1)
    best: tuple[float, float, torch.Tensor] | None = None
    err0 = float("nan")
    for k in range(grid):
        alpha = k / grid
        s = candidate_scales(x_mean_abs, alpha)
        out = torch.cat([(x / s) @ _fq(w.float() * s, spec).T for w, spec in zip(weights, specs, strict=True)], dim=1)
        err = float((out - ref).pow(2).mean())
        if k == 0:
            err0 = err
        if best is None or err < best[0]:
            best = (err, alpha, s)
    return ScaleSearch(best[2], best[1], best[0], err0)


@torch.no_grad()
def search_clip(
    w: torch.Tensor,
    x: torch.Tensor,
    bits: int,
    group_size: int | None,
    symmetric: bool,
    grid: int = 20,
    max_shrink: float = 0.5,
    chunk: int = 128,
) -> QParams:
    """Per (output channel, group) clip ratio in [1 - max_shrink, 1] minimising that group's output error on X."""
    out_f, in_f = w.shape
    g = in_f if group_size is None else group_size
    xg = x.float().reshape(x.shape[0], in_f // g, g)  # [n, G, g]
    scales, zeros = [], []
    for o0 in range(0, out_f, chunk):
        wc = w[o0 : o0 + chunk].float()
        wg = wc.reshape(wc.shape[0], in_f // g, g)
        ref = torch.einsum("ogk,ngk->ogn", wg, xg)
        best_err = torch.full(wg.shape[:2], float("inf"))
        best_scale = torch.zeros(wg.shape[:2])
        best_zero = None if symmetric else torch.zeros(wg.shape[:2])
        for i in range(int(max_shrink * grid) + 1):
            ratio = 1 - i / grid
            qp = compute_qparams(wc, bits, group_size, symmetric, clip_ratio=ratio)
            wq = fake_quantize(wc, qp).reshape_as(wg)
            err = (torch.einsum("ogk,ngk->ogn", wq, xg) - ref).pow(2).mean(-1)
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best_scale = torch.where(better, qp.scale, best_scale)
            if best_zero is not None:
                best_zero = torch.where(better, qp.zero_point, best_zero)
        scales.append(best_scale)
        if best_zero is not None:
            zeros.append(best_zero)
    return QParams(torch.cat(scales), torch.cat(zeros) if zeros else None, bits, group_size)


@torch.no_grad()
def fold_scales_into_norm(norm_weight: torch.Tensor, consumers: list[torch.Tensor], s: torch.Tensor) -> None:
    """norm.weight /= s and W[:, j] *= s_j for every consumer Linear weight (in place)."""
    norm_weight.div_(s.to(norm_weight.dtype))
    for w in consumers:
        w.mul_(s.to(w.dtype))


@torch.no_grad()
def fold_scales_into_linear(
    prev_weight: torch.Tensor, prev_bias: torch.Tensor | None, consumers: list[torch.Tensor], s: torch.Tensor
) -> None:
    """Producer rows /= s (W_prev[j, :] and bias_j) and consumer columns *= s (in place).

    Exact only when the producer's output reaches the consumer through elementwise-linear ops
    (up_proj -> (act(gate) * up) -> down_proj; v_proj -> attention -> o_proj without GQA)."""
    prev_weight.div_(s.to(prev_weight.dtype).unsqueeze(1))
    if prev_bias is not None:
        prev_bias.div_(s.to(prev_bias.dtype))
    for w in consumers:
        w.mul_(s.to(w.dtype))
