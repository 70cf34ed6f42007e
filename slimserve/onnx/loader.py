"""Loaders for the artifact formats "onnx" and "onnx-static" (registered into slimserve.artifact.loaders.LOADERS).

``slimserve.load(path)`` of an "onnx" variant returns optimum's ORTModelForCausalLM, so ``model.generate`` works as
with transformers; the benchmark targets use slimserve's faster OrtRunner / StaticRunner instead.
"""

from __future__ import annotations

from pathlib import Path

from ..artifact.loaders import LOADERS
from ..artifact.manifest import Manifest
from ..errors import DependencyError
from .runtime import PROVIDERS


def load_onnx(path: Path, manifest: Manifest, device: str = "cpu"):
    """(ORTModelForCausalLM, tokenizer) of an "onnx" variant."""
    from transformers import AutoTokenizer

    try:
        from optimum.onnxruntime import ORTModelForCausalLM
    except ImportError as e:
        raise DependencyError("optimum-onnx", "loading an ONNX variant with generate()") from e
    provider = PROVIDERS.get(device.split(":")[0], "CPUExecutionProvider")
    model = ORTModelForCausalLM.from_pretrained(Path(path), file_name=manifest.model_file, provider=provider)
    return model, AutoTokenizer.from_pretrained(path)


def load_onnx_static(path: Path, manifest: Manifest, device: str = "cpu"):
    """(StaticRunner, tokenizer) of an "onnx-static" variant: runner.generate(input_ids, max_new_tokens)."""
    from transformers import AutoTokenizer

    from .static import StaticRunner

    tok = AutoTokenizer.from_pretrained(path)
    return StaticRunner(Path(path), tok, device=device), tok


for _fmt, _fn in (("onnx", load_onnx), ("onnx-static", load_onnx_static)):
    if _fmt not in LOADERS:
        LOADERS.add(_fmt, _fn)
