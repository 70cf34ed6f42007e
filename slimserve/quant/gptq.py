"""GPTQ weight-only quantization, calibrated layer by layer; same artifact as RTN.

```yaml
- quantize:
    method: gptq
    bits: 4
    group_size: 128          # 32 | 64 | 128 | null (per output channel)
    symmetric: false
    act_order: true          # quantize columns by decreasing Hessian diagonal (static groups)
    damp: 0.01               # fraction of the mean Hessian diagonal added for stability
    calibration: {samples: 128, seq_len: 512}   # text: null -> Pride and Prejudice
```
"""

from __future__ import annotations

import time

import torch
from rich.progress import track

from ..steps import StepContext
from .base import attach_qparams, set_weight
from .calib import (
    capture_layer_inputs,
    collect_input_stats,
    decoder_layers,
    layer_linears,
    layer_prefix,
    load_calibration,
    run_layer,
)
from .configs import GPTQConfig, WeightQuantConfig
from .gptq_math import gptq_quantize
from .math import sqnr_db
from .rtn import resolve_layers


def resolve_in_layers(model, cfg: WeightQuantConfig, ctx: StepContext) -> dict[str, tuple]:
    """Targets of a calibrated quantizer: name -> (module, bits, group, sym). Linears outside the
    decoder layers are reported and skipped (the calibration runs decoder layers only)."""
    layers = decoder_layers(model)
    inside = {id(m) for layer in layers for m in layer.modules()}
    targets = {}
    for name, mod, bits, group, sym in resolve_layers(model, cfg, ctx):
        if id(mod) not in inside:
            ctx.skip(name, "outside the decoder layers; calibrated quantizers cover decoder layers only (use rtn)")
            continue
        targets[name] = (mod, bits, group, sym)
    return targets


@torch.no_grad()
def apply(model, cfg: GPTQConfig, ctx: StepContext):
    started = time.perf_counter()
    targets = resolve_in_layers(model, cfg, ctx)
    ids = load_calibration(ctx.tokenizer, cfg.calibration, ctx.field)
    inputs = capture_layer_inputs(model, ids, cfg.calibration.batch_size)
    layers = decoder_layers(model)
    for i in track(range(len(layers)), description=f"GPTQ int{cfg.bits} (layer)", transient=True):
        layer, prefix = layers[i], layer_prefix(model, i)
        mods = layer_linears(layer, prefix, set(targets))
        stats, _ = collect_input_stats(layer, mods, inputs, hessian=True)
        for name, mod in mods.items():
            _, bits, group, sym = targets[name]
            w = mod.weight.data
            wq, qp = gptq_quantize(w, stats[name].hessian, bits, group, sym, cfg.act_order, cfg.damp, cfg.block_size)
            sqnr = round(sqnr_db(w, wq), 2)
            set_weight(mod, wq)
            attach_qparams(mod, qp)
            ctx.layers[name] = {"bits": bits, "group_size": group, "symmetric": sym, "sqnr_db": sqnr}
        del stats
        # The next layer calibrates on the outputs of this layer as quantized (GPTQ's sequential mode).
        inputs = run_layer(layer, inputs)
    ctx.records["calibration"] = {**cfg.calibration.model_dump(), "tokens": int(ids.numel())}
    ctx.records["seconds"] = round(time.perf_counter() - started, 1)
    ctx.artifact_format = "compressed-tensors"
    return model
