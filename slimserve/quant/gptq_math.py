"""GPTQ (Frantar et al., 2022): quantize a weight matrix column by column, spreading each column's
rounding error over the columns not yet quantized through the inverse Hessian of the layer inputs.

Pure tensor math: no model or recipe knowledge. The result is exactly on the grid of the returned
QParams (``fake_quantize(W_q, qp) == W_q``), so it packs like round-to-nearest output.
"""

from __future__ import annotations

import torch

from .math import QParams, compute_qparams, qrange
from .search import search_qparams


def _quant_col(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor | None, bits: int) -> torch.Tensor:
    """Fake-quantize one column with the same arithmetic as math.quantize/dequantize."""
    qmin, qmax = qrange(bits)
    q = torch.round(w / scale)
    if zero is not None:
        q = q + zero
    q = q.clamp(qmin, qmax)
    if zero is not None:
        q = q - zero
    return q * scale


def _inverse_hessian_chol(h: torch.Tensor, damp: float) -> torch.Tensor:
    """Upper Cholesky factor of H^-1 after dampening; retries with more damping if H is not PD."""
    mean_diag = torch.mean(torch.diag(h))
    eye = torch.eye(h.shape[0], dtype=h.dtype)
    for attempt in range(6):
        try:
            hd = h + (damp * 10**attempt) * mean_diag * eye
            l_factor = torch.linalg.cholesky(hd)
            hinv = torch.cholesky_inverse(l_factor)
            return torch.linalg.cholesky(hinv, upper=True)
        except torch.linalg.LinAlgError:
            continue
    raise ValueError("the Hessian is not positive definite even after strong damping")


@torch.no_grad()
def gptq_quantize(
    w: torch.Tensor,
    h: torch.Tensor,
    bits: int,
    group_size: int | None,
    symmetric: bool,
    act_order: bool = False,
    damp: float = 0.01,
    block_size: int = 128,
    search: bool = False,
) -> tuple[torch.Tensor, QParams]:
    """Quantize W [out, in] given H = 2/n X^T X [in, in]. Returns (W_q in w's dtype, QParams).

    Group parameters are taken from the error-updated weights when a group starts. With act_order
    and groups, they are computed from the original weights up front ("static groups"), so the groups
    stay contiguous in the original column order and the artifact needs no g_idx permutation.
    search: group grids by least squared error weighted by the Hessian diagonal (an importance matrix) instead of
    min/max (slimserve.quant.search).
    """
    out_f, in_f = w.shape
    if group_size is not None and in_f % group_size:
        raise ValueError(f"input dimension {in_f} is not divisible by group size {group_size}")
    wf = w.detach().clone().float()
    h = h.detach().clone().double()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    wf[:, dead] = 0.0

    n_groups = 1 if group_size is None else in_f // group_size
    gs = in_f if group_size is None else group_size
    scale = torch.zeros(out_f, n_groups)
    zero = None if symmetric else torch.zeros(out_f, n_groups)
    static = group_size is None or act_order
    importance = torch.diag(h).float().clamp(min=0) if search else None
    if static:
        qp0 = _grid(wf, bits, group_size, symmetric, importance)
        scale.copy_(qp0.scale)
        if zero is not None:
            zero.copy_(qp0.zero_point)

    perm = torch.argsort(torch.diag(h), descending=True) if act_order else torch.arange(in_f)
    wf = wf[:, perm]
    h = h[perm][:, perm]
    hinv = _inverse_hessian_chol(h, damp).float()

    if group_size is not None and not act_order:
        block_size = max(group_size, (block_size // group_size) * group_size)
    q_out = torch.zeros_like(wf)
    for i1 in range(0, in_f, block_size):
        i2 = min(i1 + block_size, in_f)
        w1 = wf[:, i1:i2].clone()
        q1 = torch.zeros_like(w1)
        err1 = torch.zeros_like(w1)
        hinv1 = hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = int(perm[i1 + i])
            g = col // gs
            if not static and col % gs == 0:
                # Blocks are multiples of the group, so the whole group lies inside w1 with its updates.
                imp = None if importance is None else importance[perm[i1 + i : i1 + i + gs]]
                qp = _grid(w1[:, i : i + gs], bits, None, symmetric, imp)
                scale[:, g] = qp.scale[:, 0]
                if zero is not None:
                    zero[:, g] = qp.zero_point[:, 0]
            wcol = w1[:, i]
            qcol = _quant_col(wcol, scale[:, g], None if zero is None else zero[:, g], bits)
            q1[:, i] = qcol
            e = (wcol - qcol) / hinv1[i, i]
            w1[:, i:] -= e.unsqueeze(1) @ hinv1[i, i:].unsqueeze(0)
            err1[:, i] = e
        q_out[:, i1:i2] = q1
        wf[:, i2:] -= err1 @ hinv[i1:i2, i2:]

    q_out = q_out[:, torch.argsort(perm)]
    qp = QParams(scale, zero, bits, group_size)
    return q_out.to(w.dtype), qp


def _grid(w: torch.Tensor, bits: int, group: int | None, sym: bool, importance: torch.Tensor | None) -> QParams:
    if importance is None:
        return compute_qparams(w, bits, group, sym)
    return search_qparams(w, bits, group, sym, importance)


def layer_output_error(w_ref: torch.Tensor, w_q: torch.Tensor, x: torch.Tensor) -> float:
    """Mean squared error of the layer outputs X W^T between two weight matrices, on inputs X [n, in]."""
    return float(((x.float() @ (w_ref.float() - w_q.float()).T) ** 2).mean())
