"""Recipe export steps: `export: {format: onnx}` and `export: {format: neuron-static}`.

```yaml
steps:
  - export:
      format: onnx
      graph: fused          # fused (GroupQueryAttention + MatMulNBits, fast loop) | optimum (stock optimum-onnx)
      weights: int4         # float | int4 | int8 (weight-only MatMulNBits)
      block_size: 32        # 16 | 32 | 64 | 128 | 256 (what the export rounds itself)
      symmetric: false
      accuracy_level: 4     # MatMulNBits compute: 4 = int8 activations (fastest on CPU), 0 = float
```
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ..errors import UserError
from ..steps import StepConfig, StepContext


class OnnxWeightsConfig(StepConfig):
    """How projection weights are stored in the graph (shared by the onnx and neuron-static exports).

    A layer that an earlier quantize step rounded (RTN, GPTQ, AWQ; mixed precision too) keeps that step's codes,
    scales, zero points and bits in MatMulNBits; `weights`, `block_size` and `symmetric` apply to what the export
    rounds itself (every projection without an earlier step, and the lm_head / embedding table).
    """

    # float | int4 / int8 (weight-only MatMulNBits, block-wise). ORT's dynamic MatMulInteger int8 is not offered: on
    # SmolLM2 it measured KLD 0.48 (per-tensor activations) at 78 tok/s against MatMulNBits int8's 0.004 at 94.
    weights: Literal["float", "int8", "int4"] = "float"
    block_size: Literal[16, 32, 64, 128, 256] = 32
    symmetric: bool = False
    # Round what the export rounds itself with a searched scale/zero per block (least weighted squared error,
    # llama.cpp make_qx_quants style) instead of min/max.
    search: bool = False
    # Asymmetric zero point: "int" (a code, like GPTQ/compressed-tensors) or "float" (llama.cpp Q4_1's min offset;
    # exact for weights already on a Q4_1 grid). The embedding table always uses an int zero point.
    # Float zero points hit a slow ONNX Runtime 1.32 CPU decode path (~1 tok/s vs ~20 on SmolLM2): quality only.
    zero_point: Literal["int", "float"] = "int"
    accuracy_level: Literal[0, 1, 2, 3, 4] = 4
    # The tied lm_head is untied into its own initializer so MatMulNBits covers it too; false keeps it float.
    quantize_lm_head: bool = True
    # The embedding table as GatherBlockQuantized (a tied model then stores the table twice, still far smaller
    # than one float32 copy).
    quantize_embedding: bool = True
    # Bits of the (untied) lm_head and of the embedding table. None: what an earlier step's mixed-precision plan
    # measured, else 8 (symmetric absmax/127 blocks: llama.cpp's Q8_0, which its Q4 files use for this tensor).
    lm_head_bits: Literal[4, 8] | None = None
    embedding_bits: Literal[4, 8] | None = None
    # Reuse the grid (codes) of an earlier quantize step.
    use_step_qparams: bool = True
    # An earlier step's grid that MatMulNBits cannot hold (per-channel: MatMulNBits is block-wise): "error" fails
    # the build naming the layer; "reround" rounds that layer again with the export's settings (in the manifest).
    on_unsupported_grid: Literal["error", "reround"] = "error"

    def _wsummary(self) -> str:
        if self.weights in ("int4", "int8"):
            kind = "sym" if self.symmetric else ("asym-fzp" if self.zero_point == "float" else "asym")
            return f"{self.weights} b{self.block_size} {kind} acc{self.accuracy_level}" + (
                " search" if self.search else ""
            )
        return self.weights


class OnnxExportConfig(OnnxWeightsConfig):
    """ONNX decoder with a KV cache, runnable by the onnx-cpu / onnx-cuda targets and by optimum."""

    format: Literal["onnx"] = "onnx"
    graph: Literal["fused", "optimum"] = "fused"

    def summary(self) -> str:
        return f"onnx {self.graph} {self._wsummary()}"


class StaticExportConfig(OnnxWeightsConfig):
    """Inferentia-style static-shape graphs, one prefill + one decode graph per (batch, sequence) bucket.

    ```yaml
    - export:
        format: neuron-static
        batch_sizes: [1, 4]
        sequence_lengths: [128, 512, 2048]   # total context (prompt + new tokens) of each bucket
        auto_cast_type: bf16                 # optimum-neuron mapping only
        num_cores: 2                         # optimum-neuron mapping only
    ```
    """

    format: Literal["neuron-static"] = "neuron-static"
    batch_sizes: list[int] = Field(default_factory=lambda: [1])
    sequence_lengths: list[int] = Field(default_factory=lambda: [128, 512])
    auto_cast_type: Literal["bf16", "fp16", "fp32"] = "bf16"
    num_cores: int = Field(2, ge=1)

    @model_validator(mode="after")
    def _check(self):
        for name in ("batch_sizes", "sequence_lengths"):
            vals = getattr(self, name)
            if not vals or any(v < 1 for v in vals) or len(set(vals)) != len(vals):
                raise ValueError(f"{name} must be a non-empty list of distinct positive integers, got {vals}")
        return self

    def summary(self) -> str:
        return f"neuron-static b{self.batch_sizes} s{self.sequence_lengths} {self._wsummary()}"


def _check_dir_empty_of_onnx(ctx: StepContext) -> None:
    if any(ctx.work_dir.rglob("*.onnx")):
        raise UserError("a variant can have only one export step", field=ctx.field, file=ctx.recipe_file)


def apply_onnx(model, cfg: OnnxExportConfig, ctx: StepContext):
    """Export into ctx.work_dir (temporary; the build renames it into place, so nothing is half-written)."""
    import time

    from .export import export_fused, export_optimum
    from .quantize import WEIGHT_BITS, WeightPlan

    _check_dir_empty_of_onnx(ctx)
    out = ctx.work_dir
    t0 = time.perf_counter()
    model.eval()
    if cfg.graph == "fused":
        plan = WeightPlan(cfg, ctx)
        path = export_fused(model, out, plan, accuracy_level=cfg.accuracy_level)
    else:
        path = export_optimum(model, out)
        if cfg.weights in WEIGHT_BITS:
            _quantize_optimum(model, path, cfg, ctx)
    ctx.artifact_format = "onnx"
    ctx.records.update(
        {
            "graph": cfg.graph,
            "model_file": path.name,
            "weights": cfg.weights,
            "export_seconds": round(time.perf_counter() - t0, 2),
            "onnxruntime_ops": _op_counts(path),
        }
    )
    return model


def _quantize_optimum(model, path, cfg: OnnxExportConfig, ctx: StepContext) -> None:
    """MatMulNBits over the optimum graph; what it leaves float (embedding, maybe lm_head) goes to ctx.skipped."""
    from ..quant.base import get_qparams
    from .export import quantize_optimum_nbits
    from .quantize import WEIGHT_BITS

    if any(get_qparams(m) is not None for m in model.modules()):  # the fused graph would keep the step's codes
        ctx.records["grid_note"] = "graph: optimum rounds an earlier quantize step's weights again with MatMulNBits"
    head_bits = (cfg.lm_head_bits or 8) if cfg.quantize_lm_head else None
    layers = quantize_optimum_nbits(path, bits=WEIGHT_BITS[cfg.weights], block_size=cfg.block_size,
                                    symmetric=cfg.symmetric, accuracy_level=cfg.accuracy_level, head_bits=head_bits)  # fmt: skip
    ctx.layers.update(layers)
    if head_bits is None:
        ctx.skip("lm_head", "quantize_lm_head: false (lm_head stays a float MatMul)")
    ctx.skip("model.embed_tokens", "graph: optimum keeps the embedding Gather float32 (graph: fused quantizes it)")


def _op_counts(path) -> dict[str, int]:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    counts: dict[str, int] = {}
    for n in m.graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return dict(sorted(counts.items()))


def apply_static(model, cfg: StaticExportConfig, ctx: StepContext):
    from .quantize import WeightPlan
    from .static import export_static

    _check_dir_empty_of_onnx(ctx)
    model.eval()
    plan = WeightPlan(cfg, ctx)
    info = export_static(model, ctx.work_dir, plan, cfg)
    ctx.artifact_format = "onnx-static"
    ctx.records.update(info)
    return model
