"""Build a fused ONNX decoder graph for Llama, Mistral and Gemma 3 straight from the PyTorch weights.

The graph is the one onnxruntime-genai uses on CPU: packed QKV projection -> ``GroupQueryAttention`` (rotary inside,
KV cache read and written in place when past and present share a buffer), ``SkipSimplifiedLayerNormalization`` for the
residual adds, optional ``MatMulNBits`` int4/int8 weights including an *untied* lm_head. Its interface is the optimum /
genai one (input_ids, attention_mask, past_key_values.N.key/value -> logits, present.N.key/value), so the same file
runs in optimum's ORTModelForCausalLM (growing cache) and in slimserve's IO-binding loop (shared fixed-size buffer).

Extra input ``logits_range`` (int64 [2] = start, end on the sequence axis; default all positions) lets generation
run the lm_head only for the one position it samples from, as llama.cpp does: [-1, BIG] for the last prompt token,
[n-1, n] for a right-padded static prompt of n real tokens.

Static graphs (Inferentia-style buckets) come from the same builder with integer dims. The per-layer bodies and
what each model family does differently live in layers.py; the weight-carrying nodes in nodes.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper

from .layers import LAYER_BODIES, SUPPORTED_MODEL_TYPES, DecoderSpec, LayerCtx, norm_weight, rms_norm
from .nodes import EMBED, MS, TIED, G, WeightFn, as_np, embedding, linear
from .packing import NBitsWeight, pack_nbits

__all__ = ["EMBED", "SUPPORTED_MODEL_TYPES", "DecoderSpec", "Dims", "WeightFn", "build_decoder", "float_plan",
           "rtn_plan", "rotary_caches", "symbolic_dims"]  # fmt: skip

OPSET = 21
LOGITS_RANGE = "logits_range"
ALL_POSITIONS = 2**62


@dataclass(frozen=True)
class Dims:
    """Graph I/O dims: strings are symbolic, ints make a static graph."""

    batch: int | str = "batch_size"
    seq: int | str = "sequence_length"
    total: int | str = "total_sequence_length"
    past: int | str = "past_sequence_length"
    present: int | str = "present_sequence_length"
    kept: int | str = "kept_sequence_length"

    @property
    def static(self) -> bool:
        return all(isinstance(v, int) for v in vars(self).values())


def rotary_caches(model, spec: DecoderSpec, length: int, *, local: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin [length, head_dim/2] from the model's own rotary module (so rope scaling variants are honoured);
    local: Gemma 3's second module for sliding-window layers (its own base frequency)."""
    rot = model.model.rotary_emb_local if local else model.model.rotary_emb
    pos = torch.arange(length).unsqueeze(0)
    dummy = torch.zeros(1, dtype=torch.float32)
    with torch.no_grad():
        cos, sin = rot(dummy, pos)
    half = spec.head_dim // 2
    return as_np(cos[0, :, :half]), as_np(sin[0, :, :half])


def _io(spec: DecoderSpec, dims: Dims) -> tuple[list, list]:
    """The optimum / genai decoder interface: ids, mask, past/present key/value per layer -> logits."""
    f32, i64 = TensorProto.FLOAT, TensorProto.INT64
    kv_shape_in = [dims.batch, spec.kv_heads, dims.past, spec.head_dim]
    kv_shape_out = [dims.batch, spec.kv_heads, dims.present, spec.head_dim]
    inputs = [
        helper.make_tensor_value_info("input_ids", i64, [dims.batch, dims.seq]),
        helper.make_tensor_value_info("attention_mask", i64, [dims.batch, dims.total]),
    ]
    outputs = [helper.make_tensor_value_info("logits", f32, [dims.batch, dims.kept, spec.vocab])]
    for i in range(spec.layers):
        for kv in ("key", "value"):
            inputs.append(helper.make_tensor_value_info(f"past_key_values.{i}.{kv}", f32, kv_shape_in))
            outputs.append(helper.make_tensor_value_info(f"present.{i}.{kv}", f32, kv_shape_out))
    return inputs, outputs


def _mask_inputs(g: G) -> tuple[str, str]:
    """GQA's seqlens_k (tokens seen - 1 per row) and total (the longest row). Sum of the mask (not its width) so
    static graphs can pad the mask with zeros."""
    mask_sum = g.op1("ReduceSum", ["attention_mask", g.const([1])], name="mask/ReduceSum", keepdims=0)
    seqlens = g.op1("Cast", [g.op1("Sub", [mask_sum, g.const(1)], name="mask/Sub")], name="mask/seqlens", to=6)
    total = g.op1("Cast", [g.op1("ReduceMax", [mask_sum], name="mask/Max", keepdims=1)], name="mask/total", to=6)
    return seqlens, g.op1("Reshape", [total, g.const([])], name="mask/total_scalar")


def _rotary(g: G, model, spec: DecoderSpec, length: int) -> dict[bool, tuple[str, str]]:
    """The cos/sin cache initializers per layer kind (sliding or not); one pair unless a layer slides."""
    cos, sin = rotary_caches(model, spec, length)
    caches = {False: (g.init("rotary.cos_cache", cos), g.init("rotary.sin_cache", sin))}
    if any(spec.sliding):
        cos, sin = rotary_caches(model, spec, length, local=True)
        caches[True] = (g.init("rotary_local.cos_cache", cos), g.init("rotary_local.sin_cache", sin))
    return caches


def _embed(g: G, spec: DecoderSpec, embed, plan: WeightFn) -> str:
    """The token embeddings, times Gemma's sqrt(hidden) scale (in the weight dtype, as transformers rounds it). The
    table stays unscaled, so a tied lm_head reads it as it is."""
    h = embedding(g, embed, plan)
    scale = getattr(embed, "embed_scale", None)
    if scale is None:
        return h
    c = g.const(float(scale.to(embed.weight.dtype)), np.float32)
    return g.op1("Mul", [h, c], name="embed/Scale")


def build_decoder(
    model,
    plan: WeightFn,
    *,
    dims: Dims = Dims(),
    accuracy_level: int = 4,
    cache_length: int | None = None,
) -> onnx.ModelProto:
    """The fused decoder graph of a Llama / Mistral / Gemma 3 HF model (weights as they are, after earlier steps)."""
    spec = DecoderSpec.from_config(model.config)
    g = G()
    inputs, outputs = _io(spec, dims)
    seqlens, total = _mask_inputs(g)
    rotary = _rotary(g, model, spec, cache_length or spec.max_positions)
    ctx = LayerCtx(g, plan, accuracy_level, seqlens, total, rotary)

    m = model.model
    layers = m.layers
    h = _embed(g, spec, m.embed_tokens, plan)
    w0 = norm_weight(g, spec, "model.layers.0.input_layernorm.weight", layers[0].input_layernorm.weight)
    x, res = rms_norm(g, spec, h, w0, name="layers.0/input_norm"), h
    body = LAYER_BODIES[spec.family]
    for i, layer in enumerate(layers):
        last = i == spec.layers - 1
        nxt = ("model.norm.weight", m.norm.weight) if last else (
            f"model.layers.{i + 1}.input_layernorm.weight", layers[i + 1].input_layernorm.weight)  # fmt: skip
        x, res = body(ctx, spec, layer, i, x, res, nxt)

    logits = _lm_head(g, spec, model, x, plan, accuracy_level)
    g.nodes.append(helper.make_node("Identity", [logits], ["logits"], name="logits"))
    graph = helper.make_graph(g.nodes, "slimserve_decoder", inputs, outputs, initializer=g.inits)
    graph.input.append(helper.make_tensor_value_info(LOGITS_RANGE, TensorProto.INT64, [2]))
    model_proto = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS, 1)], producer_name="slimserve"
    )
    model_proto.ir_version = 10
    return model_proto


def _lm_head(g: G, spec: DecoderSpec, model, x: str, plan: WeightFn, accuracy_level: int) -> str:
    """Final hidden states -> logits of the positions in `logits_range` (then Gemma's optional softcapping)."""
    # Positions whose logits are computed: Slice(x, start, end) on the sequence axis (default: all).
    g.init(LOGITS_RANGE, np.array([0, ALL_POSITIONS], np.int64))
    start, end = g.op("Split", [LOGITS_RANGE, g.const([1, 1])], 2, name="keep/Split", axis=0)
    x = g.op1("Slice", [x, start, end, g.const([1])], name="keep/Slice")
    head = model.get_output_embeddings()
    float_embed = f"{EMBED}.weight" in {t.name for t in g.inits}
    # a plan may ask for an untied float lm_head (e.g. for ORT's int8 quantizer, which needs a constant B)
    tied = head.weight is model.model.embed_tokens.weight and float_embed and getattr(plan, "keep_tied", True)

    def head_plan(name: str, w: torch.Tensor, sources: list) -> NBitsWeight | None:
        packed = plan(name, w, sources)
        return TIED if packed is None and tied else packed

    # untied into its own initializer, so MatMulNBits covers it like any other projection
    logits = linear(g, x, "lm_head", head.weight, [head], head_plan, accuracy_level)
    if spec.final_softcap:
        cap = g.const(spec.final_softcap, np.float32)
        t = g.op1("Tanh", [g.op1("Div", [logits, cap], name="softcap/Div")], name="softcap/Tanh")
        logits = g.op1("Mul", [t, cap], name="softcap/Mul")
    return logits


def float_plan(_name: str, _w: torch.Tensor, _sources: list) -> None:
    return None


def rtn_plan(bits: int, block_size: int, symmetric: bool, *, skip: Callable[[str], bool] = lambda n: False) -> WeightFn:
    """Round-to-nearest block quantization of every projection except those `skip` names."""
    from .packing import rtn_qparams

    def plan(name: str, w: torch.Tensor, _sources: list) -> NBitsWeight | None:
        if skip(name) or name == EMBED:
            return None
        return pack_nbits(w, rtn_qparams(w, bits, block_size, symmetric))

    return plan


def symbolic_dims(model: onnx.ModelProto) -> list[str]:
    """'tensor: dim' for every graph input/output dim that is not a fixed integer (empty for a static graph)."""
    out = []
    for vi in list(model.graph.input) + list(model.graph.output):
        for j, d in enumerate(vi.type.tensor_type.shape.dim):
            if not d.HasField("dim_value"):
                out.append(f"{vi.name}[{j}]={d.dim_param or '?'}")
    return out
