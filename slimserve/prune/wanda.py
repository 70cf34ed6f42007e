"""Wanda sparsity (Sun et al., 2023): zero the weights with the lowest |W_ij| * ||X_j||, unstructured
per output row or in an N:M pattern (2:4), calibrated layer by layer.

The zeros are stored in the dense weights, so the artifact stays a plain Hugging Face model (and can be
quantized afterwards). Dense CPU kernels do not skip zeros: expect no speedup without sparse kernels.

```yaml
- prune:
    method: wanda
    pattern: "2:4"          # "unstructured" (uses sparsity) or "N:M"
    sparsity: 0.5           # unstructured only; N:M implies 1 - N/M
    calibration: {samples: 32, seq_len: 512}
```
"""

from __future__ import annotations

import copy
import re
import time

from ..calibration.layerwise import CalibLayer, calibrate_layers, collect_input_stats, decoder_layers, layer_linears
from ..errors import UserError
from ..quant.base import iter_linears
from ..steps import StepContext
from .configs import WandaConfig
from .masks import nm_mask, unstructured_mask, wanda_score
from .recovery import maybe_recover, sparsity_masks


def targets(model, cfg: WandaConfig, ctx: StepContext) -> dict:
    inside = {id(m) for layer in decoder_layers(model) for m in layer.modules()}
    out = {}
    for name, mod in iter_linears(model):
        if any(re.fullmatch(p, name) for p in cfg.ignore):
            ctx.skip(name, "in ignore list (kept dense)")
        elif id(mod) not in inside:
            ctx.skip(name, "outside the decoder layers (kept dense)")
        else:
            out[name] = mod
    nm = cfg.nm
    if nm:
        bad = {n: m.in_features for n, m in out.items() if m.in_features % nm[1]}
        if bad:
            dims = sorted({m.in_features for m in out.values()})
            ok = [f"{k // 2}:{k}" for k in (4, 8, 16, 32, 64) if all(d % k == 0 for d in dims)]
            first = next(iter(bad))
            raise UserError(
                f"N:M pattern {cfg.pattern}: M={nm[1]} does not divide the input dimension {bad[first]} of {first}",
                field=f"{ctx.field}.pattern",
                allowed=ok + ["unstructured"],
            )
    return out


def apply(model, cfg: WandaConfig, ctx: StepContext):
    started = time.perf_counter()
    tg = targets(model, cfg, ctx)  # validates before anything changes
    teacher = copy.deepcopy(model) if cfg.recovery else None
    counts = {"zeros": 0, "total": 0}

    def prune_layer(layer: CalibLayer) -> None:
        mods = layer_linears(layer.module, layer.prefix, set(tg))
        stats, _ = collect_input_stats(layer.module, mods, layer.inputs)
        for name, mod in mods.items():
            score = wanda_score(mod.weight, stats[name].norm)
            keep = nm_mask(score, *cfg.nm) if cfg.nm else unstructured_mask(score, cfg.sparsity)
            mod.weight.mul_(keep.to(mod.weight.dtype))
            z = int((~keep).sum())
            counts["zeros"] += z
            counts["total"] += keep.numel()
            ctx.layers[name] = {"pattern": cfg.pattern, "sparsity": round(z / keep.numel(), 4)}

    run = calibrate_layers(model, ctx, cfg.calibration, prune_layer, description=f"Wanda {cfg.pattern} (layer)")
    zeros = counts["zeros"]
    ctx.records.update(
        {
            "pattern": cfg.pattern,
            "sparsity": round(zeros / max(counts["total"], 1), 4),
            "zeroed_weights": zeros,
            "calibration": {**ctx.records["calibration"], "tokens": run.tokens},  # keeps hash + range
        }
    )
    if cfg.recovery:
        ctx.records["recovery"] = maybe_recover(
            model, teacher, ctx.tokenizer, cfg.recovery, cfg.calibration, sparsity_masks(model)
        )
    ctx.records["seconds"] = round(time.perf_counter() - started, 1)
    ctx.artifact_format = "hf"
    return model
