"""Recipe configs of the quantize methods, torch-free so that validating a recipe imports no torch.

The algorithms (and the YAML examples) live in ``rtn``, ``gptq``, ``awq`` and ``bnb``; ``slimserve.methods``
pairs each config with its ``apply``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..calibration.config import CalibrationConfig
from ..steps import StepConfig

GroupSize = Literal[32, 64, 128] | None


class LayerOverride(BaseModel):
    """Per-layer settings that replace the step's own for matching layers."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    bits: Literal[4, 8] | None = None
    group_size: GroupSize = None
    symmetric: bool | None = None


class MixedConfig(BaseModel):
    """Mixed precision by measured sensitivity (see slimserve/quant/mixed.py): the units whose rounding moves the
    model's next-token distribution most (per weight) keep `high_bits`, within a mean code-bits budget.

    ```yaml
    mixed: {budget_bpw: 4.8}   # 4 = every unit at the step's bits, 8 = every unit at 8 bits
    ```
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    budget_bpw: float = Field(ge=4, le=8, description="mean code bits per weight over the units (scales excluded)")
    high_bits: Literal[8] = 8
    # Also let the measurement decide the lm_head and embedding table (for the ONNX export, which quantizes them).
    # Off by default: one of them is a fifth of the model, and sensitivities of many small units do not add up, so
    # a budget that skips the lm_head for many small units can leave it at 4 bits where it costs most; without it
    # they keep the export's setting (8 bits by default, as llama.cpp's Q4 files keep this tensor at Q8_0).
    include_head: bool = False
    # sensitivity is measured on the first `samples` windows of this text (default: Pride and Prejudice's start)
    calibration: CalibrationConfig = Field(default_factory=lambda: CalibrationConfig(samples=2, seq_len=512))


class WeightQuantConfig(StepConfig):
    """Settings shared by every weight-only integer quantizer (RTN, GPTQ, AWQ)."""

    bits: Literal[4, 8] = 4
    group_size: GroupSize = 128
    symmetric: bool = False
    # Search each group's scale and integer zero point for the least weighted squared error (llama.cpp
    # make_qx_quants style) instead of taking the min/max range; GPTQ uses it for its group grids (weighted by the
    # Hessian diagonal), RTN as the calibration-free grid. AWQ searches its own clipping.
    search: bool = False
    mixed: MixedConfig | None = None
    # Regex (fullmatch on module names) -> "skip" or settings; first match wins.
    overrides: dict[str, Literal["skip"] | LayerOverride] = Field(default_factory=dict)
    # lm_head is tied to the embeddings in many small models; quantizing it would untie it.
    ignore: list[str] = Field(default_factory=lambda: ["lm_head"])
    # What to do when group_size does not divide a layer's in_features (e.g. hidden 576 with group 128):
    # use the largest smaller group that divides it, quantize per output channel, or skip the layer.
    on_indivisible: Literal["smaller-group", "per-channel", "skip"] = "smaller-group"

    @model_validator(mode="after")
    def _check_mixed(self):
        if self.mixed is not None and self.bits >= self.mixed.high_bits:
            raise ValueError(f"mixed precision keeps some units at {self.mixed.high_bits} bits above the step's bits; "
                             f"with bits: {self.bits} there is nothing to mix (use bits: 4, or drop mixed)")  # fmt: skip
        return self

    def summary(self) -> str:
        g = f"g{self.group_size}" if self.group_size else "per-channel"
        extra = (" search" if self.search else "") + (f" mixed {self.mixed.budget_bpw:g}bpw" if self.mixed else "")
        return f"{getattr(self, 'method', 'int')} w{self.bits} {g} {'sym' if self.symmetric else 'asym'}{extra}"


class RTNConfig(WeightQuantConfig):
    method: Literal["rtn"] = "rtn"


class GPTQConfig(WeightQuantConfig):
    method: Literal["gptq"] = "gptq"
    act_order: bool = True
    damp: float = Field(0.01, gt=0, le=1)
    block_size: int = Field(128, ge=16, le=4096)
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)

    def summary(self) -> str:
        return super().summary() + (" act-order" if self.act_order else "")


class AWQConfig(WeightQuantConfig):
    method: Literal["awq"] = "awq"
    search: Literal[False] = False  # AWQ searches per-group clipping instead (clip)
    grid: int = Field(20, ge=2, le=100)
    clip: bool = True
    max_shrink: float = Field(0.5, ge=0, lt=1)
    search_tokens: int = Field(2048, ge=64, le=65536)
    clip_tokens: int = Field(512, ge=64, le=65536)
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)


class BnBConfig(StepConfig):
    method: Literal["bitsandbytes"] = "bitsandbytes"
    scheme: Literal["int8", "nf4", "fp4"] = "nf4"
    double_quant: bool = False
    compute_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    int8_threshold: float = Field(6.0, ge=0)  # LLM.int8 outlier threshold (int8 only)
    # Module-name regexes kept in float (lm_head is tied to the embeddings in small models).
    ignore: list[str] = Field(default_factory=lambda: ["lm_head"])

    @model_validator(mode="after")
    def _check(self):
        if self.scheme == "int8" and self.double_quant:
            raise ValueError("double_quant applies to the 4-bit schemes only (scheme: nf4 or fp4)")
        return self

    def summary(self) -> str:
        return f"bitsandbytes {self.scheme}" + (" double-quant" if self.double_quant else "")


class SmoothQuantConfig(StepConfig):
    """SmoothQuant (Xiao et al., 2022): move activation outliers into the weights before int8 weights *and* int8
    activations (ONNX Runtime's fast MatMulNBits path quantizes activations per block). The float function is
    unchanged; only what rounds well changes. Follow it with `export: {format: onnx, weights: int8}`.

    ```yaml
    - quantize: {method: smoothquant, alpha: 0.5, calibration: {samples: 32, seq_len: 512}}
    ```
    """

    method: Literal["smoothquant"] = "smoothquant"
    alpha: float = Field(0.5, ge=0, le=1, description="migration strength: 0 = none, 1 = all onto the weights")
    calibration: CalibrationConfig = Field(default_factory=lambda: CalibrationConfig(samples=32, seq_len=512))

    def summary(self) -> str:
        return f"smoothquant alpha {self.alpha:g}"
