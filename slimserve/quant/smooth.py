"""SmoothQuant: per decoder layer, scale each input channel of a projection group by
s_j = max|x_j|^alpha / max|W_:,j|^(1 - alpha) and fold 1/s into the producer (the norm, or up_proj for down_proj),
so activations lose their outlier channels and int8 activation quantization (ONNX Runtime's fast MatMulNBits path)
loses less. The float model computes the same function; the manifest records the scales' spread per group.
The scaled groups are AWQ's (slimserve.quant.awq.scale_groups): o_proj is left alone under grouped-query attention.
"""

from __future__ import annotations

import time

import torch

from ..calibration.layerwise import CalibLayer, calibrate_layers, collect_input_stats
from ..steps import StepContext
from .awq import scale_groups
from .awq_math import fold_scales_into_linear, fold_scales_into_norm
from .configs import SmoothQuantConfig


def smooth_scales(x_absmax: torch.Tensor, weights: list[torch.Tensor], alpha: float) -> torch.Tensor:
    """Per input channel s = max|x|^alpha / max|W|^(1-alpha) over the weights that share the input (pure)."""
    w_absmax = torch.stack([w.detach().abs().amax(0).float() for w in weights]).amax(0)
    s = x_absmax.float().clamp(min=1e-5).pow(alpha) / w_absmax.clamp(min=1e-5).pow(1 - alpha)
    return s.clamp(min=1e-2)


def _smooth_layer(layer: CalibLayer, cfg: SmoothQuantConfig, spread: dict):
    mods = dict(layer.module.named_modules())
    groups = scale_groups(layer.module)
    probes = {g["name"]: mods[g["consumers"][0]] for g in groups}
    stats, outputs = collect_input_stats(layer.module, probes, layer.inputs)
    for g in groups:
        lin = [mods[c].weight.data for c in g["consumers"]]
        s = smooth_scales(stats[g["name"]].abs_max, lin, cfg.alpha)
        if "norm" in g:
            fold_scales_into_norm(g["norm"].weight.data, lin, s)
        else:
            fold_scales_into_linear(g["prev"].weight.data, g["prev"].bias, lin, s)
        spread[f"{layer.prefix}.{g['name']}"] = round(float(s.max() / s.min()), 2)
    return outputs  # smoothing keeps the layer's float function, so these outputs feed the next layer as they are


@torch.no_grad()
def apply(model, cfg: SmoothQuantConfig, ctx: StepContext):
    started = time.perf_counter()
    spread = {}
    calibrate_layers(
        model,
        ctx,
        cfg.calibration,
        lambda layer: _smooth_layer(layer, cfg, spread),
        description=f"SmoothQuant alpha {cfg.alpha:g} (layer)",
    )
    ctx.records["smoothed"] = {"groups": len(spread), "scale_max_over_min": spread}
    ctx.records["seconds"] = round(time.perf_counter() - started, 1)
    return model
