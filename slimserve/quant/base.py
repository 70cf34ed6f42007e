"""Shared plumbing of weight quantizers: which Linear layers a step targets, and how a method
records the quantization it chose so the artifact writer can pack it.

A quantize method leaves each quantized Linear with its *fake-quantized* weight (on the grid, in the
model dtype, so the model still runs for the next layer's calibration) and attaches the QParams
with ``attach_qparams``. The compressed-tensors writer re-derives the integer codes exactly.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import torch
from torch import nn

from .math import QParams

QPARAMS_ATTR = "_slimserve_qparams"


def attach_qparams(module: nn.Module, qp: QParams) -> None:
    setattr(module, QPARAMS_ATTR, qp)


def get_qparams(module: nn.Module) -> QParams | None:
    return getattr(module, QPARAMS_ATTR, None)


def iter_linears(model: nn.Module) -> Iterator[tuple[str, nn.Linear]]:
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            yield name, mod


def match_override(name: str, overrides: dict[str, object]) -> object | None:
    """First override whose regex matches the full layer name (fullmatch, in recipe order)."""
    for pattern, value in overrides.items():
        if re.fullmatch(pattern, name):
            return value
    return None


@torch.no_grad()
def set_weight(module: nn.Linear, w: torch.Tensor) -> None:
    module.weight.data.copy_(w.to(module.weight.dtype))
