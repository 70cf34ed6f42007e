"""Write quantized Linear layers in compressed-tensors "pack-quantized" format.

Why this format: it is what llm-compressor produces and vLLM serves, and plain
``transformers.AutoModelForCausalLM.from_pretrained`` reloads it (with the compressed-tensors
package) without slimserve. int4 codes are packed eight to an int32 (two per byte); asymmetric
zero points are packed the same way.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import torch

from .base import QPARAMS_ATTR, get_qparams, iter_linears


def save_compressed(model, out_dir: Path, skipped: dict[str, str]) -> dict:
    """Pack every layer that carries QParams and save the model; returns the quantization config."""
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import (
        QuantizationArgs,
        QuantizationConfig,
        QuantizationScheme,
        QuantizationStatus,
        apply_quantization_config,
    )

    layers = {name: (mod, get_qparams(mod)) for name, mod in iter_linears(model) if get_qparams(mod) is not None}
    groups: dict[tuple, list[str]] = defaultdict(list)
    for name, (_, qp) in layers.items():
        groups[(qp.bits, qp.group_size, qp.symmetric)].append(name)
    schemes = {}
    for i, ((bits, group, sym), names) in enumerate(sorted(groups.items(), key=lambda kv: str(kv[0]))):
        args = QuantizationArgs(
            num_bits=bits,
            type="int",
            symmetric=sym,
            strategy="group" if group else "channel",
            group_size=group,
        )
        schemes[f"group_{i}"] = QuantizationScheme(targets=names, weights=args)
    qconfig = QuantizationConfig(
        config_groups=schemes,
        quantization_status=QuantizationStatus.FROZEN,
        format="pack-quantized",
        ignore=sorted(skipped),
    )
    apply_quantization_config(model, qconfig)
    with torch.no_grad():
        for mod, qp in layers.values():
            mod.weight_scale.data.copy_(qp.scale.reshape(mod.weight_scale.shape).to(mod.weight_scale.dtype))
            if qp.zero_point is not None:
                mod.weight_zero_point.data.copy_(qp.zero_point.reshape(mod.weight_zero_point.shape))
            delattr(mod, QPARAMS_ATTR)
    from ..quiet import no_compression_bars

    compressor = ModelCompressor.from_pretrained_model(model, quantization_format="pack-quantized")
    with no_compression_bars():  # the build prints its own line per step
        compressor.compress_model(model)
    model.save_pretrained(out_dir)
    compressor.update_config(str(out_dir))
    return qconfig.model_dump(mode="json")
