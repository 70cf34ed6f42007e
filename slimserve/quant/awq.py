"""AWQ weight-only quantization, calibrated layer by layer; same artifact as RTN.

Per decoder layer: search activation-aware input scales for (input_layernorm -> q,k,v),
(v_proj -> o_proj, only without grouped-query attention), (post_attention_layernorm -> gate,up) and
(up_proj -> down_proj); fold them exactly into the producer; search per-group weight clipping
(not for q/k, whose errors the attention softmax amplifies); then round onto the grid.

```yaml
- quantize:
    method: awq
    bits: 4
    group_size: 128
    symmetric: false
    grid: 20                 # alpha candidates for the scale search
    clip: true               # per-group clip search
    search_tokens: 2048      # tokens of calibration input used by the searches
    calibration: {samples: 128, seq_len: 512}
```
"""

from __future__ import annotations

import time

import torch
from torch import nn

from ..calibration.layerwise import CalibLayer, calibrate_layers, collect_input_stats
from ..steps import StepContext
from .awq_math import fold_scales_into_linear, fold_scales_into_norm, search_clip, search_scale
from .base import attach_qparams, set_weight
from .configs import AWQConfig
from .gptq import resolve_in_layers
from .math import compute_qparams, fake_quantize, sqnr_db


def scale_groups(layer: nn.Module) -> list[dict]:
    """The (producer, consumers, probe) triples of one Llama-style decoder layer.

    `probe` is the module whose input the consumers share; `norm` or `prev` is where 1/s folds."""
    attn, mlp = layer.self_attn, layer.mlp
    groups = [
        {
            "name": "qkv",
            "norm": layer.input_layernorm,
            "consumers": ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
        },
        {"name": "gate_up", "norm": layer.post_attention_layernorm, "consumers": ["mlp.gate_proj", "mlp.up_proj"]},
        {"name": "down", "prev": mlp.up_proj, "consumers": ["mlp.down_proj"]},
    ]
    if attn.v_proj.out_features == attn.o_proj.in_features:
        groups.insert(1, {"name": "o", "prev": attn.v_proj, "consumers": ["self_attn.o_proj"]})
    return groups


# Clipping q/k changes attention scores, which the softmax amplifies (AWQ skips them too).
NO_CLIP = ("q_proj", "k_proj")


def _awq_layer(layer: CalibLayer, targets: dict, cfg: AWQConfig, ctx: StepContext, alphas: dict) -> None:
    """Scale search and fold, clip search and rounding of one decoder layer."""
    prefix = layer.prefix
    mods = dict(layer.module.named_modules())
    groups = [g for g in scale_groups(layer.module) if any(f"{prefix}.{c}" in targets for c in g["consumers"])]
    probes = {g["name"]: mods[g["consumers"][0]] for g in groups}
    # Targets no scale group covers (o_proj under grouped-query attention) still get the clip search.
    covered = {c for g in scale_groups(layer.module) for c in g["consumers"]}
    loose = [n for n, m in mods.items() if isinstance(m, nn.Linear) and f"{prefix}.{n}" in targets and n not in covered]
    probes.update({n: mods[n] for n in loose})
    max_samples = max(cfg.search_tokens, cfg.clip_tokens)
    stats, _ = collect_input_stats(layer.module, probes, layer.inputs, max_samples=max_samples)
    input_scale: dict[str, torch.Tensor] = {}
    for g in groups:
        st = stats[g["name"]]
        lin = [mods[c] for c in g["consumers"]]
        specs = [targets[f"{prefix}.{c}"][1:] if f"{prefix}.{c}" in targets else None for c in g["consumers"]]
        x = st.sample[: cfg.search_tokens]
        res = search_scale([m.weight for m in lin], specs, x, st.mean_abs, cfg.grid)
        if "norm" in g:
            fold_scales_into_norm(g["norm"].weight.data, [m.weight.data for m in lin], res.scales)
        else:
            fold_scales_into_linear(g["prev"].weight.data, g["prev"].bias, [m.weight.data for m in lin], res.scales)
        alphas[f"{prefix}.{g['name']}"] = res.alpha
        for c in g["consumers"]:
            input_scale[c] = res.scales
    for g in groups + [{"name": n, "consumers": [n]} for n in loose]:
        x_clip = stats[g["name"]].sample[: cfg.clip_tokens]
        for c in g["consumers"]:
            name = f"{prefix}.{c}"
            if name not in targets:
                continue
            mod, bits, group, sym = targets[name]
            w = mod.weight.data
            if cfg.clip and not c.endswith(NO_CLIP):
                x_c = x_clip / input_scale[c] if c in input_scale else x_clip
                qp = search_clip(w, x_c, bits, group, sym, cfg.grid, cfg.max_shrink)
            else:
                qp = compute_qparams(w, bits, group, sym)
            wq = fake_quantize(w, qp)
            sqnr = round(sqnr_db(w, wq), 2)
            set_weight(mod, wq)
            attach_qparams(mod, qp)
            ctx.layers[name] = {"bits": bits, "group_size": group, "symmetric": sym, "sqnr_db": sqnr}


@torch.no_grad()
def apply(model, cfg: AWQConfig, ctx: StepContext):
    started = time.perf_counter()
    targets = resolve_in_layers(model, cfg, ctx)
    if cfg.mixed is not None:  # measured on the float model, before scales are folded or layers rounded
        from .mixed import plan_step

        targets = plan_step(model, cfg, ctx, targets)
    alphas: dict[str, float] = {}
    calibrate_layers(
        model,
        ctx,
        cfg.calibration,
        lambda layer: _awq_layer(layer, targets, cfg, ctx, alphas),
        description=f"AWQ int{cfg.bits} (layer)",
    )
    ctx.records["alpha"] = {"mean": round(sum(alphas.values()) / max(len(alphas), 1), 3), "per_group": alphas}
    ctx.records["seconds"] = round(time.perf_counter() - started, 1)
    ctx.artifact_format = "compressed-tensors"
    return model
