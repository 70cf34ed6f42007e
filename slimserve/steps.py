"""Step registries: every recipe step kind (quantize, prune, export) maps a method name to a
pydantic config class and an ``apply(model, cfg, ctx) -> model`` function.

``slimserve.methods`` registers every method: its config class (from a torch-free module, so validating a
recipe imports no torch) and its ``apply`` as ``"module:function"``, imported on first use. The registries import
it on their first lookup.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from .registry import Registry

log = logging.getLogger("slimserve")

STEP_KINDS = ("prune", "quantize", "export")


class StepConfig(BaseModel):
    """Base of every method config: unknown keys are errors, instances are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def summary(self) -> str:
        """Short human label, e.g. 'rtn w4 g128 asym'."""
        return getattr(self, "method", type(self).__name__)


ApplyFn = Callable[[Any, StepConfig, "StepContext"], Any]


@dataclass(frozen=True)
class StepSpec:
    kind: str
    method: str
    config: type[StepConfig]
    impl: str | ApplyFn  # the apply function, or "module:function" to import on first use

    @property
    def apply(self) -> ApplyFn:
        return resolve(self.impl) if isinstance(self.impl, str) else self.impl


def resolve(ref: str) -> Any:
    """Import ``"package.module:attribute"`` (the module is imported on the first call only)."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


# The plugin module that registers every built-in method (its METHODS table lists them).
METHOD_PLUGINS = ("slimserve.methods",)
STEPS: dict[str, Registry[StepSpec]] = {k: Registry(f"{k} method", plugins=METHOD_PLUGINS) for k in STEP_KINDS}
# The config field that names the method inside each step kind: `quantize: {method: rtn}`, `export: {format: onnx}`.
DISCRIMINATOR = {"prune": "method", "quantize": "method", "export": "format"}


def register_step(kind: str, method: str, config: type[StepConfig], apply: str | ApplyFn | None = None):
    """``register_step("quantize", "rtn", RTNConfig, "slimserve.quant.rtn:apply")``.

    Without ``apply`` it is a decorator on ``apply(model, cfg, ctx)`` (that module is then imported eagerly).
    """
    if apply is not None:
        STEPS[kind].add(method, StepSpec(kind, method, config, apply))
        return None

    def deco(fn):
        STEPS[kind].add(method, StepSpec(kind, method, config, fn))
        return fn

    return deco


@dataclass
class StepContext:
    """What a step may use besides the model, and where it reports what it did."""

    base_dir: Path  # the converted base model (HF directory, safetensors)
    work_dir: Path  # the temporary variant directory being written
    tokenizer: Any
    field: str  # recipe field path of this step, for error messages
    recipe_file: str | None = None
    artifact_format: str = "hf"  # hf | compressed-tensors | bitsandbytes | onnx | onnx-static | gguf
    base_gguf: Path | None = None  # the GGUF the base was converted from (the gguf export copies its tokenizer)
    # Filled by steps for the manifest: skipped layers {name: reason}, per-layer settings, notes.
    skipped: dict[str, str] = field(default_factory=dict)
    layers: dict[str, dict] = field(default_factory=dict)
    records: dict[str, Any] = field(default_factory=dict)

    def note(self, message: str, layer: str) -> None:
        """A per-layer deviation from the recipe settings, grouped by message in the manifest."""
        self.records.setdefault("notes", {}).setdefault(message, []).append(layer)

    def skip(self, name: str, reason: str) -> None:
        self.skipped[name] = reason
        log.info("skip %s: %s", name, reason)
