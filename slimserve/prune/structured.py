"""Structured width pruning of Llama-style models with torch-pruning's channel pruners.

Per decoder layer it removes the least important MLP intermediate channels (gate/up rows and
down_proj columns) and, optionally, whole key/value groups together with the query heads that read
them, so grouped-query attention keeps its grouping. Importance is activation-aware: the expected
squared contribution of a channel to its consumer's output on calibration text. With `compensate`,
the consumer (down_proj, o_proj) is refit by least squares so the kept channels absorb what the
removed ones did. Every layer loses the same number of channels, so the result is a plain
LlamaConfig (intermediate_size, num_attention_heads, num_key_value_heads) that reloads with transformers.

torch-pruning's dependency graph is not used for attention: it does not group GQA heads, and on
transformers 4.57 building the query-head group does not terminate. The coupling here is explicit.

```yaml
- prune:
    method: structured
    mlp_ratio: 0.3          # fraction of MLP intermediate channels removed in every layer
    round_to: 128           # kept width multiple (1536 * 0.7 -> 1024), so int4 group 128 still divides it
    attention_ratio: 0.0    # fraction of key/value groups removed (with their query heads); multiple of 1/num_kv_heads
    compensate: true
    calibration: {samples: 32, seq_len: 512}
    recovery: {steps: 50}   # optional distillation from the unpruned model
```
"""

from __future__ import annotations

import copy
import time

import torch

from ..calibration.layerwise import CalibLayer, calibrate_layers, collect_input_stats
from ..errors import DependencyError, UserError
from ..steps import StepContext
from .configs import StructuredConfig
from .masks import channel_importance, least_squares_refit
from .recovery import maybe_recover


def allowed_attention_ratios(n_kv: int) -> list[float]:
    """Ratios that remove whole key/value groups and leave at least one."""
    return [round(k / n_kv, 4) for k in range(n_kv)]


def plan(config, cfg: StructuredConfig, field: str) -> tuple[int, int]:
    """(kept intermediate size, key/value groups removed per layer), or UserError with allowed values."""
    inter, n_kv = config.intermediate_size, config.num_key_value_heads
    keep = inter - int(round(inter * cfg.mlp_ratio))
    keep = max(cfg.round_to, int(round(keep / cfg.round_to)) * cfg.round_to)
    if keep > inter:
        keep = inter
    drop_groups = cfg.attention_ratio * n_kv
    allowed = allowed_attention_ratios(n_kv)
    if abs(drop_groups - round(drop_groups)) > 0.01:
        raise UserError(
            f"attention_ratio {cfg.attention_ratio} does not remove a whole number of the {n_kv} key/value groups",
            field=f"{field}.attention_ratio",
            allowed=allowed,
            hint="Query heads are removed together with the key/value group they read",
        )
    drop_groups = int(round(drop_groups))
    if drop_groups >= n_kv:
        raise UserError(
            "attention_ratio would leave zero attention heads", field=f"{field}.attention_ratio", allowed=allowed
        )
    return keep, drop_groups


def _tp():
    try:
        import torch_pruning as tp
    except ImportError:
        raise DependencyError("torch-pruning", "structured pruning", install="pip install torch-pruning") from None
    return tp


@torch.no_grad()
def prune_mlp(mlp, keep: torch.Tensor, stats=None, damp: float = 0.01) -> None:
    """Remove intermediate channels where keep is False (gate/up rows, down columns)."""
    tp = _tp()
    drop = torch.nonzero(~keep).squeeze(1).tolist()
    if not drop:
        return
    if stats is not None:
        new_down = least_squares_refit(mlp.down_proj.weight.data, stats.xtx, keep, damp)
    tp.prune_linear_out_channels(mlp.gate_proj, drop)
    tp.prune_linear_out_channels(mlp.up_proj, drop)
    tp.prune_linear_in_channels(mlp.down_proj, drop)
    if stats is not None:
        mlp.down_proj.weight.data.copy_(new_down)


@torch.no_grad()
def prune_kv_groups(attn, drop_groups: list[int], n_kv: int, head_dim: int, stats=None, damp: float = 0.01) -> None:
    """Remove whole key/value groups and the query heads that read them (GQA-aware)."""
    tp = _tp()
    if not drop_groups:
        return
    n_heads = attn.q_proj.out_features // head_dim
    rep = n_heads // n_kv
    kv_ch = [g * head_dim + d for g in drop_groups for d in range(head_dim)]
    q_ch = [h * head_dim + d for g in drop_groups for h in range(g * rep, (g + 1) * rep) for d in range(head_dim)]
    if stats is not None:
        keep = torch.ones(attn.o_proj.in_features, dtype=torch.bool)
        keep[q_ch] = False
        new_o = least_squares_refit(attn.o_proj.weight.data, stats.xtx, keep, damp)
    tp.prune_linear_out_channels(attn.q_proj, q_ch)
    tp.prune_linear_out_channels(attn.k_proj, kv_ch)
    tp.prune_linear_out_channels(attn.v_proj, kv_ch)
    tp.prune_linear_in_channels(attn.o_proj, q_ch)
    if stats is not None:
        attn.o_proj.weight.data.copy_(new_o)


def group_importance(sq_mean: torch.Tensor, o_weight: torch.Tensor, n_kv: int, head_dim: int) -> torch.Tensor:
    """Importance of each key/value group: summed channel importance of its query heads at o_proj's input."""
    ch = channel_importance(sq_mean, o_weight)
    return ch.reshape(n_kv, -1).sum(1)  # query heads of one group are contiguous: [group][rep][head_dim]


def count_params(model) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def apply(model, cfg: StructuredConfig, ctx: StepContext):
    started = time.perf_counter()
    config = model.config
    keep_inter, n_drop_groups = plan(config, cfg, ctx.field)
    if cfg.mlp_ratio > 0 and keep_inter == config.intermediate_size:
        ctx.note(f"mlp_ratio {cfg.mlp_ratio} rounded to a multiple of {cfg.round_to} keeps every MLP channel", "mlp")
    n_kv = config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    params_before = count_params(model)
    teacher = copy.deepcopy(model) if cfg.recovery else None
    dropped_groups = {}

    def prune_layer(calib: CalibLayer) -> None:
        layer = calib.module
        probes = {"down": layer.mlp.down_proj, "o": layer.self_attn.o_proj}
        stats, _ = collect_input_stats(layer, probes, calib.inputs, hessian=cfg.compensate)
        n = max(stats["down"].n, 1)
        imp = channel_importance(stats["down"].sq_sum / n, layer.mlp.down_proj.weight)
        keep = torch.zeros(imp.numel(), dtype=torch.bool)
        keep[torch.topk(imp, keep_inter).indices] = True
        prune_mlp(layer.mlp, keep, stats["down"] if cfg.compensate else None, cfg.damp)
        if n_drop_groups:
            gi = group_importance(stats["o"].sq_sum / n, layer.self_attn.o_proj.weight, n_kv, head_dim)
            drop = sorted(torch.topk(gi, n_drop_groups, largest=False).indices.tolist())
            prune_kv_groups(layer.self_attn, drop, n_kv, head_dim, stats["o"] if cfg.compensate else None, cfg.damp)
            dropped_groups[calib.index] = drop

    run = calibrate_layers(model, ctx, cfg.calibration, prune_layer, description="structured pruning (layer)")
    # Uniform widths: the pruned model is a plain config of the same architecture.
    config.head_dim = head_dim
    config.intermediate_size = keep_inter
    config.num_key_value_heads = n_kv - n_drop_groups
    config.num_attention_heads = config.num_attention_heads - n_drop_groups * (config.num_attention_heads // n_kv)
    params_after = count_params(model)
    ctx.records.update(
        {
            "params_before": params_before,
            "params_after": params_after,
            "params_ratio": round(params_after / params_before, 4),
            "intermediate_size": keep_inter,
            "num_attention_heads": config.num_attention_heads,
            "num_key_value_heads": config.num_key_value_heads,
            "dropped_kv_groups": dropped_groups,
            "calibration": {**ctx.records["calibration"], "tokens": run.tokens},  # keeps hash + range
        }
    )
    if cfg.recovery:
        ctx.records["recovery"] = maybe_recover(model, teacher, ctx.tokenizer, cfg.recovery, cfg.calibration)
    ctx.records["seconds"] = round(time.perf_counter() - started, 1)
    ctx.artifact_format = "hf"
    return model
