"""Pure tensor math for weight quantization: no model or recipe knowledge.

Codes are stored as signed integers in the range of the bit width: symmetric codes lie in
[-2^(b-1), 2^(b-1)-1]; asymmetric codes in the same signed range with an integer zero point,
which is the convention compressed-tensors uses, so codes can be packed without conversion.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class QParams:
    """Per-group (or per-output-channel) scale and zero point of one weight matrix.

    ``scale`` and ``zero_point`` have shape [out_features, n_groups]; n_groups is 1 for
    per-channel quantization. ``zero_point`` is None for symmetric quantization.
    """

    scale: torch.Tensor
    zero_point: torch.Tensor | None
    bits: int
    group_size: int | None

    @property
    def symmetric(self) -> bool:
        return self.zero_point is None


def qrange(bits: int) -> tuple[int, int]:
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def _grouped(w: torch.Tensor, group_size: int | None) -> torch.Tensor:
    """View [out, in] as [out, n_groups, group]."""
    out_f, in_f = w.shape
    g = in_f if group_size is None else group_size
    if in_f % g:
        raise ValueError(f"input dimension {in_f} is not divisible by group size {g}")
    return w.reshape(out_f, in_f // g, g)


def compute_qparams(
    w: torch.Tensor, bits: int, group_size: int | None, symmetric: bool, clip_ratio: float = 1.0
) -> QParams:
    """Min/max (asymmetric) or absmax (symmetric) round-to-nearest parameters."""
    wg = _grouped(w.float(), group_size)
    qmin, qmax = qrange(bits)
    if symmetric:
        absmax = wg.abs().amax(-1) * clip_ratio
        scale = (absmax / qmax).clamp(min=1e-10)
        return QParams(scale, None, bits, group_size)
    wmax = (wg.amax(-1) * clip_ratio).clamp(min=0)
    wmin = (wg.amin(-1) * clip_ratio).clamp(max=0)
    scale = ((wmax - wmin) / (qmax - qmin)).clamp(min=1e-10)
    zero = (qmin - torch.round(wmin / scale)).clamp(qmin, qmax)
    return QParams(scale, zero, bits, group_size)


def quantize(w: torch.Tensor, qp: QParams) -> torch.Tensor:
    """Integer codes (int8 tensor, same shape as w)."""
    wg = _grouped(w.float(), qp.group_size)
    qmin, qmax = qrange(qp.bits)
    q = torch.round(wg / qp.scale.unsqueeze(-1))
    if qp.zero_point is not None:
        q = q + qp.zero_point.unsqueeze(-1)
    return q.clamp(qmin, qmax).to(torch.int8).reshape(w.shape)


def dequantize(q: torch.Tensor, qp: QParams, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    qg = _grouped(q.float(), qp.group_size)
    if qp.zero_point is not None:
        qg = qg - qp.zero_point.unsqueeze(-1)
    return (qg * qp.scale.unsqueeze(-1)).reshape(q.shape).to(dtype)


def fake_quantize(w: torch.Tensor, qp: QParams) -> torch.Tensor:
    """Round w onto the quantization grid and return it in w's dtype."""
    return dequantize(quantize(w, qp), qp, w.dtype)


def sqnr_db(reference: torch.Tensor, approx: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio in dB."""
    ref = reference.double()
    noise = (ref - approx.double()).pow(2).sum()
    if noise == 0:
        return float("inf")
    return float(10 * torch.log10(ref.pow(2).sum() / noise))


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """Pack signed int4 codes [..., n] (n even) into uint8 [..., n/2], low nibble first."""
    if q.shape[-1] % 2:
        raise ValueError("the last dimension must be even to pack int4 pairs")
    u = (q.to(torch.int16) & 0xF).to(torch.uint8)
    return u[..., 0::2] | (u[..., 1::2] << 4)


def unpack_int4(p: torch.Tensor) -> torch.Tensor:
    """Inverse of pack_int4: uint8 [..., n/2] -> signed int8 codes [..., n]."""
    lo = (p & 0xF).to(torch.int8)
    hi = (p >> 4).to(torch.int8)
    out = torch.stack([lo, hi], dim=-1).reshape(*p.shape[:-1], p.shape[-1] * 2)
    return torch.where(out > 7, out - 16, out)
