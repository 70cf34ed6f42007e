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

import importlib
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from ..registry import Registry
from .runner import Runner

TARGETS: Registry[type[Target]] = Registry("target")

# Modules that register more targets; imported lazily so a missing extra never breaks `slimserve bench --target cpu`.
PLUGIN_MODULES = {
    "slimserve.onnx.targets": ("onnx-cpu", "onnx-cuda", "neuron-static"),
    "slimserve.llamacpp.targets": ("llamacpp-cpu",),
}
_plugin_errors: dict[str, str] = {}  # target name -> why its module did not import
_plugins_loaded = False

TORCH_FORMATS = ("hf", "compressed-tensors", "bitsandbytes")


class Target:
    """Base class of a benchmark target. Subclasses set name/device and override load (and usually available)."""

    name: str = ""
    device: str = "cpu"
    description: str = ""
    # What "ok" means when it is not the obvious (e.g. simulated hardware), shown by `bench --list-targets`.
    note: str = ""

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


def load_plugins() -> None:
    """Import modules that register further targets; remember why one failed so get_target can say so."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for module, names in PLUGIN_MODULES.items():
        try:
            importlib.import_module(module)
        except ImportError as exc:
            for n in names:
                _plugin_errors[n] = f"{module} could not be imported ({exc})"


def target_names() -> list[str]:
    load_plugins()
    return sorted(set(TARGETS.names()) | set(_plugin_errors))


def get_target(name: str) -> Target:
    """The target instance for a name; UserError listing valid names if unknown or not importable."""
    load_plugins()
    if name not in TARGETS and name in _plugin_errors:
        raise UserError(f"target '{name}' is not available: {_plugin_errors[name]}", field="--target")
    if name not in TARGETS:
        raise UserError(f"unknown target '{name}'", field="--target", allowed=target_names())
    return TARGETS.get(name, field="--target")()


def target_status() -> dict[str, str | None]:
    """name -> None (runs here) or the reason it does not; for `slimserve bench --list-targets`."""
    out: dict[str, str | None] = {}
    for name in target_names():
        if name in _plugin_errors and name not in TARGETS:
            out[name] = _plugin_errors[name]
        else:
            out[name] = TARGETS.get(name)().available()
    return out


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
        from ..loaders import load_variant

        model, tokenizer, _manifest = load_variant(path, device=device)
    else:  # a plain Hugging Face directory (development, comparisons against an unbuilt base)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device)
        tokenizer = AutoTokenizer.from_pretrained(path)
    model.eval()
    return model, tokenizer
