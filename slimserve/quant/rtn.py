"""Round-to-nearest weight-only quantization: int8 per output channel, int4 group-wise.

```yaml
- quantize:
    method: rtn
    bits: 4
    group_size: 128      # 32 | 64 | 128 | null (per output channel)
    symmetric: false
    search: true         # searched scale/zero per group (least weighted error) instead of min/max
    mixed: {budget_bpw: 4.8}   # keep the most sensitive units at 8 bits (slimserve/quant/mixed.py)
    overrides:
      "model\\.layers\\.0\\..*": {group_size: 32}
      ".*down_proj": skip
```
"""

from __future__ import annotations

import re

import torch
from rich.progress import track

from ..steps import StepContext
from .base import attach_qparams, iter_linears, match_override, set_weight
from .configs import LayerOverride, RTNConfig, WeightQuantConfig
from .math import compute_qparams, fake_quantize
from .search import search_qparams


def resolve_layers(model, cfg: WeightQuantConfig, ctx: StepContext):
    """Yield (name, linear, bits, group_size, symmetric) for every layer the step quantizes.

    Every layer left out is reported through ctx.skip with the reason.
    """
    for name, mod in iter_linears(model):
        if any(re.fullmatch(p, name) for p in cfg.ignore):
            ctx.skip(name, "in ignore list" + (" (tied to embeddings)" if _is_tied(model, mod) else ""))
            continue
        ov = match_override(name, cfg.overrides)
        if ov == "skip":
            ctx.skip(name, "override: skip")
            continue
        if _is_tied(model, mod):  # rounding a shared table would round the embedding too
            untie_output_embeddings(model)
            ctx.note("untied from the embedding table so it is quantized on its own", name)
        bits, group, sym = cfg.bits, cfg.group_size, cfg.symmetric
        if isinstance(ov, LayerOverride):
            bits = ov.bits or bits
            group = ov.group_size if "group_size" in ov.model_fields_set else group
            sym = ov.symmetric if ov.symmetric is not None else sym
        if group and mod.in_features % group:
            why = f"in_features {mod.in_features} not divisible by group size {group}"
            if cfg.on_indivisible == "skip":
                ctx.skip(name, why)
                continue
            smaller = [g for g in (64, 32) if g < group and mod.in_features % g == 0]
            group = smaller[0] if smaller and cfg.on_indivisible == "smaller-group" else None
            ctx.note(f"{why}: used {f'group {group}' if group else 'per-channel'}", name)
        yield name, mod, bits, group, sym


def _is_tied(model, mod) -> bool:
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    return emb is not None and emb.weight is mod.weight


def untie_output_embeddings(model) -> None:
    """Give the lm_head its own copy of a tied embedding table (the saved config says so too)."""
    head = model.get_output_embeddings()
    head.weight = torch.nn.Parameter(head.weight.detach().clone(), requires_grad=False)
    model.config.tie_word_embeddings = False
    if getattr(model.config, "text_config", None) is not None:
        model.config.text_config.tie_word_embeddings = False


@torch.no_grad()
def apply(model, cfg: RTNConfig, ctx: StepContext):
    targets = {name: (mod, bits, group, sym) for name, mod, bits, group, sym in resolve_layers(model, cfg, ctx)}
    if cfg.mixed is not None:
        from .mixed import plan_step

        targets = plan_step(model, cfg, ctx, targets)
    grid = search_qparams if cfg.search else compute_qparams
    for name, (mod, bits, group, sym) in track(list(targets.items()), description=f"RTN int{cfg.bits}", transient=True):
        qp = grid(mod.weight, bits, group, sym)
        set_weight(mod, fake_quantize(mod.weight, qp))
        attach_qparams(mod, qp)
        ctx.layers[name] = {"bits": bits, "group_size": group, "symmetric": sym, "grid": _grid_name(cfg)}
    ctx.artifact_format = "compressed-tensors"
    return model


def _grid_name(cfg: WeightQuantConfig) -> str:
    return "searched (least weighted squared error)" if cfg.search else "min/max"
