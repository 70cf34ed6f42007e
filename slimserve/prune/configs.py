"""Recipe configs of the prune methods, torch-free so that validating a recipe imports no torch.

The algorithms (and the YAML examples) live in ``structured``, ``wanda`` and ``recovery``; ``slimserve.methods``
pairs each config with its ``apply``.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..calibration.config import CalibrationConfig
from ..steps import StepConfig

_NM = re.compile(r"(\d+):(\d+)")


def _small_calibration() -> CalibrationConfig:
    return CalibrationConfig(samples=32, seq_len=512)


class RecoveryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    steps: int = Field(100, ge=1, le=100000)
    lr: float = Field(5e-5, gt=0, le=1)
    batch_size: int = Field(4, ge=1, le=256)
    seq_len: int = Field(256, ge=16, le=8192)
    temperature: float = Field(1.0, gt=0)
    eval_windows: int = Field(4, ge=1, le=256)


class StructuredConfig(StepConfig):
    method: Literal["structured"] = "structured"
    mlp_ratio: float = Field(0.25, ge=0, lt=1)
    attention_ratio: float = Field(0.0, ge=0, lt=1)
    # Kept intermediate size is a multiple of this: 128 keeps down_proj divisible by int4 group 128 afterwards.
    round_to: int = Field(64, ge=1, le=1024)
    compensate: bool = True
    damp: float = Field(0.01, gt=0, le=1)
    calibration: CalibrationConfig = Field(default_factory=_small_calibration)
    recovery: RecoveryConfig | None = None

    def summary(self) -> str:
        return f"structured mlp-{self.mlp_ratio:.0%} kv-{self.attention_ratio:.0%}"


class WandaConfig(StepConfig):
    method: Literal["wanda"] = "wanda"
    pattern: str = "unstructured"
    sparsity: float = Field(0.5, gt=0, lt=1)
    ignore: list[str] = Field(default_factory=lambda: ["lm_head"])
    calibration: CalibrationConfig = Field(default_factory=_small_calibration)
    recovery: RecoveryConfig | None = None

    @model_validator(mode="after")
    def _check(self):
        if self.pattern != "unstructured":
            m = _NM.fullmatch(self.pattern)
            if not m or not 0 < int(m[1]) < int(m[2]):
                raise ValueError(
                    f"pattern must be 'unstructured' or 'N:M' with 0 < N < M (e.g. '2:4'), got {self.pattern!r}"
                )
            if "sparsity" in self.model_fields_set:
                raise ValueError(
                    "sparsity is implied by an N:M pattern (1 - N/M); remove it or use pattern: unstructured"
                )
        return self

    @property
    def nm(self) -> tuple[int, int] | None:
        m = _NM.fullmatch(self.pattern)
        return (int(m[1]), int(m[2])) if m else None

    def summary(self) -> str:
        return f"wanda {self.pattern}" + ("" if self.nm else f" {self.sparsity:.0%}")
