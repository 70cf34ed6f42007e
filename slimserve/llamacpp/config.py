"""`export: {format: gguf}`: a GGUF file that llama.cpp loads unchanged.

```yaml
steps:
  - export:
      format: gguf
      type: Q4_0          # F32 | F16 | BF16 | Q8_0 | Q4_0 | Q4_1 | Q5_0 | Q5_1 (numpy, gguf-py) | Q4_K_M, Q6_K... (llama-quantize)
      quantizer: auto     # auto: gguf-py where it can round the type, else llama.cpp's llama-quantize
```
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from ..steps import StepConfig

# Types gguf-py (the `gguf` package) rounds in numpy, bit-exact with llama.cpp's reference rows.
NUMPY_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1")
# Types only llama-quantize writes (K-quants, and the i-quants that need no importance matrix).
QUANTIZE_TYPES = (
    "Q2_K", "Q2_K_S", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS",
)  # fmt: skip
GGUF_TYPES = NUMPY_TYPES + QUANTIZE_TYPES
GgufType = Literal[GGUF_TYPES]  # type: ignore[valid-type]


class GgufExportConfig(StepConfig):
    """Write the model as one GGUF file (llama.cpp's format), rounded to `type`.

    The numpy path follows llama.cpp's policy for these types: norms stay F32 and the output projection (the tied
    embedding when there is no lm_head) is Q8_0 under the 4/5-bit types, as llama-quantize does for rows that are not
    a multiple of 256 (it picks Q6_K for the others; use `quantizer: llama-quantize` for exactly its choices).
    """

    format: Literal["gguf"] = "gguf"
    type: GgufType = Field(description="GGUF weight type; llama-quantize's names, case-insensitive")
    # auto: gguf-py for NUMPY_TYPES, llama-quantize for the rest; llama-quantize: always (from an F32 GGUF).
    quantizer: Literal["auto", "gguf-py", "llama-quantize"] = "auto"
    threads: int | None = Field(None, ge=1, description="llama-quantize threads (default: its own)")
    artifact_format: ClassVar[str | None] = "gguf"

    @field_validator("type", mode="before")
    @classmethod
    def _upper(cls, v):
        return v.upper() if isinstance(v, str) else v

    @field_validator("quantizer")
    @classmethod
    def _numpy_can(cls, v, info):
        t = info.data.get("type")
        if v == "gguf-py" and t is not None and t not in NUMPY_TYPES:
            raise ValueError(f"gguf-py cannot round {t} (it rounds {', '.join(NUMPY_TYPES)}); use quantizer: auto")
        return v

    def engine(self) -> str:
        """Which tool rounds the weights: 'gguf-py' or 'llama-quantize'."""
        if self.quantizer == "auto":
            return "gguf-py" if self.type in NUMPY_TYPES else "llama-quantize"
        return self.quantizer

    def summary(self) -> str:
        return f"gguf {self.type} ({self.engine()})"
