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

from ..calibration.layerwise import (
    CalibLayer,
    InputStats,
    calibrate_layers,
    collect_input_stats,
    decoder_layers,
    layer_linears,
)
from ..steps import StepContext
from .base import attach_qparams, set_weight
from .configs import GPTQConfig, WeightQuantConfig
from .gptq_math import gptq_quantize
from .math import sqnr_db
from .rtn import resolve_layers


def resolve_in_layers(model, cfg: WeightQuantConfig, ctx: StepContext, *, head: bool = False) -> dict[str, tuple]:
    """Targets of a calibrated quantizer: name -> (module, bits, group, sym). Linears outside the decoder layers
    are reported and skipped (the calibration runs decoder layers), except the lm_head when `head` (GPTQ
    calibrates it on the final normed hidden states)."""
    layers = decoder_layers(model)
    inside = {id(m) for layer in layers for m in layer.modules()}
    inside.add(id(model.get_output_embeddings()) if head else None)
    targets = {}
    for name, mod, bits, group, sym in resolve_layers(model, cfg, ctx):
        if id(mod) not in inside:
            what = "decoder layers and the lm_head" if head else "decoder layers"
            ctx.skip(name, f"outside the decoder layers; this calibrated quantizer covers {what} only (use rtn)")
            continue
        targets[name] = (mod, bits, group, sym)
    return targets


def _gptq_one(name: str, mod, spec: tuple, hessian, cfg: GPTQConfig, ctx: StepContext) -> None:
    _, bits, group, sym = spec
    w = mod.weight.data
    wq, qp = gptq_quantize(w, hessian, bits, group, sym, cfg.act_order, cfg.damp, cfg.block_size, cfg.search)
    sqnr = round(sqnr_db(w, wq), 2)
    set_weight(mod, wq)
    attach_qparams(mod, qp)
    ctx.layers[name] = {"bits": bits, "group_size": group, "symmetric": sym, "sqnr_db": sqnr,
                        "grid": "searched (Hessian-weighted)" if cfg.search else "min/max"}  # fmt: skip


def _quantize_head(model, name: str, spec: tuple, inputs, cfg: GPTQConfig, ctx: StepContext) -> None:
    """GPTQ of the lm_head on the final normed hidden states of the (quantized) decoder."""
    stats = InputStats()
    norm = model.model.norm
    for h in inputs.hidden:
        stats.add(norm(h), hessian=True)
    _gptq_one(name, spec[0], spec, stats.hessian, cfg, ctx)


@torch.no_grad()
def apply(model, cfg: GPTQConfig, ctx: StepContext):
    started = time.perf_counter()
    targets = resolve_in_layers(model, cfg, ctx, head=True)
    if cfg.mixed is not None:  # measured on the float model, before any layer is rounded
        from .mixed import plan_step

        targets = plan_step(model, cfg, ctx, targets)

    def quantize_layer(layer: CalibLayer) -> None:
        mods = layer_linears(layer.module, layer.prefix, set(targets))
        stats, _ = collect_input_stats(layer.module, mods, layer.inputs, hessian=True)
        for name, mod in mods.items():
            _gptq_one(name, mod, targets[name], stats[name].hessian, cfg, ctx)
        # None: the next layer calibrates on the outputs of this layer as quantized (GPTQ's sequential mode).

    run = calibrate_layers(model, ctx, cfg.calibration, quantize_layer, description=f"GPTQ int{cfg.bits} (layer)")
    head_name = next((n for n in targets if targets[n][0] is model.get_output_embeddings()), None)
    if head_name is not None:
        _quantize_head(model, head_name, targets[head_name], run.outputs, cfg, ctx)
    ctx.records["seconds"] = round(time.perf_counter() - started, 1)
    ctx.artifact_format = "compressed-tensors"
    return model
