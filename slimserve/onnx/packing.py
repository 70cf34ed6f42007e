"""Pure packing math for ONNX Runtime's ``com.microsoft.MatMulNBits`` (no model or graph knowledge).

MatMulNBits stores a weight W[N, K] (out, in) as unsigned codes in blocks along K:
``B`` uint8 [N, n_blocks, block_size * bits / 8] (low nibble first for 4 bits), ``scales`` float [N * n_blocks],
``zero_points`` uint8 [N * ceil(n_blocks * bits / 8)] (also nibble-packed for 4 bits; absent = symmetric, i.e. the
mid code 2^(bits-1)). K need not be a multiple of block_size: the last block is zero-padded, which leaves min/max
(asymmetric, whose range always contains 0) and absmax (symmetric) unchanged.

slimserve's QParams hold *signed* codes with a signed zero point; MatMulNBits wants unsigned codes, so both are
shifted by 2^(bits-1), which leaves (code - zero) * scale unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..quant.math import QParams, compute_qparams, dequantize, quantize

SUPPORTED_BITS = (4, 8)


@dataclass
class NBitsWeight:
    """The initializers of one MatMulNBits node."""

    b: np.ndarray  # uint8 [N, n_blocks, blob]
    scales: np.ndarray  # float32 [N * n_blocks]
    zero_points: np.ndarray | None  # uint8, packed
    n: int
    k: int
    bits: int
    block_size: int

    @property
    def nbytes(self) -> int:
        return self.b.nbytes + self.scales.nbytes + (0 if self.zero_points is None else self.zero_points.nbytes)


def padded_k(k: int, block_size: int) -> int:
    return -(-k // block_size) * block_size


def pad_k(w: torch.Tensor, block_size: int) -> torch.Tensor:
    """Zero-pad the input dimension of W[N, K] to a multiple of block_size."""
    extra = padded_k(w.shape[1], block_size) - w.shape[1]
    return torch.nn.functional.pad(w, (0, extra)) if extra else w


def rtn_qparams(w: torch.Tensor, bits: int, block_size: int, symmetric: bool) -> QParams:
    """Round-to-nearest block parameters of W[N, K], computed on the zero-padded weight."""
    return compute_qparams(pad_k(w.detach().float(), block_size), bits, block_size, symmetric)


def _pack_nibbles(u: np.ndarray) -> np.ndarray:
    """uint8 codes 0..15 [..., n] -> uint8 [..., ceil(n/2)], low nibble first (odd n padded with 0)."""
    if u.shape[-1] % 2:
        u = np.concatenate([u, np.zeros((*u.shape[:-1], 1), np.uint8)], axis=-1)
    return (u[..., 0::2] | (u[..., 1::2] << 4)).astype(np.uint8)


def unpack_nibbles(p: np.ndarray, n: int) -> np.ndarray:
    """Inverse of _pack_nibbles, keeping the first n codes."""
    out = np.stack([p & 0xF, p >> 4], axis=-1).reshape(*p.shape[:-1], p.shape[-1] * 2)
    return out[..., :n].astype(np.uint8)


def pack_nbits(w: torch.Tensor, qp: QParams) -> NBitsWeight:
    """Pack W[N, K] with block parameters qp (group_size = block size, computed on the zero-padded weight)."""
    if qp.bits not in SUPPORTED_BITS:
        raise ValueError(f"MatMulNBits packs {SUPPORTED_BITS} bits, not {qp.bits}")
    if qp.group_size is None:
        raise ValueError("MatMulNBits needs block-wise parameters (group_size), not per-channel")
    w = w.detach()
    n, k = w.shape
    bs = qp.group_size
    wp = pad_k(w.float(), bs)
    q = quantize(wp, qp).numpy().astype(np.int16)  # signed codes [N, Kp]
    off = 2 ** (qp.bits - 1)
    u = (q + off).astype(np.uint8)
    n_blocks = wp.shape[1] // bs
    blocks = u.reshape(n, n_blocks, bs)
    b = _pack_nibbles(blocks) if qp.bits == 4 else blocks
    scales = qp.scale.detach().float().numpy().reshape(n * n_blocks).astype(np.float32)
    zp = None
    if qp.zero_point is not None:
        zu = (qp.zero_point.detach().numpy().astype(np.int16) + off).astype(np.uint8).reshape(n, n_blocks)
        zp = (_pack_nibbles(zu) if qp.bits == 4 else zu).reshape(-1)
    return NBitsWeight(np.ascontiguousarray(b), scales, zp, n, k, qp.bits, bs)


def pack_nbits_float_zero(w: torch.Tensor, bits: int, block_size: int) -> NBitsWeight:
    """Min/max grid with a *float* zero point per block (llama.cpp's Q4_1 grid: w = scale * code + min).

    MatMulNBits accepts float zero points: (code - zero) * scale with zero = -min / scale. Weights that already lie on
    such a grid (a model dequantized from a Q4_1 GGUF, block 32) are recovered exactly.
    """
    w = w.detach().float()
    n, k = w.shape
    wg = pad_k(w, block_size).reshape(n, -1, block_size)
    wmin, wmax = wg.amin(-1), wg.amax(-1)
    qmax = 2**bits - 1
    scale = ((wmax - wmin) / qmax).clamp(min=1e-10)
    zero = -wmin / scale
    codes = torch.clamp(torch.round(wg / scale[..., None] + zero[..., None]), 0, qmax).to(torch.uint8).numpy()
    b = _pack_nibbles(codes) if bits == 4 else codes
    return NBitsWeight(
        np.ascontiguousarray(b), scale.numpy().reshape(-1).astype(np.float32), zero.numpy().reshape(-1).astype(np.float32),
        n, k, bits, block_size,
    )  # fmt: skip


def unpack_nbits(p: NBitsWeight) -> torch.Tensor:
    """Dequantized W[N, K] float32 from packed MatMulNBits initializers (the exact inverse used in tests)."""
    n_blocks = p.b.shape[1]
    off = 2 ** (p.bits - 1)
    u = unpack_nibbles(p.b, p.block_size) if p.bits == 4 else p.b
    codes = u.reshape(p.n, n_blocks * p.block_size).astype(np.int16) - off
    scale = torch.from_numpy(p.scales.reshape(p.n, n_blocks).copy())
    zero = None
    if p.zero_points is not None and p.zero_points.dtype == np.float32:  # float zero points are not shifted
        zf = torch.from_numpy(p.zero_points.reshape(p.n, n_blocks).copy())
        return ((torch.from_numpy(codes + off).float().reshape(p.n, n_blocks, -1) - zf[..., None]) * scale[..., None]
                ).reshape(p.n, -1)[:, : p.k]  # fmt: skip
    if p.zero_points is not None:
        zu = p.zero_points.reshape(p.n, -1)
        zu = unpack_nibbles(zu, n_blocks) if p.bits == 4 else zu
        zero = torch.from_numpy(zu.astype(np.int16) - off).float()
    qp = QParams(scale, zero, p.bits, p.block_size)
    return dequantize(torch.from_numpy(codes.astype(np.int8)), qp)[:, : p.k]
