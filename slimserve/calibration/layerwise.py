"""Layer-by-layer calibration shared by GPTQ, AWQ, SmoothQuant and the pruners.

The decoder-layer inputs are captured once (the embeddings and everything after the first layer
are never run), then each layer is calibrated and run on its inputs to produce the next layer's:
memory holds one layer's inputs and outputs for the calibration set, never full-model activations.
`calibrate_layers` is that loop; a method plugs in what it does to one layer.

```yaml
calibration: {text: null, samples: 128, seq_len: 512, batch_size: 8}   # text null: Pride and Prejudice
```
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from rich.progress import track
from torch import nn

from ..errors import UserError
from .config import CalibrationConfig


def load_calibration(ctx, cfg: CalibrationConfig, *, key: str = "calibration", field: str = "calibration"):
    """Token ids [samples, seq_len] from the start of the text; records what was read in ctx.records[key] (the
    text's sha256 and token range, so the benchmark can refuse to score a variant on its calibration windows).
    UserError naming the recipe field if the text is too short."""
    import hashlib

    from ..data import calibration_batches, read_text

    try:
        text = read_text(cfg.text)
        ids = calibration_batches(ctx.tokenizer, text, cfg.samples, cfg.seq_len, source=f"'{cfg.text or 'default'}'")
    except UserError as e:
        if e.field in (None, "calibration", "eval_text"):
            raise UserError(
                e.text, file=e.file, field=f"{ctx.field}.{field}", allowed=e.allowed, hint=e.hint_text
            ) from None
        raise
    ctx.records[key] = {
        **cfg.model_dump(),
        "tokens": int(ids.numel()),
        "token_range": [0, int(ids.numel())],
        "text_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
    }
    return ids


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The list of decoder blocks of a Llama-style causal LM (model.model.layers)."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise UserError(
            f"calibrated methods need a decoder-only model with model.model.layers; got {type(model).__name__}",
            allowed="Llama-style architectures (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, ...)",
        )
    return layers


@dataclass
class LayerInputs:
    """Hidden states entering one decoder layer, per batch, plus the keyword arguments of each call."""

    hidden: list[torch.Tensor]
    kwargs: list[dict[str, Any]]

    @property
    def tokens(self) -> int:
        return sum(h.shape[0] * h.shape[1] for h in self.hidden)


class _Stop(Exception):
    pass


@torch.no_grad()
def capture_layer_inputs(model: nn.Module, input_ids: torch.Tensor, batch_size: int = 8) -> LayerInputs:
    """Run the model up to the first decoder layer for every batch and keep that layer's inputs."""
    first = decoder_layers(model)[0]
    hidden, kwargs = [], []

    def hook(_mod, args, kw):
        h = args[0] if args else kw.pop("hidden_states")
        hidden.append(h.detach())
        kwargs.append({k: v for k, v in kw.items() if k not in ("past_key_values", "past_key_value", "use_cache")})
        raise _Stop

    handle = first.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        dev = next(model.parameters()).device
        for batch in input_ids.split(batch_size):
            try:
                model(input_ids=batch.to(dev), use_cache=False)
            except _Stop:
                pass
    finally:
        handle.remove()
    return LayerInputs(hidden, kwargs)


@torch.no_grad()
def run_layer(layer: nn.Module, inputs: LayerInputs) -> LayerInputs:
    """Outputs of one decoder layer on every captured batch (the next layer's inputs)."""
    outs = []
    for h, kw in zip(inputs.hidden, inputs.kwargs, strict=True):
        out = layer(h, **kw)
        outs.append(out[0] if isinstance(out, tuple) else out)
    return LayerInputs(outs, inputs.kwargs)


@dataclass
class InputStats:
    """Statistics of the inputs a Linear saw: X^T X (optional), per-channel sum of x^2 and |x|, token count,
    and (optional) a bounded sample of raw input rows."""

    xtx: torch.Tensor | None = None
    sq_sum: torch.Tensor | None = None
    abs_sum: torch.Tensor | None = None
    abs_max: torch.Tensor | None = None
    n: int = 0
    samples: list[torch.Tensor] = field(default_factory=list)
    max_samples: int = 0

    def add(self, x: torch.Tensor, hessian: bool) -> None:
        x = x.reshape(-1, x.shape[-1]).float()
        if self.sq_sum is None:
            self.sq_sum = torch.zeros(x.shape[-1])
            self.abs_sum = torch.zeros(x.shape[-1])
            if hessian:
                self.xtx = torch.zeros(x.shape[-1], x.shape[-1])
        self.sq_sum += x.pow(2).sum(0)
        ax = x.abs()
        self.abs_sum += ax.sum(0)
        amax = ax.amax(0)
        self.abs_max = amax if self.abs_max is None else torch.maximum(self.abs_max, amax)
        if hessian:
            self.xtx.addmm_(x.T, x)
        have = sum(s.shape[0] for s in self.samples)
        if have < self.max_samples:
            # Evenly spaced rows of each batch, so the sample spans every position and batch.
            take = min(self.max_samples - have, max(1, self.max_samples // 8))
            idx = torch.linspace(0, x.shape[0] - 1, min(take, x.shape[0])).long()
            self.samples.append(x[idx].clone())
        self.n += x.shape[0]

    @property
    def hessian(self) -> torch.Tensor:
        """GPTQ's H = 2/n X^T X."""
        return self.xtx * (2.0 / max(self.n, 1))

    @property
    def mean_abs(self) -> torch.Tensor:
        return self.abs_sum / max(self.n, 1)

    @property
    def norm(self) -> torch.Tensor:
        """Per-input-channel L2 norm over all tokens (Wanda's ||X_j||)."""
        return self.sq_sum.sqrt()

    @property
    def sample(self) -> torch.Tensor:
        return torch.cat(self.samples) if self.samples else torch.empty(0)


@torch.no_grad()
def collect_input_stats(
    layer: nn.Module, modules: dict[str, nn.Module], inputs: LayerInputs, *, hessian: bool = False, max_samples: int = 0
) -> tuple[dict[str, InputStats], LayerInputs]:
    """Run `layer` on its inputs with hooks on `modules` (name -> submodule); return the statistics
    and the layer's outputs (computed with the weights as they are now)."""
    stats = {name: InputStats(max_samples=max_samples) for name in modules}
    # Modules fed the same tensor (q/k/v, gate/up) share one InputStats: X^T X is computed once.
    alias: dict[str, str] = {}
    seen: dict[int, tuple[str, torch.Tensor]] = {}  # holds the tensors so their ids stay unique within a call

    def hook(name, x):
        if name in alias:
            return
        owner = seen.get(id(x), (None,))[0]
        if owner is not None and owner != name and stats[owner].n > stats[name].n:
            alias[name] = owner
            stats[name] = stats[owner]
            return
        seen[id(x)] = (name, x)
        stats[name].add(x, hessian)

    handles = [layer.register_forward_pre_hook(lambda *_: seen.clear())]
    handles += [
        mod.register_forward_hook(lambda _m, args, _o, name=name: hook(name, args[0])) for name, mod in modules.items()
    ]
    try:
        outs = run_layer(layer, inputs)
    finally:
        for h in handles:
            h.remove()
        seen.clear()
    return stats, outs


def layer_linears(layer: nn.Module, prefix: str, wanted: set[str]) -> dict[str, nn.Linear]:
    """Full name -> Linear for the Linear layers of one decoder layer whose full name is in `wanted`."""
    return {
        f"{prefix}.{n}": m for n, m in layer.named_modules() if isinstance(m, nn.Linear) and f"{prefix}.{n}" in wanted
    }


def layer_prefix(model: nn.Module, index: int) -> str:
    layers = decoder_layers(model)
    for name, mod in model.named_modules():
        if mod is layers[index]:
            return name
    raise ValueError(f"decoder layer {index} not found")


@dataclass
class CalibLayer:
    """One decoder layer during a layer-wise calibration: what a method's per-layer function is given."""

    index: int
    prefix: str  # its module name, e.g. "model.layers.3"
    module: nn.Module
    inputs: LayerInputs  # its inputs, computed by the layers before it as they are now


@dataclass
class LayerwiseRun:
    outputs: LayerInputs  # the last decoder layer's outputs (GPTQ calibrates the lm_head on them)
    tokens: int  # calibration tokens read


def calibrate_layers(
    model: nn.Module,
    ctx,
    cfg: CalibrationConfig,
    per_layer: Callable[[CalibLayer], LayerInputs | None],
    *,
    description: str,
) -> LayerwiseRun:
    """Read the calibration text, capture the first decoder layer's inputs, then call `per_layer` on each layer in
    order, each on the outputs of the layers before it.

    `per_layer` may change its layer. It returns the layer's outputs when it already computed them with the final
    weights (SmoothQuant: smoothing keeps the float function), else None and the changed layer is run to give the
    next one its inputs (GPTQ's sequential mode).
    """
    ids = load_calibration(ctx, cfg)
    with torch.no_grad():
        inputs = capture_layer_inputs(model, ids, cfg.batch_size)
        layers = decoder_layers(model)
        names = {id(m): n for n, m in model.named_modules()}
        for i in track(range(len(layers)), description=description, transient=True):
            layer = layers[i]
            outputs = per_layer(CalibLayer(i, names[id(layer)], layer, inputs))
            inputs = run_layer(layer, inputs) if outputs is None else outputs
    return LayerwiseRun(inputs, int(ids.numel()))
