"""The recipe's `calibration:` block, torch-free so that validating a recipe imports no torch.

```yaml
calibration: {text: null, samples: 128, seq_len: 512, batch_size: 8}   # text null: Pride and Prejudice
```
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class CalibrationConfig(BaseModel):
    """Where calibration tokens come from: `samples` consecutive windows of `seq_len` tokens of `text`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    text: str | None = None  # path to a UTF-8 (optionally .gz) text file; None: Pride and Prejudice
    samples: int = Field(128, ge=1, le=4096)
    seq_len: int = Field(512, ge=16, le=8192)
    batch_size: int = Field(8, ge=1, le=512)
