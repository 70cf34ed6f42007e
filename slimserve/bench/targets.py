"""Benchmark targets: where a variant runs (PyTorch CPU/CUDA here; ONNX Runtime and Neuron register themselves).

A target answers three questions before anything is timed: can it run on this machine (available), can it run this
artifact (supports), and how to load it (load -> Runner). Unavailable targets say why instead of pretending.

Other backends add targets with the same base class, e.g. in slimserve/onnx/targets.py:

    from slimserve.bench.targets import TARGETS, Target

    @TARGETS.register("onnx-cpu")
    class OnnxCpu(Target): ...

Register the class (the registry instantiates nothing); get_target() returns an instance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..registry import Registry
from .runner import Runner

# Modules that register more targets (module:the names it registers); imported on the first lookup, so a missing
# extra never breaks `slimserve bench --target cpu`.
PLUGIN_MODULES = (
    "slimserve.onnx.targets:onnx-cpu,onnx-cuda,neuron-static",
    "slimserve.llamacpp.targets:llamacpp-cpu",
)
TARGETS: Registry[type[Target]] = Registry("target", plugins=PLUGIN_MODULES)

TORCH_FORMATS = ("hf", "compressed-tensors", "bitsandbytes")


class Target:
    """Base class of a benchmark target. Subclasses set name/device and override load (and usually available)."""

    name: str = ""
    device: str = "cpu"
    description: str = ""
    # What "ok" means when it is not the obvious (e.g. simulated hardware), shown by `bench --list-targets`.
    note: str = ""
    # Ray resources a bench task of this target needs beyond its CPUs (None: by device, see ray_resources).
    resources: dict[str, float] | None = None

    def ray_resources(self) -> dict[str, float]:
        """What a Ray task running this target asks for: a GPU and the `cuda` label for CUDA targets (GPU nodes
        advertise it: `ray start --num-gpus=1 --resources='{"cuda": 1}'`), nothing extra on CPU; a target for other
        hardware sets `resources` (e.g. {"neuron": 1})."""
        if self.resources is not None:
            return dict(self.resources)
        return {"GPU": 1, "cuda": 1} if self.device.startswith("cuda") else {}

    def available(self) -> str | None:
        """None when this machine can run the target, else the reason it cannot."""
        return None

    def supports(self, manifest: dict[str, Any]) -> str | None:
        """None when the target can run this variant's artifact, else the reason it cannot."""
        return None

    def load(self, path: Path, manifest: dict[str, Any], threads: int | None = None) -> Runner:
        raise NotImplementedError

    def default_hardware_key(self) -> str:
        """Price-table key used when the user gives no --hardware/--price-per-hour."""
        return "local-gpu" if self.device.startswith("cuda") else "local-cpu"


def target_names() -> list[str]:
    """Every target, those whose module did not import included (target_status says why)."""
    return sorted(set(TARGETS.names()) | set(TARGETS.unavailable()))


def get_target(name: str) -> Target:
    """The target instance for a name; UserError listing valid names if unknown or not importable."""
    return TARGETS.get(name, field="--target")()


def target_status() -> dict[str, str | None]:
    """name -> None (runs here) or the reason it does not; for `slimserve bench --list-targets`."""
    missing = TARGETS.unavailable()
    return {name: missing[name] if name in missing else TARGETS.get(name)().available() for name in target_names()}


def status_text(name: str, why: str | None) -> str:
    """One `--list-targets` entry: 'ok', 'ok (note)', or 'unavailable: reason'."""
    if why is not None:
        return f"unavailable: {why.removeprefix(f'{name}: ')}"
    note = TARGETS.get(name).note if name in TARGETS else ""
    return f"ok ({note})" if note else "ok"


class _TorchTarget(Target):
    # Decode loop TorchRunner times. Interleaved on SmolLM2-135M (CPU, 1 thread): dynamic-kv 152 ms/token,
    # generate() 171, static-kv 183 (eager StaticCache attends over the whole pre-allocated length); see bench/results.
    loop: str = "dynamic-kv"

    def supports(self, manifest: dict[str, Any]) -> str | None:
        fmt = manifest.get("format", "hf")
        if fmt not in TORCH_FORMATS:
            return (
                f"artifact format '{fmt}' is not a PyTorch checkpoint (PyTorch targets run {', '.join(TORCH_FORMATS)})"
            )
        return None

    def load(self, path: Path, manifest: dict[str, Any], threads: int | None = None) -> Runner:
        from .torch_runner import TorchRunner

        if threads:
            torch.set_num_threads(int(threads))
        model, tokenizer = load_torch_model(Path(path), self.device)
        runner = TorchRunner(model, tokenizer, device=self.device, loop=self.loop)
        # One token through the model, so load time covers lazy work (compressed-tensors decompresses its packed
        # weights on the first forward) and means "ready to serve".
        runner.logits(torch.tensor([[0]]))
        return runner


@TARGETS.register("cpu")
class TorchCPU(_TorchTarget):
    name = "cpu"
    device = "cpu"
    description = "PyTorch eager on CPU, lean decode loop (model.forward per token, growing KV cache)"


@TARGETS.register("cuda")
class TorchCUDA(_TorchTarget):
    name = "cuda"
    device = "cuda"
    description = "PyTorch eager on one CUDA GPU, lean decode loop (model.forward per token, growing KV cache)"

    def available(self) -> str | None:
        if not torch.cuda.is_available():
            build = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA device"
            return f"cuda: {build}"
        return None


def load_torch_model(path: Path, device: str) -> tuple[Any, Any]:
    """(model, tokenizer) in eval mode on device: the manifest-driven loader for a variant, plain HF otherwise."""
    path = Path(path)
    if (path / "manifest.json").is_file():
        from ..artifact.loaders import load_variant

        # bench() verified the hashes before measuring (or was told not to); the file and trust checks still run
        model, tokenizer, _manifest = load_variant(path, device=device, verify=False)
    else:  # a plain Hugging Face directory (development, comparisons against an unbuilt base)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device)
        tokenizer = AutoTokenizer.from_pretrained(path)
    model.eval()
    return model, tokenizer
