"""Searched round-to-nearest grids: per block, the scale (and integer zero point) with the least weighted squared
reconstruction error, instead of the min/max (or absmax) range. Pure tensor math, no model knowledge.

The search follows llama.cpp's ``make_qx_quants`` / ``make_qkx2_quants``: try a set of candidate scales around the
range's own, round with each, refit the scale by weighted least squares for the codes it gave, and keep the best.
Element weights default to llama.cpp's calibration-free ``sqrt(mean(x^2)) + |x|`` (large weights matter more); a
caller with activation statistics may pass its own (per input channel, like an importance matrix).

The min/max grid is always among the candidates, so a searched grid is never worse on the weighted error.
Zero points stay integers (the convention of compressed-tensors, GPTQ and MatMulNBits' uint8 zero points).
"""

from __future__ import annotations

import torch

from .math import QParams, _grouped, compute_qparams, qrange

# Candidate scales: the range's own scale times 1 / (1 + k * STEP) for k in [-N_DOWN, N_UP]: shrinking the range
# clips outliers, widening it rarely helps but costs nothing to try.
STEP = 0.02
N_UP = 16  # up to ~1.32x shrink
N_DOWN = 4


def default_importance(w: torch.Tensor, group_size: int | None) -> torch.Tensor:
    """llama.cpp's weights without an importance matrix: rms of the block plus |x| (same shape as the groups)."""
    wg = _grouped(w.float(), group_size)
    return wg.pow(2).mean(-1, keepdim=True).sqrt() + wg.abs()


def _codes(wg: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | None, bits: int) -> torch.Tensor:
    qmin, qmax = qrange(bits)
    q = torch.round(wg / scale[..., None])
    if zero is not None:
        q = q + zero[..., None]
    q = q.clamp(qmin, qmax)
    return q - zero[..., None] if zero is not None else q  # centred codes: w ~ scale * (q - zero)


def _refit(wg: torch.Tensor, imp: torch.Tensor, qc: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    """Weighted least-squares scale for fixed centred codes: argmin_s sum imp * (w - s * qc)^2."""
    den = (imp * qc * qc).sum(-1)
    s = (imp * wg * qc).sum(-1) / den.clamp(min=1e-30)
    return torch.where((den > 0) & (s > 0), s, fallback)


def _err(wg: torch.Tensor, imp: torch.Tensor, s: torch.Tensor, qc: torch.Tensor) -> torch.Tensor:
    return (imp * (wg - s[..., None] * qc).pow(2)).sum(-1)


def _zero_for(wg_min: torch.Tensor, scale: torch.Tensor, bits: int) -> torch.Tensor:
    qmin, qmax = qrange(bits)
    return (qmin - torch.round(wg_min / scale)).clamp(qmin, qmax)


@torch.no_grad()
def search_qparams(
    w: torch.Tensor,
    bits: int,
    group_size: int | None,
    symmetric: bool,
    importance: torch.Tensor | None = None,
    *,
    rows_per_chunk: int = 4096,
) -> QParams:
    """QParams of W [out, in] whose blocks minimise sum(importance * (w - dequant(quant(w)))^2).

    importance: None (llama.cpp's calibration-free weights), a per-input-channel vector [in] (e.g. mean x^2 of the
    layer's inputs), or a tensor shaped like w.
    """
    base = compute_qparams(w, bits, group_size, symmetric)
    scales, zeros = [], []
    for r0 in range(0, w.shape[0], rows_per_chunk):
        rows = slice(r0, r0 + rows_per_chunk)
        wc = w[rows].float()
        wg = _grouped(wc, group_size)
        imp = _importance(wc, group_size, importance, rows)
        s0 = base.scale[rows]
        z0 = None if symmetric else base.zero_point[rows]
        best_s, best_z = s0.clone(), None if z0 is None else z0.clone()
        best_e = _err(wg, imp, s0, _codes(wg, s0, z0, bits))
        wmin = wg.amin(-1).clamp(max=0)
        for k in range(-N_DOWN, N_UP + 1):
            s = s0 / (1 + k * STEP)
            z = None if symmetric else _zero_for(wmin, s, bits)
            qc = _codes(wg, s, z, bits)
            s = _refit(wg, imp, qc, s)
            # refitting moves the scale off the candidate: round once more with it (codes and zero follow)
            z = None if symmetric else _zero_for(wmin, s, bits)
            qc = _codes(wg, s, z, bits)
            e = _err(wg, imp, s, qc)
            better = e < best_e
            best_e = torch.where(better, e, best_e)
            best_s = torch.where(better, s, best_s)
            if z is not None:
                best_z = torch.where(better, z, best_z)
        scales.append(best_s)
        if best_z is not None:
            zeros.append(best_z)
    return QParams(torch.cat(scales), None if symmetric else torch.cat(zeros), bits, group_size)


def _importance(wc: torch.Tensor, group_size: int | None, importance: torch.Tensor | None, rows: slice):
    if importance is None:
        return default_importance(wc, group_size)
    imp = importance.float()
    if imp.dim() == 1:  # per input channel, the same for every row
        imp = imp.expand_as(wc)
    else:
        imp = imp[rows]
    return _grouped(imp, group_size)


def weighted_error(w: torch.Tensor, qp: QParams, importance: torch.Tensor | None = None) -> torch.Tensor:
    """Per-block weighted squared error [out, n_groups] of a grid (the quantity search_qparams minimises)."""
    wg = _grouped(w.float(), qp.group_size)
    imp = _importance(w.float(), qp.group_size, importance, slice(None))
    return _err(wg, imp, qp.scale, _codes(wg, qp.scale, qp.zero_point, qp.bits))
