"""Weight plans for the fused graph (which projection becomes MatMulNBits, on which grid) and ONNX Runtime's
dynamic int8 quantization of a saved float graph.

A plan reuses the grid an earlier ``quantize`` step chose (QParams attached to the nn.Linear: RTN, GPTQ, AWQ, with
per-layer bits from mixed precision), so ``quantize: gptq`` + ``export: onnx`` exports GPTQ's codes, scales and zero
points unchanged; a grid MatMulNBits cannot hold fails the build unless the recipe allows re-rounding. What no step
rounded (the lm_head, the embedding table, or everything without a quantize step) the export rounds itself.
Every decision lands in ctx.layers / ctx.skipped for the manifest.
"""

from __future__ import annotations

import torch

from ..errors import UserError
from ..quant.base import get_qparams
from ..quant.math import QParams, compute_qparams
from ..quant.mixed import planned_bits
from ..quant.search import search_qparams
from ..steps import StepContext
from .nodes import EMBED
from .packing import SUPPORTED_BITS, NBitsWeight, pack_nbits, pack_nbits_float_zero, pad_k

NBITS_BLOCKS = (16, 32, 64, 128, 256)
HEAD = "lm_head"


class UnsupportedGrid(Exception):
    """An earlier step's grid that MatMulNBits cannot hold (the message says why)."""


def _fused_qparams(modules: list, k: int) -> QParams | None:
    """Concatenate the attached QParams of modules fused along the output dim (q|k|v, gate|up).

    None when no module carries QParams; UnsupportedGrid when they do but MatMulNBits cannot hold them.
    """
    qps = [get_qparams(m) for m in modules]
    if all(q is None for q in qps):
        return None
    if any(q is None for q in qps):
        raise UnsupportedGrid("only some of the fused projections carry an earlier step's grid")
    first = qps[0]
    kinds = {(q.bits, q.group_size, q.symmetric) for q in qps}
    if len(kinds) > 1:
        raise UnsupportedGrid(f"the fused projections were rounded differently ({sorted(kinds, key=str)}); "
                              "one MatMulNBits node holds one bit width and block size")  # fmt: skip
    if first.bits not in SUPPORTED_BITS:
        raise UnsupportedGrid(f"{first.bits}-bit codes (MatMulNBits holds {', '.join(map(str, SUPPORTED_BITS))})")
    if first.group_size not in NBITS_BLOCKS or k % first.group_size:
        what = "a per-channel grid" if first.group_size is None else f"group size {first.group_size}"
        raise UnsupportedGrid(f"{what} (MatMulNBits block sizes: {', '.join(map(str, NBITS_BLOCKS))})")
    zero = None if first.symmetric else torch.cat([q.zero_point for q in qps], 0)
    return QParams(torch.cat([q.scale for q in qps], 0), zero, first.bits, first.group_size)


WEIGHT_BITS = {"int4": 4, "int8": 8}  # MatMulNBits bits of each `weights:` value


class WeightPlan:
    """Callable (name, weight, source modules) -> packed weight or None (float MatMul), recording each decision."""

    def __init__(self, cfg, ctx: StepContext | None = None):
        self.cfg, self.ctx = cfg, ctx
        self.decisions: dict[str, dict] = {}
        # a float lm_head tied to a float embedding shares its table
        self.keep_tied = cfg.weights == "float" or not cfg.quantize_lm_head
        self.default_bits = WEIGHT_BITS.get(cfg.weights)

    def __call__(self, name: str, w: torch.Tensor, sources: list) -> NBitsWeight | None:
        cfg = self.cfg
        if name == EMBED:
            return self._embedding(w, sources)
        if self.default_bits is None:  # float weights
            if any(get_qparams(m) for m in sources):
                self._note(name, {"weights": "float", "note": "earlier quantize step's grid kept as float values"})
            return None
        if name == HEAD and not cfg.quantize_lm_head:
            self._skip(name, "quantize_lm_head: false (lm_head stays a float MatMul)")
            return None
        step_qp = self._step_grid(name, w, sources)
        if step_qp is not None:
            self._note(name, {"bits": step_qp.bits, "block_size": step_qp.group_size, "symmetric": step_qp.symmetric,
                              "grid": "earlier quantize step"})  # fmt: skip
            return pack_nbits(w, step_qp)
        if name == HEAD:
            bits, why = self._bits(cfg.lm_head_bits, sources)
            return self._round(name, w, bits, cfg.block_size, cfg.symmetric or bits == 8, why)
        return self._round(name, w, self.default_bits, cfg.block_size, cfg.symmetric, "export setting")

    def _step_grid(self, name: str, w: torch.Tensor, sources: list) -> QParams | None:
        if not self.cfg.use_step_qparams:
            if any(get_qparams(m) for m in sources):
                self._note(name, {"note": "use_step_qparams: false; the earlier step's grid was rounded again"})
            return None
        try:
            return _fused_qparams(sources, w.shape[1])
        except UnsupportedGrid as e:
            if self.cfg.on_unsupported_grid != "reround":
                field = self.ctx.field if self.ctx else "export"
                raise UserError(
                    f"layer {name} carries an earlier quantize step's grid that MatMulNBits cannot hold: {e}",
                    field=field, file=self.ctx.recipe_file if self.ctx else None,
                    hint="give the quantize step a block-wise group_size (32, 64 or 128), or set "
                    "`on_unsupported_grid: reround` on the export to round such layers again (recorded in the manifest)",
                ) from None  # fmt: skip
            self._note(name, {"note": f"earlier step's grid rounded again (on_unsupported_grid: reround): {e}"})
            return None

    def _bits(self, setting: int | None, sources: list) -> tuple[int, str]:
        """Bits for the lm_head / embedding: the recipe's setting, else a mixed plan's measured choice, else 8."""
        if setting is not None:
            return setting, "export setting"
        planned = next((planned_bits(m) for m in sources if planned_bits(m) is not None), None)
        if planned is not None:
            return planned, "mixed-precision plan of the earlier quantize step (measured sensitivity)"
        return 8, "default: 8 bits (llama.cpp's Q4 files keep this tensor at Q8_0)"

    def _round(self, name: str, w: torch.Tensor, bits: int, block: int, sym: bool, why: str, **extra):
        """Round w onto a block grid (min/max, or searched) and pack it, recording the choice."""
        cfg = self.cfg
        float_zero = cfg.zero_point == "float" and not sym and bits == 4 and name != EMBED
        grid = "minmax-float-zero" if float_zero else ("searched" if cfg.search else "rtn")
        self._note(name, {"bits": bits, "block_size": block, "symmetric": sym, "grid": grid, "why": why,
                          "padded_k": w.shape[1] % block != 0, **extra})  # fmt: skip
        if float_zero:
            return pack_nbits_float_zero(w, bits, block)
        wp = pad_k(w.detach().float(), block)
        qp = search_qparams(wp, bits, block, sym) if cfg.search else compute_qparams(wp, bits, block, sym)
        return pack_nbits(w, qp)

    def _embedding(self, w: torch.Tensor, sources: list) -> NBitsWeight | None:
        """GatherBlockQuantized table (4 or 8 bits); its blocks must divide the hidden size (576 = 64 x 9: 64, not 128)."""
        cfg = self.cfg
        if cfg.weights == "float":
            return None
        if self.default_bits is None or not cfg.quantize_embedding:
            self._skip(EMBED, "embedding Gather stays float32" + ("" if self.default_bits else f" ({cfg.weights})"))
            return None
        block = next((b for b in NBITS_BLOCKS[::-1] if b <= cfg.block_size and w.shape[1] % b == 0), None)
        if block is None:
            self._skip(EMBED, f"no block size <= {cfg.block_size} divides the hidden size {w.shape[1]}")
            return None
        bits, why = self._bits(cfg.embedding_bits, sources)
        # 8 bits: symmetric absmax/127 (llama.cpp's Q8_0 grid)
        return self._round(EMBED, w, bits, block, cfg.symmetric or bits == 8, why, op="GatherBlockQuantized")

    def _note(self, name: str, rec: dict) -> None:
        self.decisions.setdefault(name, {}).update(rec)
        if self.ctx is not None:
            self.ctx.layers.setdefault(name, {}).update(rec)

    def _skip(self, name: str, why: str) -> None:
        if self.ctx is not None:
            self.ctx.skip(name, why)
