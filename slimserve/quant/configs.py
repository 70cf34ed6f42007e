"""Recipe configs of the quantize methods, torch-free so that validating a recipe imports no torch.

The algorithms (and the YAML examples) live in ``rtn``, ``gptq``, ``awq`` and ``bnb``; ``slimserve.methods``
pairs each config with its ``apply``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..steps import StepConfig

GroupSize = Literal[32, 64, 128] | None


class CalibrationConfig(BaseModel):
    """Where calibration tokens come from: `samples` consecutive windows of `seq_len` tokens of `text`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    text: str | None = None  # path to a UTF-8 (optionally .gz) text file; None: Pride and Prejudice
    samples: int = Field(128, ge=1, le=4096)
    seq_len: int = Field(512, ge=16, le=8192)
    batch_size: int = Field(8, ge=1, le=512)


class LayerOverride(BaseModel):
    """Per-layer settings that replace the step's own for matching layers."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    bits: Literal[4, 8] | None = None
    group_size: GroupSize = None
    symmetric: bool | None = None


class WeightQuantConfig(StepConfig):
    """Settings shared by every weight-only integer quantizer (RTN, GPTQ, AWQ)."""

    bits: Literal[4, 8] = 4
    group_size: GroupSize = 128
    symmetric: bool = False
    # Regex (fullmatch on module names) -> "skip" or settings; first match wins.
    overrides: dict[str, Literal["skip"] | LayerOverride] = Field(default_factory=dict)
    # lm_head is tied to the embeddings in many small models; quantizing it would untie it.
    ignore: list[str] = Field(default_factory=lambda: ["lm_head"])
    # What to do when group_size does not divide a layer's in_features (e.g. hidden 576 with group 128):
    # use the largest smaller group that divides it, quantize per output channel, or skip the layer.
    on_indivisible: Literal["smaller-group", "per-channel", "skip"] = "smaller-group"
    artifact_format: ClassVar[str | None] = "compressed-tensors"

    def summary(self) -> str:
        g = f"g{self.group_size}" if self.group_size else "per-channel"
        return f"{getattr(self, 'method', 'int')} w{self.bits} {g} {'sym' if self.symmetric else 'asym'}"


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
    artifact_format: ClassVar[str | None] = "bitsandbytes"

    @model_validator(mode="after")
    def _check(self):
        if self.scheme == "int8" and self.double_quant:
            raise ValueError("double_quant applies to the 4-bit schemes only (scheme: nf4 or fp4)")
        return self

    def summary(self) -> str:
        return f"bitsandbytes {self.scheme}" + (" double-quant" if self.double_quant else "")
