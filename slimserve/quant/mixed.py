"""Mixed precision by measured sensitivity: which projections (and the lm_head and embedding table) keep 8 bits
within a bits-per-weight budget, llama.cpp Q4_K_M style (there some tensors go to Q6_K), but chosen by measurement.

```yaml
- quantize:
    method: gptq
    bits: 4
    group_size: 32
    mixed:
      budget_bpw: 4.8        # mean code bits per weight over the units below (4 = all low, 8 = all high)
      include_head: false    # true: the lm_head and embedding table are candidates too (the ONNX export rounds them)
      calibration: {samples: 2, seq_len: 512}
```

A *unit* is what one ONNX MatMulNBits node holds, so the fused export can honour the plan: per decoder layer
qkv (q, k, v), o, gate_up (gate, up) and down; with include_head, the lm_head and embedding table too. Its sensitivity is the mean
KL divergence of the final next-token distribution from the float model's when that unit alone is rounded to the
low bit width (min/max round-to-nearest at the step's group size), measured on calibration windows. Units are then
promoted to 8 bits greedily by sensitivity per weight until the budget is spent (a knapsack by density).
Scales and zero points are not counted in the budget (the manifest's bits_per_weight counts them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..calibration.layerwise import capture_layer_inputs, decoder_layers, layer_prefix, run_layer
from .math import compute_qparams, fake_quantize

HEAD, EMBED = "lm_head", "model.embed_tokens"
# unit suffix -> module suffixes (fused like the ONNX graph)
LAYER_UNITS = {
    "self_attn.qkv_proj": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    "self_attn.o_proj": ("self_attn.o_proj",),
    "mlp.gate_up_proj": ("mlp.gate_proj", "mlp.up_proj"),
    "mlp.down_proj": ("mlp.down_proj",),
}


@dataclass
class Unit:
    name: str  # the fused projection's name, e.g. "model.layers.3.mlp.gate_up_proj", "lm_head"
    modules: list[str]  # module names it covers
    params: int
    layer: int | None = None  # decoder layer index (None: embedding / lm_head)
    sensitivity: float | None = None  # KLD with only this unit at the low bit width
    bits: int = 4
    rank: int | None = None  # 1 = most sensitive per weight

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("modules", "name")}


@dataclass
class Plan:
    units: list[Unit]
    budget_bpw: float
    achieved_bpw: float
    low: int
    high: int
    notes: list[str] = field(default_factory=list)

    def bits_of(self, module_name: str) -> int | None:
        for u in self.units:
            if module_name in u.modules:
                return u.bits
        return None


# ---------------------------------------------------------------- pure allocation


def allocate(units: list[Unit], budget_bpw: float, low: int, high: int) -> float:
    """Promote units to `high` bits in order of sensitivity per weight while the budget allows (in place).

    Returns the achieved mean code bits per weight. Units that do not fit are skipped and smaller ones still tried.
    """
    total = sum(u.params for u in units)
    if total == 0:
        return float(low)
    spare = (budget_bpw - low) * total  # extra code bits the budget allows
    order = sorted(units, key=lambda u: (-(u.sensitivity or 0.0) / max(u.params, 1), u.name))
    for rank, u in enumerate(order, 1):
        u.rank, u.bits = rank, low
        cost = (high - low) * u.params
        if (u.sensitivity or 0.0) > 0 and cost <= spare + 1e-9:
            u.bits = high
            spare -= cost
    return sum(u.bits * u.params for u in units) / total


# ---------------------------------------------------------------- units of a model


def model_units(model: nn.Module, targets: set[str], include_head: bool) -> list[Unit]:
    """The units covering `targets` (module names the step quantizes), plus lm_head/embedding when asked."""
    mods = dict(model.named_modules())
    units = []
    for i in range(len(decoder_layers(model))):
        prefix = layer_prefix(model, i)
        for unit, members in LAYER_UNITS.items():
            names = [f"{prefix}.{m}" for m in members if f"{prefix}.{m}" in targets]
            if names:
                params = sum(mods[n].weight.numel() for n in names)
                units.append(Unit(f"{prefix}.{unit}", names, params, layer=i))
    if include_head:
        head, emb = model.get_output_embeddings(), model.get_input_embeddings()
        units.append(Unit(HEAD, [HEAD], head.weight.numel()))
        units.append(Unit(EMBED, [EMBED], emb.weight.numel()))
    return units


# ---------------------------------------------------------------- measuring


def _kld(ref_logp: torch.Tensor, logits: torch.Tensor) -> float:
    logp = torch.log_softmax(logits.float(), -1)
    return float((ref_logp.exp() * (ref_logp - logp)).sum(-1).mean())


def _fq(w: torch.Tensor, bits: int, group: int | None, sym: bool) -> torch.Tensor:
    k = w.shape[1]
    g = group if group and k % group == 0 else None
    return fake_quantize(w, compute_qparams(w, bits, g, sym))


class _Probe:
    """Cached per-layer inputs of the float model, so a unit in layer i reruns only layers i..L-1."""

    def __init__(self, model: nn.Module, ids: torch.Tensor, batch_size: int):
        self.model, self.ids, self.batch_size = model, ids, batch_size
        self.layers = decoder_layers(model)
        self.inputs = [capture_layer_inputs(model, ids, batch_size)]
        for layer in self.layers:
            self.inputs.append(run_layer(layer, self.inputs[-1]))
        self.ref = [torch.log_softmax(lg.float(), -1) for lg in self._head(self.inputs[-1].hidden)]

    def _head(self, hidden: list[torch.Tensor], weight: torch.Tensor | None = None) -> list[torch.Tensor]:
        norm, head = self.model.model.norm, self.model.get_output_embeddings()
        w = head.weight if weight is None else weight
        return [nn.functional.linear(norm(h), w) for h in hidden]

    def kld_from(self, layer: int) -> float:
        x = self.inputs[layer]
        for lyr in self.layers[layer:]:
            x = run_layer(lyr, x)
        return self._mean_kld(self._head(x.hidden))

    def kld_head(self, weight: torch.Tensor) -> float:
        return self._mean_kld(self._head(self.inputs[-1].hidden, weight))

    def kld_embedding(self, weight: torch.Tensor) -> float:
        emb = self.model.get_input_embeddings()
        orig = emb.weight
        emb.weight = nn.Parameter(weight, requires_grad=False)  # unties from lm_head for the probe only
        try:
            x = capture_layer_inputs(self.model, self.ids, self.batch_size)
        finally:
            emb.weight = orig
        for lyr in self.layers:
            x = run_layer(lyr, x)
        return self._mean_kld(self._head(x.hidden))

    def _mean_kld(self, logits: list[torch.Tensor]) -> float:
        vals = [_kld(r, lg) for r, lg in zip(self.ref, logits, strict=True)]
        return sum(vals) / len(vals)


@torch.no_grad()
def measure(
    model: nn.Module,
    units: list[Unit],
    specs: dict[str, tuple[int, int | None, bool]],
    ids: torch.Tensor,
    *,
    batch_size: int = 2,
    progress=None,
) -> None:
    """Set each unit's sensitivity (in place). specs: module name -> (low bits, group, symmetric) of that module."""
    probe = _Probe(model, ids, batch_size)
    mods = dict(model.named_modules())
    for u in units:
        if u.name == HEAD:
            w = model.get_output_embeddings().weight
            u.sensitivity = probe.kld_head(_fq(w, *specs[HEAD]))
        elif u.name == EMBED:
            w = model.get_input_embeddings().weight
            u.sensitivity = probe.kld_embedding(_fq(w, *specs[EMBED]))
        else:
            saved = {n: mods[n].weight.data.clone() for n in u.modules}
            try:
                for n in u.modules:
                    mods[n].weight.data.copy_(_fq(saved[n], *specs[n]))
                u.sensitivity = probe.kld_from(u.layer)
            finally:
                for n in u.modules:
                    mods[n].weight.data.copy_(saved[n])
        if progress is not None:
            progress()


# ---------------------------------------------------------------- the step's side


PLANNED_BITS = "_slimserve_planned_bits"  # set on lm_head / embedding modules for exports that quantize them


def planned_bits(module: nn.Module) -> int | None:
    """Bits a mixed plan chose for a module the quantize step itself left float (tied lm_head, embedding)."""
    return getattr(module, PLANNED_BITS, None)


def _divisor_group(k: int, group: int | None) -> int | None:
    return next((g for g in (128, 64, 32) if group and g <= group and k % g == 0), None)


def plan_step(model: nn.Module, cfg, ctx, targets: dict[str, tuple]) -> dict[str, tuple]:
    """Apply `cfg.mixed` to a quantize step's targets (name -> (module, bits, group, symmetric)): measure, allocate,
    record per unit in the manifest, and return the targets with the chosen bits."""
    import time

    from rich.progress import Progress

    from ..calibration.layerwise import load_calibration

    m = cfg.mixed
    started = time.perf_counter()
    ids = load_calibration(ctx, m.calibration, key="mixed_calibration", field="mixed.calibration")
    units = model_units(model, set(targets), m.include_head)
    specs = {n: (b, g, s) for n, (_, b, g, s) in targets.items()}
    for name, mod in ((HEAD, model.get_output_embeddings()), (EMBED, model.get_input_embeddings())):
        specs[name] = (cfg.bits, _divisor_group(mod.weight.shape[1], cfg.group_size), cfg.symmetric)
    with Progress(transient=True) as bar:
        task = bar.add_task(f"mixed precision: sensitivity of {len(units)} units", total=len(units))
        measure(model, units, specs, ids, batch_size=m.calibration.batch_size, progress=lambda: bar.advance(task))
    achieved = allocate(units, m.budget_bpw, cfg.bits, m.high_bits)
    mods = dict(model.named_modules())
    out = dict(targets)
    for u in units:
        for n in u.modules:
            if n in out:
                mod, _, group, sym = out[n]
                out[n] = (mod, u.bits, group, sym)
            elif n in mods:  # not quantized by this step (tied lm_head, embedding): tell the export
                setattr(mods[n], PLANNED_BITS, u.bits)
    ctx.records["mixed"] = {
        "budget_bpw": m.budget_bpw,
        "achieved_bpw": round(achieved, 4),
        "low_bits": cfg.bits,
        "high_bits": m.high_bits,
        "measure": "mean KLD of the final logits vs the float model with only this unit rounded (RTN min/max)",
        "high": [u.name for u in units if u.bits == m.high_bits],
        "units": {u.name: {**u.to_dict(), "why": _why(u, units, m, cfg.bits)} for u in units},
        "seconds": round(time.perf_counter() - started, 1),
    }
    return out


def _why(u: Unit, units: list[Unit], m, low: int) -> str:
    sens = "not measured" if u.sensitivity is None else f"KLD {u.sensitivity:.3g} alone at {low} bits"
    rank = f"rank {u.rank} of {len(units)} by KLD per weight ({sens})"
    if u.bits == m.high_bits:
        return f"{m.high_bits} bits: {rank}; fits the {m.budget_bpw:g} bpw budget"
    return f"{low} bits: {rank}; " + ("not sensitive" if not u.sensitivity else "the budget did not reach it")
