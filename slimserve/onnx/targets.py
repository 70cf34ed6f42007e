"""Benchmark targets for ONNX variants: onnx-cpu, onnx-cuda (ONNX Runtime) and neuron-static (static buckets)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..artifact.manifest import Manifest
from ..bench.targets import TARGETS, Target


def _ort_missing() -> str | None:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "onnxruntime is not installed (pip install onnxruntime)"
    return None


def _tokenizer(path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


# The `export: {graph: ...}` values an ONNX Runtime target has a decode loop for (OrtRunner, OptimumGraphRunner).
GRAPHS = ("fused", "optimum")


class _OrtTarget(Target):
    provider = "CPUExecutionProvider"

    def available(self) -> str | None:
        missing = _ort_missing()
        if missing:
            return missing
        import onnxruntime as ort

        if self.provider not in ort.get_available_providers():
            return f"no {self.provider.replace('ExecutionProvider', '')} execution provider in this onnxruntime build"
        return None

    def supports(self, manifest: dict[str, Any]) -> str | None:
        m = Manifest.of(manifest)
        if m.format != "onnx":
            return f"artifact format '{m.format}' is not 'onnx' (add `export: {{format: onnx}}` to the variant's steps)"
        if m.graph not in GRAPHS:
            return f"graph '{m.graph}' has no ONNX Runtime loop here (graphs: {', '.join(GRAPHS)})"
        return None

    def load(self, path: Path, manifest: dict[str, Any], threads: int | None = None):
        """The fused graph's IO-binding loop, or the optimum graph's present-to-past loop, as the manifest says."""
        from .optimum_runner import OptimumGraphRunner
        from .runtime import OrtRunner

        path = Path(path)
        m = Manifest.of(manifest)
        runner = OrtRunner if m.graph == "fused" else OptimumGraphRunner
        return runner(path / m.model_file, _tokenizer(path), device=self.device, threads=threads)


@TARGETS.register("onnx-cpu")
class OnnxCPU(_OrtTarget):
    name = "onnx-cpu"
    device = "cpu"
    description = (
        "ONNX Runtime CPU: the fused GQA graph's IO-binding loop with an in-place KV cache, or the stock optimum "
        "graph's loop (presents fed back as the next step's past)"
    )


@TARGETS.register("onnx-cuda")
class OnnxCUDA(_OrtTarget):
    name = "onnx-cuda"
    device = "cuda"
    provider = "CUDAExecutionProvider"
    description = "ONNX Runtime CUDAExecutionProvider (needs onnxruntime-gpu and a CUDA device)"
    note = (
        "provider present, but it runs no slimserve variant yet: fused graphs are float32 and ONNX Runtime's "
        "CUDA GroupQueryAttention takes float16/bfloat16 only"
    )

    def supports(self, manifest: dict[str, Any]) -> str | None:
        why = super().supports(manifest)
        if why is None and Manifest.of(manifest).graph == "optimum":
            why = "the optimum-graph loop keeps its cache on the host and has not been run on CUDA; use onnx-cpu"
        elif why is None:  # every fused graph slimserve writes today keeps float32 activations
            why = (
                "the fused graph is float32 and ONNX Runtime's CUDA GroupQueryAttention runs float16/bfloat16 only "
                "(a float16 export is not implemented yet); use onnx-cpu"
            )
        return why


@TARGETS.register("neuron-static")
class NeuronStatic(Target):
    name = "neuron-static"
    device = "cpu"
    description = "Inferentia-style static (batch, sequence) buckets with padding, emulated on ONNX Runtime CPU"
    note = "simulated: static-shape buckets on ONNX Runtime CPU; no Neuron device used"

    def available(self) -> str | None:
        return _ort_missing()

    def supports(self, manifest: dict[str, Any]) -> str | None:
        fmt = Manifest.of(manifest).format
        if fmt != "onnx-static":
            return f"artifact format '{fmt}' is not 'onnx-static' (add `export: {{format: neuron-static}}`)"
        return None

    def load(self, path: Path, manifest: dict[str, Any], threads: int | None = None):
        from .static import StaticRunner

        path = Path(path)
        return StaticRunner(path, _tokenizer(path), device="cpu", threads=threads)
