"""The `llamacpp-cpu` bench target: GGUF variants (`export: {format: gguf}`) on llama.cpp's CPU backend, through
llama-cpp-python. Same scenarios, quality windows and pricing as every other target (see runtime.py)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from ..bench.targets import TARGETS, Target

INSTALL = (
    "pip install llama-cpp-python (it compiles llama.cpp; on a CPU whose AMX faults, as in some VMs, build with "
    "CMAKE_ARGS=\"-DCMAKE_C_FLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16' -DCMAKE_CXX_FLAGS='...same...'\", see README)"
)


def gguf_file(path: Path, manifest: dict[str, Any]) -> Path:
    """The GGUF file of a variant, named by its export step's records."""
    for step in reversed(manifest.get("steps") or []):
        if step.get("kind") == "export":
            return Path(path) / step.get("records", {}).get("model_file", "model.gguf")
    return Path(path) / "model.gguf"


@TARGETS.register("llamacpp-cpu")
class LlamaCppCPU(Target):
    name = "llamacpp-cpu"
    device = "cpu"
    description = "llama.cpp CPU backend (llama-cpp-python's C API): GGUF variants, batched decode"

    def available(self) -> str | None:
        if importlib.util.find_spec("llama_cpp") is None:
            return f"llama-cpp-python is not installed ({INSTALL})"
        try:
            from .runtime import load_llama_cpp

            load_llama_cpp()
        except (OSError, RuntimeError, AttributeError) as exc:  # the shared library did not load
            where = os.environ.get("LLAMA_CPP_LIB_PATH")
            hint = f"LLAMA_CPP_LIB_PATH={where}" if where else (
                "installed without its own library (bench/llamacpp_shared.sh)? export LLAMA_CPP_LIB_PATH=DIR/build/bin")  # fmt: skip
            return f"llama-cpp-python does not load here: {exc} ({hint})"
        return None

    def supports(self, manifest: dict[str, Any]) -> str | None:
        fmt = manifest.get("format")
        if fmt != "gguf":
            return f"artifact format '{fmt}' is not 'gguf' (add `export: {{format: gguf, type: Q4_0}}`)"
        return None

    def load(self, path: Path, manifest: dict[str, Any], threads: int | None = None):
        from transformers import AutoTokenizer

        from .runtime import LlamaCppRunner

        path = Path(path)
        return LlamaCppRunner(gguf_file(path, manifest), AutoTokenizer.from_pretrained(path), threads=threads)
