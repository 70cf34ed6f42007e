"""Quality metrics a tier rule can rank on, with their direction.

The quality axis of the catalog is one named scalar (tiers.yaml `metric`, default `top1`):
- `top1`: fraction of next-token positions where the variant's argmax agrees with the reference (higher is better);
- `kld`: mean KL(reference || variant) over next-token distributions, nats (lower is better);
- `ppl_delta`: relative perplexity increase vs the reference, ppl/ref_ppl - 1 (lower is better);
- `mc_mean`: mean multiple-choice accuracy over the measured tasks; `mc:<task>`: one task (higher is better).
The reference variant scores top1=1, kld=0, ppl_delta=0 by definition when its record leaves them out.
"""

from __future__ import annotations

from ..errors import UserError

HIGHER_IS_BETTER = {"top1": True, "kld": False, "ppl_delta": False, "mc_mean": True}
REFERENCE_VALUES = {"top1": 1.0, "kld": 0.0, "ppl_delta": 0.0}


def check_metric(name: str, *, field: str | None = None, file: str | None = None) -> str:
    if name in HIGHER_IS_BETTER or (name.startswith("mc:") and len(name) > 3):
        return name
    raise UserError(
        f"unknown quality metric '{name}'", field=field, file=file, allowed=[*HIGHER_IS_BETTER, "mc:<task>"]
    )


def higher_is_better(name: str) -> bool:
    return HIGHER_IS_BETTER.get(name, True)  # mc:<task> accuracies


def oriented(name: str, value: float) -> float:
    """Value on a higher-is-better scale, for the Pareto front."""
    return value if higher_is_better(name) else -value


def passes(name: str, value: float, floor: float) -> bool:
    """True when `value` is at least as good as `floor` in the metric's direction."""
    return value >= floor if higher_is_better(name) else value <= floor


def quality_values(q: object | None) -> dict[str, float]:
    """Flatten a bench QualityResult (or None) into {metric: value}, leaving out what was not measured."""
    if q is None:
        return {}
    out = {k: float(getattr(q, k)) for k in ("top1", "kld", "ppl_delta") if getattr(q, k, None) is not None}
    mc = dict(getattr(q, "mc_accuracy", None) or {})
    for task, acc in mc.items():
        out[f"mc:{task}"] = float(acc)
    if mc:
        out["mc_mean"] = sum(mc.values()) / len(mc)
    return out
