"""Weight plans for the fused graph (which projection becomes MatMulNBits, on which grid) and ONNX Runtime's
dynamic int8 quantization of a saved float graph.

A plan reuses the grid an earlier ``quantize`` step chose (QParams attached to the nn.Linear, e.g. GPTQ/AWQ) when
MatMulNBits can hold it, so ``quantize: gptq`` + ``export: onnx`` exports GPTQ's codes; otherwise it rounds to nearest
with the export step's block size. Every decision lands in ctx.layers / ctx.skipped for the manifest.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..quant.base import get_qparams
from ..quant.math import QParams
from ..steps import StepContext
from .graph import EMBED
from .packing import NBitsWeight, pack_nbits, pack_nbits_float_zero, rtn_qparams

NBITS_BLOCKS = (16, 32, 64, 128, 256)


def _fused_qparams(modules: list, k: int) -> QParams | None:
    """Concatenate the attached QParams of modules fused along the output dim, if all agree and fit MatMulNBits."""
    qps = [get_qparams(m) for m in modules]
    if any(q is None for q in qps):
        return None
    first = qps[0]
    same = all(
        q.bits == first.bits and q.group_size == first.group_size and q.symmetric == first.symmetric for q in qps
    )
    if not same or first.bits not in (4, 8) or first.group_size not in NBITS_BLOCKS or k % first.group_size:
        return None
    zero = None if first.symmetric else torch.cat([q.zero_point for q in qps], 0)
    return QParams(torch.cat([q.scale for q in qps], 0), zero, first.bits, first.group_size)


class WeightPlan:
    """Callable (name, weight, source modules) -> packed weight or None (float MatMul), recording each decision."""

    def __init__(self, cfg, ctx: StepContext | None = None):
        self.cfg, self.ctx = cfg, ctx
        self.decisions: dict[str, dict] = {}
        # a float lm_head tied to a float embedding shares its table, unless int8 must quantize it
        self.keep_tied = cfg.weights == "float" or not cfg.quantize_lm_head

    def __call__(self, name: str, w: torch.Tensor, sources: list) -> NBitsWeight | None:
        cfg = self.cfg
        if name == EMBED:
            return self._embedding(w)
        step_qp = _fused_qparams(sources, w.shape[1]) if cfg.use_step_qparams else None
        if cfg.weights != "int4":
            if step_qp is not None or any(get_qparams(m) for m in sources):
                self._note(name, {"weights": "float", "note": "earlier quantize step's grid kept as float values"})
            return None
        if name == "lm_head" and not cfg.quantize_lm_head:
            self._skip(name, "quantize_lm_head: false (lm_head stays a float MatMul)")
            return None
        if step_qp is not None:
            self._note(name, {"bits": step_qp.bits, "block_size": step_qp.group_size, "symmetric": step_qp.symmetric,
                              "grid": "earlier quantize step"})  # fmt: skip
            return pack_nbits(w, step_qp)
        if any(get_qparams(m) for m in sources):
            self._note(name, {"note": "earlier step's grid does not fit MatMulNBits; re-rounded (RTN)"})
        if name == "lm_head" and cfg.lm_head_bits == 8:  # symmetric absmax/127 blocks = llama.cpp's Q8_0 grid
            self._note(name, {"bits": 8, "block_size": cfg.block_size, "symmetric": True, "grid": "rtn"})
            return pack_nbits(w, rtn_qparams(w, 8, cfg.block_size, True))
        float_zero = cfg.zero_point == "float" and not cfg.symmetric
        self._note(name, {"bits": 4, "block_size": cfg.block_size, "symmetric": cfg.symmetric,
                          "grid": "minmax-float-zero" if float_zero else "rtn",
                          "padded_k": w.shape[1] % cfg.block_size != 0})  # fmt: skip
        if float_zero:
            return pack_nbits_float_zero(w, 4, cfg.block_size)
        return pack_nbits(w, rtn_qparams(w, 4, cfg.block_size, cfg.symmetric))

    def _embedding(self, w: torch.Tensor) -> NBitsWeight | None:
        """GatherBlockQuantized table (4 or 8 bits); its blocks must divide the hidden size (576 = 64 x 9: 64, not 128)."""
        cfg = self.cfg
        if cfg.weights == "float":
            return None
        if cfg.weights != "int4" or not cfg.quantize_embedding:
            self._skip(EMBED, "embedding Gather stays float32" + ("" if cfg.weights == "int4" else f" ({cfg.weights})"))
            return None
        block = next((b for b in NBITS_BLOCKS[::-1] if b <= cfg.block_size and w.shape[1] % b == 0), None)
        if block is None:
            self._skip(EMBED, f"no block size <= {cfg.block_size} divides the hidden size {w.shape[1]}")
            return None
        bits = cfg.embedding_bits
        sym = cfg.symmetric or bits == 8  # 8 bits: symmetric absmax/127 (llama.cpp's Q8_0 grid)
        self._note(EMBED, {"bits": bits, "block_size": block, "symmetric": sym, "grid": "rtn",
                           "op": "GatherBlockQuantized"})  # fmt: skip
        return pack_nbits(w, rtn_qparams(w, bits, block, sym))

    def _note(self, name: str, rec: dict) -> None:
        self.decisions.setdefault(name, {}).update(rec)
        if self.ctx is not None:
            self.ctx.layers.setdefault(name, {}).update(rec)

    def _skip(self, name: str, why: str) -> None:
        if self.ctx is not None:
            self.ctx.skip(name, why)


def quantize_dynamic_int8(src: Path, dst: Path, *, per_channel: bool = True) -> list[str]:
    """ORT dynamic int8 (int8 weights, activations quantized per call) of every float MatMul; returns their names."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(src), load_external_data=False)
    names = [n.name for n in model.graph.node if n.op_type == "MatMul"]
    quantize_dynamic(
        str(src),
        str(dst),
        per_channel=per_channel,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul"],
        use_external_data_format=True,
        extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return names
