"""Artifact writers, one per format a step sequence can leave behind."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..registry import Registry
from ..steps import StepContext

# fn(model, out_dir, ctx) -> extra manifest fields (e.g. the quantization config)
WRITERS: Registry[Callable[[object, Path, StepContext], dict]] = Registry("artifact format")


@WRITERS.register("hf")
def write_hf(model, out: Path, ctx: StepContext) -> dict:
    model.save_pretrained(out, safe_serialization=True)
    return {}


@WRITERS.register("bitsandbytes")
def write_bnb(model, out: Path, ctx: StepContext) -> dict:
    model.save_pretrained(out, safe_serialization=True)
    qc = getattr(model.config, "quantization_config", None)
    return {"quantization_config": qc.to_dict() if hasattr(qc, "to_dict") else qc}


@WRITERS.register("compressed-tensors")
def write_ct(model, out: Path, ctx: StepContext) -> dict:
    from ..quant.ct_writer import save_compressed

    return {"quantization_config": save_compressed(model, out, ctx.skipped)}


def _written_by_step(model, out: Path, ctx: StepContext) -> dict:
    """Export steps write their own files into ctx.work_dir; check that they did."""
    if not any(out.glob("*.onnx")) and not any(out.rglob("*.onnx")):
        raise RuntimeError(f"export step left no .onnx file in {out}")
    return {}


WRITERS.add("onnx", _written_by_step)
WRITERS.add("onnx-static", _written_by_step)


@WRITERS.register("gguf")
def _gguf_written(model, out: Path, ctx: StepContext) -> dict:
    """The gguf export step wrote model.gguf (and config.json); the tokenizer files follow from the build."""
    if not any(out.glob("*.gguf")):
        raise RuntimeError(f"export step left no .gguf file in {out}")
    return {}
