"""Load a built variant. The manifest says what it is; the directory name never does."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import DependencyError
from ..registry import Registry
from .manifest import MANIFEST, Manifest

# Modules that register more loaders when they import (ONNX needs the onnx extras).
LOADER_PLUGINS = ("slimserve.onnx.loader:onnx,onnx-static",)
# fn(path, manifest, device) -> (model, tokenizer)
LOADERS: Registry[Callable[[Path, Manifest, str], tuple]] = Registry("artifact format", plugins=LOADER_PLUGINS)


def read_manifest(path: str | Path) -> dict:
    """The manifest of the variant at `path` as JSON (checked: version and fields)."""
    return Manifest.read(path).to_dict()


def _hf(path: Path, manifest: Manifest, device: str, trust_remote_code: bool = False, **kwargs):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # Trust comes from the caller only (never manifest.base); safetensors only, so no pickle is ever read.
    trc = trust_remote_code
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.float32, trust_remote_code=trc, use_safetensors=True, **kwargs
    )
    return model.to(device).eval(), AutoTokenizer.from_pretrained(path, trust_remote_code=trc)


def _ct(path: Path, manifest: Manifest, device: str, trust_remote_code: bool = False):
    from ..data import package_dir

    if package_dir("compressed_tensors") is None:
        raise DependencyError("compressed-tensors", "loading a compressed-tensors variant")
    from transformers import AutoConfig

    from ..quiet import no_compression_bars

    # Unpack to dense weights at load: PyTorch CPU has no int4 kernel faster than fp32 here. run_compressed goes into
    # the config's own quantization_config: passing a second CompressedTensorsConfig makes transformers warn.
    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    config.quantization_config = {**config.quantization_config, "run_compressed": False}
    with no_compression_bars():
        model, tok = _hf(path, manifest, device, trust_remote_code, config=config)
    return drop_qdq_wrappers(model), tok


def drop_qdq_wrappers(model):
    """Give decompressed Linear layers back their plain forward.

    compressed-tensors wraps every quantized layer's forward for on-the-fly quantize-dequantize. Once weights are
    decompressed the wrapper computes nothing (weights are not re-quantized, activations are not quantized in a
    weight-only scheme) but costs ~35 us per call here, about 7 ms per SmolLM2 token over 210 layers.
    """
    for module in model.modules():
        scheme = getattr(module, "quantization_scheme", None)
        status = getattr(module, "quantization_status", None)
        if scheme is None or "forward" not in vars(module) or getattr(status, "value", status) != "decompressed":
            continue
        if scheme.input_activations is None and scheme.output_activations is None:
            del module.forward
    return model


def _bnb(path: Path, manifest: Manifest, device: str, trust_remote_code: bool = False):
    from ..data import package_dir

    if package_dir("bitsandbytes") is None:
        raise DependencyError("bitsandbytes", "loading a bitsandbytes variant")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.float32, device_map=device, use_safetensors=True, trust_remote_code=trust_remote_code
    )
    return model.eval(), AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)


LOADERS.add("hf", _hf)
LOADERS.add("compressed-tensors", _ct)
LOADERS.add("bitsandbytes", _bnb)


def load_variant(
    path: str | Path, device: str = "cpu", *, verify: bool = True, trust_remote_code: bool = False
) -> tuple:
    """(model, tokenizer, manifest) of the variant at `path`, after `verify_variant`'s checks: only listed files in
    safe formats, sizes and sha256 as the manifest says (`verify=False` skips the hashes), no remote code unless
    `trust_remote_code=True` is passed here (the manifest's own flag is never taken)."""
    from .verify import verify_variant

    p = Path(path)
    manifest = verify_variant(p, verify=verify, trust_remote_code=trust_remote_code)
    fn = LOADERS.get(manifest.format, field="manifest.format", file=str(p / MANIFEST))
    extra = {"trust_remote_code": True} if trust_remote_code else {}  # only the PyTorch loaders take it
    model, tok = fn(p, manifest, device, **extra)
    return model, tok, manifest.to_dict()


def load(path: str | Path, device: str = "cpu", *, verify: bool = True, trust_remote_code: bool = False) -> tuple:
    """(model, tokenizer) of a built variant, ready for `model.generate`."""
    model, tok, _ = load_variant(path, device, verify=verify, trust_remote_code=trust_remote_code)
    return model, tok
