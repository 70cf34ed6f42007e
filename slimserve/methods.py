"""Imports every method module so its registration runs. Add new method modules here."""

from __future__ import annotations

import importlib

from .errors import SlimserveError

MODULES = (
    "slimserve.quant.rtn",
    "slimserve.quant.gptq",
    "slimserve.quant.awq",
    "slimserve.quant.bnb",
    "slimserve.prune.structured",
    "slimserve.prune.wanda",
    "slimserve.onnx.steps",
)

for _name in MODULES:
    try:
        importlib.import_module(_name)
    except ModuleNotFoundError as e:  # a method module being written in parallel must not break the rest
        if e.name != _name:
            raise
        raise SlimserveError(f"method module {_name} is listed in slimserve.methods but missing") from e
