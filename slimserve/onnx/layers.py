"""The decoder families the fused graph supports, as data (DecoderSpec), and one layer body per family.

Llama / Mistral: pre-norm layers, x -> attention -> +res -> norm -> SwiGLU MLP -> +res -> next norm, each residual
add fused into a SkipSimplifiedLayerNormalization. Gemma 3 (gemma3_text), checked against transformers'
modeling_gemma3: norms scale by (1 + w); the attention and MLP outputs are normalised again before their residual add
("sandwich" norms); q and k get a per-head RMSNorm before rotary, so GroupQueryAttention takes unpacked q, k, v;
the softmax scale is query_pre_attn_scalar ** -0.5; sliding-window layers use GQA's local window and a second
(local) rotary cache; the MLP gate is tanh-approximated GELU; optional final logit softcapping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from onnx import helper

from ..errors import UserError
from .nodes import MS, G, WeightFn, as_np, linear

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "gemma3_text")
LAYER_TYPES = ("sliding_attention", "full_attention")
GEMMA_ACTIVATIONS = ("gelu_pytorch_tanh",)


@dataclass(frozen=True)
class DecoderSpec:
    """The architecture numbers the graph needs, read from a transformers config (defaults are Llama's)."""

    model_type: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    rms_eps: float
    max_positions: int
    family: str = "llama"  # the layer body: llama (pre-norm) | gemma (pre- and post-norm around attention and MLP)
    attn_scale: float | None = None  # None: head_dim ** -0.5
    norm_offset: float = 0.0  # RMSNorm multiplies by (norm_offset + w): Gemma stores w centred on 0
    qk_norm: bool = False  # per-head RMSNorm of q and k before rotary
    activation: str = "silu"  # MLP gate: silu | gelu_tanh
    sliding: tuple[bool, ...] = ()  # per layer: local attention window and the local rotary cache
    local_window: int = -1  # GroupQueryAttention's local_window_size on sliding layers
    final_softcap: float | None = None  # logits = tanh(logits / c) * c

    @property
    def scale(self) -> float:
        return self.attn_scale if self.attn_scale is not None else 1.0 / math.sqrt(self.head_dim)

    def is_sliding(self, i: int) -> bool:
        return bool(self.sliding) and self.sliding[i]

    @classmethod
    def from_config(cls, cfg) -> DecoderSpec:
        mt = getattr(cfg, "model_type", "?")
        if mt not in SUPPORTED_MODEL_TYPES:
            raise UserError(
                f"the fused ONNX graph does not support model_type '{mt}'",
                field="export.graph",
                allowed=SUPPORTED_MODEL_TYPES,
                hint="Use `graph: optimum` for the stock optimum-onnx export of other architectures",
            )
        bad = [k for k in ("attention_bias", "mlp_bias") if getattr(cfg, k, False)]
        if mt != "gemma3_text" and getattr(cfg, "sliding_window", None):
            bad.append("sliding_window")
        if bad:
            raise UserError(f"the fused ONNX graph does not support {', '.join(bad)}", field="export.graph")
        if mt == "gemma3_text":
            family = _gemma3(cfg)
        elif getattr(cfg, "hidden_act", "silu") != "silu":
            raise UserError(f"hidden_act '{cfg.hidden_act}' is not supported", field="export.graph", allowed=["silu"])
        else:
            family = {}
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        return cls(
            model_type=mt,
            layers=cfg.num_hidden_layers,
            hidden=cfg.hidden_size,
            heads=cfg.num_attention_heads,
            kv_heads=getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads,
            head_dim=head_dim,
            intermediate=cfg.intermediate_size,
            vocab=cfg.vocab_size,
            rms_eps=float(cfg.rms_norm_eps),
            max_positions=int(cfg.max_position_embeddings),
            **family,
        )


def _gemma3(cfg) -> dict:
    """Gemma 3's DecoderSpec fields; a UserError names any config field the graph would otherwise get wrong."""

    def refuse(what: str, **kw):
        raise UserError(f"the fused ONNX graph does not support Gemma 3 with {what}", field="export.graph", **kw)

    act = getattr(cfg, "hidden_activation", None) or getattr(cfg, "hidden_act", None)
    if act not in GEMMA_ACTIVATIONS:
        refuse(f"hidden_activation '{act}'", allowed=GEMMA_ACTIVATIONS)
    if getattr(cfg, "attn_logit_softcapping", None) is not None:
        # transformers' Gemma 3 attention never applies it (Gemma 2's did): refuse rather than guess
        refuse("attn_logit_softcapping set (transformers' Gemma 3 ignores it; set it to null to export what it runs)")
    if getattr(cfg, "use_bidirectional_attention", False):
        refuse("use_bidirectional_attention: true (the graph is causal)")
    types = list(cfg.layer_types)
    if any(t not in LAYER_TYPES for t in types):
        refuse(f"layer_types {sorted(set(types) - set(LAYER_TYPES))}", allowed=LAYER_TYPES)
    sliding = tuple(t == "sliding_attention" for t in types)
    if any(sliding) and not cfg.sliding_window:
        refuse("sliding_attention layers but no sliding_window")
    return {
        "family": "gemma",
        "attn_scale": float(cfg.query_pre_attn_scalar) ** -0.5,
        "norm_offset": 1.0,
        "qk_norm": True,
        "activation": "gelu_tanh",
        "sliding": sliding,
        # transformers attends keys k with q - W < k <= q (W keys, its own included), and so does ORT's CPU GQA
        # with local_window_size = W (measured: W - 1 and W + 1 differ from the first query past the window)
        "local_window": int(cfg.sliding_window) if any(sliding) else -1,
        "final_softcap": cfg.final_logit_softcapping,
    }


@dataclass(frozen=True)
class LayerCtx:
    """What every layer body shares: the graph, the weight plan, the mask-derived GQA inputs, the rotary caches."""

    g: G
    plan: WeightFn
    accuracy_level: int
    seqlens: str
    total: str
    rotary: dict[bool, tuple[str, str]]  # sliding layer? -> (cos cache, sin cache)


def norm_weight(g: G, spec: DecoderSpec, name: str, w: torch.Tensor) -> str:
    """The RMSNorm scale as an initializer: w, or Gemma's 1 + w (added in float32, as transformers does)."""
    arr = as_np(w)
    return g.init(name, arr + np.float32(spec.norm_offset) if spec.norm_offset else arr)


def rms_norm(g: G, spec: DecoderSpec, x: str, weight: str, *, name: str) -> str:
    return g.op1("SimplifiedLayerNormalization", [x, weight], name=name, epsilon=spec.rms_eps, axis=-1, stash_type=1)


def skip_norm(g: G, spec: DecoderSpec, x: str, res: str, weight: str, *, name: str) -> tuple[str, str]:
    """(norm(x + res), x + res): the residual add and the next norm in one node."""
    out = g.op("SkipSimplifiedLayerNormalization", [x, res, weight], 4, name=name, domain=MS, epsilon=spec.rms_eps)
    return out[0], out[3]


def _qk_normed(c: LayerCtx, spec: DecoderSpec, a, p: str, qkv: str) -> list[str]:
    """Split packed q|k|v and RMS-normalise q and k per head ([B, S, H, D] over D): GQA's query, key, value."""
    g = c.g
    q_n, kv_n = spec.heads * spec.head_dim, spec.kv_heads * spec.head_dim
    q, k, v = g.op("Split", [qkv, g.const([q_n, kv_n, kv_n])], 3, name=f"{p}/attn/Split", axis=-1)
    heads, flat = g.const([0, 0, -1, spec.head_dim]), g.const([0, 0, -1])
    out = []
    for t, norm, tag in ((q, a.q_norm, "q"), (k, a.k_norm, "k")):
        r = g.op1("Reshape", [t, heads], name=f"{p}/attn/{tag}_heads")
        w = norm_weight(g, spec, f"{p}.self_attn.{tag}_norm.weight", norm.weight)
        out.append(g.op1("Reshape", [rms_norm(g, spec, r, w, name=f"{p}/attn/{tag}_norm"), flat],
                         name=f"{p}/attn/{tag}_flat"))  # fmt: skip
    return [*out, v]


def attention(c: LayerCtx, spec: DecoderSpec, a, i: int, x: str) -> str:
    """Packed QKV projection -> GroupQueryAttention (rotary, KV cache in place) -> o_proj."""
    g, p = c.g, f"model.layers.{i}"
    wqkv = torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight], 0)
    qkv = linear(g, x, f"{p}.self_attn.qkv_proj", wqkv, [a.q_proj, a.k_proj, a.v_proj], c.plan, c.accuracy_level)
    qkv_in = _qk_normed(c, spec, a, p, qkv) if spec.qk_norm else [qkv, "", ""]
    sliding = spec.is_sliding(i)
    cos, sin = c.rotary[sliding]
    # GQA writes the graph's present outputs directly (an Identity in between could copy the whole cache).
    attn_out = f"{p}/GroupQueryAttention/out"
    g.nodes.append(
        helper.make_node(
            "GroupQueryAttention",
            [*qkv_in, f"past_key_values.{i}.key", f"past_key_values.{i}.value", c.seqlens, c.total, cos, sin],
            [attn_out, f"present.{i}.key", f"present.{i}.value"],
            name=f"{p}/GroupQueryAttention",
            domain=MS,
            num_heads=spec.heads,
            kv_num_heads=spec.kv_heads,
            do_rotary=1,
            rotary_interleaved=0,
            scale=spec.scale,
            local_window_size=spec.local_window if sliding else None,  # None: attribute left out
        )
    )
    return linear(g, attn_out, f"{p}.self_attn.o_proj", a.o_proj.weight, [a.o_proj], c.plan, c.accuracy_level)


def mlp(c: LayerCtx, spec: DecoderSpec, m, i: int, x: str) -> str:
    """Packed gate|up projection -> act(gate) * up -> down_proj."""
    g, p = c.g, f"model.layers.{i}"
    wgu = torch.cat([m.gate_proj.weight, m.up_proj.weight], 0)
    gu = linear(g, x, f"{p}.mlp.gate_up_proj", wgu, [m.gate_proj, m.up_proj], c.plan, c.accuracy_level)
    gate, up = g.op("Split", [gu, g.const([spec.intermediate, spec.intermediate])], 2, name=f"{p}/mlp/Split", axis=-1)
    if spec.activation == "silu":
        act = g.op1("Mul", [gate, g.op1("Sigmoid", [gate], name=f"{p}/mlp/Sigmoid")], name=f"{p}/mlp/SiLU")
    else:  # transformers' gelu_pytorch_tanh (ai.onnx Gelu, opset 20: as exact as FastGelu and ~10% faster on CPU)
        act = g.op1("Gelu", [gate], name=f"{p}/mlp/Gelu", approximate="tanh")
    prod = g.op1("Mul", [act, up], name=f"{p}/mlp/Mul")
    return linear(g, prod, f"{p}.mlp.down_proj", m.down_proj.weight, [m.down_proj], c.plan, c.accuracy_level)


def llama_layer(c: LayerCtx, spec: DecoderSpec, layer, i: int, x: str, res: str, nxt) -> tuple[str, str]:
    """x (already normed) -> attention -> +res, norm -> MLP -> +res, next norm; nxt = (name, weight) of that norm."""
    g, p = c.g, f"model.layers.{i}"
    o = attention(c, spec, layer.self_attn, i, x)
    ln2 = norm_weight(g, spec, f"{p}.post_attention_layernorm.weight", layer.post_attention_layernorm.weight)
    x, res = skip_norm(g, spec, o, res, ln2, name=f"{p}/post_attn_norm")
    d = mlp(c, spec, layer.mlp, i, x)
    return skip_norm(g, spec, d, res, norm_weight(g, spec, *nxt), name=f"{p}/next_norm")


def gemma_layer(c: LayerCtx, spec: DecoderSpec, layer, i: int, x: str, res: str, nxt) -> tuple[str, str]:
    """As llama_layer, with the attention and MLP outputs normalised before their residual adds."""
    g, p = c.g, f"model.layers.{i}"

    def w(norm: str) -> str:
        return norm_weight(g, spec, f"{p}.{norm}.weight", getattr(layer, norm).weight)

    o = rms_norm(g, spec, attention(c, spec, layer.self_attn, i, x), w("post_attention_layernorm"),
                 name=f"{p}/post_attn_norm")  # fmt: skip
    x, res = skip_norm(g, spec, o, res, w("pre_feedforward_layernorm"), name=f"{p}/pre_ffn_norm")
    d = rms_norm(g, spec, mlp(c, spec, layer.mlp, i, x), w("post_feedforward_layernorm"), name=f"{p}/post_ffn_norm")
    return skip_norm(g, spec, d, res, norm_weight(g, spec, *nxt), name=f"{p}/next_norm")


LAYER_BODIES = {"llama": llama_layer, "gemma": gemma_layer}
