"""Build a fused ONNX decoder graph for Llama-family models straight from the PyTorch weights.

The graph is the one onnxruntime-genai uses on CPU: packed QKV projection -> ``GroupQueryAttention`` (rotary inside,
KV cache read and written in place when past and present share a buffer), ``SkipSimplifiedLayerNormalization`` for the
residual adds, optional ``MatMulNBits`` int4/int8 weights including an *untied* lm_head. Its interface is the optimum /
genai one (input_ids, attention_mask, past_key_values.N.key/value -> logits, present.N.key/value), so the same file
runs in optimum's ORTModelForCausalLM (growing cache) and in slimserve's IO-binding loop (shared fixed-size buffer).

Extra input ``logits_range`` (int64 [2] = start, end on the sequence axis; default all positions) lets generation
run the lm_head only for the one position it samples from, as llama.cpp does: [-1, BIG] for the last prompt token,
[n-1, n] for a right-padded static prompt of n real tokens.

Static graphs (Inferentia-style buckets) come from the same builder with integer dims.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from ..errors import UserError
from .packing import NBitsWeight, pack_nbits

SUPPORTED_MODEL_TYPES = ("llama", "mistral")
OPSET = 21
MS = "com.microsoft"
LOGITS_RANGE = "logits_range"
ALL_POSITIONS = 2**62
EMBED = "model.embed_tokens"
_TIED = object()  # plan result: reuse the float embedding table for a tied lm_head


@dataclass(frozen=True)
class DecoderSpec:
    """The architecture numbers the graph needs, read from a transformers config."""

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
        if getattr(cfg, "sliding_window", None):
            bad.append("sliding_window")
        if bad:
            raise UserError(f"the fused ONNX graph does not support {', '.join(bad)}", field="export.graph")
        if getattr(cfg, "hidden_act", "silu") != "silu":
            raise UserError(f"hidden_act '{cfg.hidden_act}' is not supported", field="export.graph", allowed=["silu"])
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
        )


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


# A weight plan decides per projection (name, weight, source nn.Linear modules) how to store it:
# None keeps a float MatMul, else the packed MatMulNBits weight.
WeightFn = Callable[[str, torch.Tensor, list], NBitsWeight | None]


class _G:
    """Tiny graph-assembly helper: unique names, initializers, nodes."""

    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def init(self, name: str, arr: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def const(self, arr, dtype=np.int64) -> str:
        self._n += 1
        return self.init(f"const_{self._n}", np.asarray(arr, dtype=dtype))

    def op(self, op: str, inputs: list[str], n_out: int = 1, *, name: str, domain: str = "", **attrs) -> list[str]:
        outs = [f"{name}/out{i}" if n_out > 1 else f"{name}/out" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, domain=domain or None, **attrs))
        return outs

    def op1(self, op: str, inputs: list[str], *, name: str, domain: str = "", **attrs) -> str:
        return self.op(op, inputs, 1, name=name, domain=domain, **attrs)[0]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).cpu().numpy()


def _linear(g: _G, x: str, name: str, w: torch.Tensor, sources: list, plan: WeightFn, accuracy_level: int) -> str:
    """x @ W.T as MatMul (float) or MatMulNBits (packed), chosen by the plan."""
    packed = plan(name, w.detach(), sources)
    if packed is _TIED:  # tied and both float: one table on disk, transposed once at load (ORT folds it)
        wt = g.op1("Transpose", [f"{EMBED}.weight"], name=f"{name}/Transpose", perm=[1, 0])
        return g.op1("MatMul", [x, wt], name=f"{name}/MatMul")
    if packed is None:
        return g.op1("MatMul", [x, g.init(f"{name}.weight", _np(w).T)], name=f"{name}/MatMul")
    ins = [x, g.init(f"{name}.qweight", packed.b), g.init(f"{name}.scales", packed.scales)]
    if packed.zero_points is not None:
        ins.append(g.init(f"{name}.qzeros", packed.zero_points))
    return g.op1(
        "MatMulNBits",
        ins,
        name=f"{name}/MatMulNBits",
        domain=MS,
        K=packed.k,
        N=packed.n,
        bits=packed.bits,
        block_size=packed.block_size,
        accuracy_level=accuracy_level,
    )


def _embedding(g: _G, embed, plan: WeightFn) -> str:
    """Gather (float) or GatherBlockQuantized (the plan packed the table; blocks must divide the hidden size)."""
    w = embed.weight.detach()
    packed = plan(EMBED, w, [embed])
    if packed is None:
        return g.op1("Gather", [g.init(f"{EMBED}.weight", _np(w)), "input_ids"], name="embed/Gather")
    if packed.k % packed.block_size:
        raise ValueError("an embedding block size must divide the hidden size")
    v = packed.n
    ins = [g.init(f"{EMBED}.qweight", packed.b.reshape(v, -1)), "input_ids",
           g.init(f"{EMBED}.scales", packed.scales.reshape(v, -1))]  # fmt: skip
    if packed.zero_points is not None:
        ins.append(g.init(f"{EMBED}.qzeros", packed.zero_points.reshape(v, -1)))
    return g.op1(
        "GatherBlockQuantized", ins, name="embed/GatherBlockQuantized", domain=MS, bits=packed.bits,
        block_size=packed.block_size, gather_axis=0, quantize_axis=1,
    )  # fmt: skip


def rotary_caches(model, spec: DecoderSpec, length: int) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin [length, head_dim/2] from the model's own rotary module (so rope scaling variants are honoured)."""
    rot = model.model.rotary_emb
    pos = torch.arange(length).unsqueeze(0)
    dummy = torch.zeros(1, dtype=torch.float32)
    with torch.no_grad():
        cos, sin = rot(dummy, pos)
    half = spec.head_dim // 2
    return _np(cos[0, :, :half]), _np(sin[0, :, :half])


def build_decoder(
    model,
    plan: WeightFn,
    *,
    dims: Dims = Dims(),
    accuracy_level: int = 4,
    cache_length: int | None = None,
) -> onnx.ModelProto:
    """The fused decoder graph of a Llama-family HF model (weights taken as they are, after any earlier steps)."""
    spec = DecoderSpec.from_config(model.config)
    g = _G()
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

    # seqlens_k = tokens seen - 1 per row; total = the longest row. Sum of the mask (not its width) so static graphs
    # can pad the mask with zeros.
    mask_sum = g.op1("ReduceSum", ["attention_mask", g.const([1])], name="mask/ReduceSum", keepdims=0)
    seqlens = g.op1("Cast", [g.op1("Sub", [mask_sum, g.const(1)], name="mask/Sub")], name="mask/seqlens", to=6)
    total = g.op1("Cast", [g.op1("ReduceMax", [mask_sum], name="mask/Max", keepdims=1)], name="mask/total", to=6)
    total = g.op1("Reshape", [total, g.const([])], name="mask/total_scalar")

    cos, sin = rotary_caches(model, spec, cache_length or spec.max_positions)
    cos_n, sin_n = g.init("rotary.cos_cache", cos), g.init("rotary.sin_cache", sin)

    m = model.model
    h = _embedding(g, m.embed_tokens, plan)
    layers = m.layers
    x = g.op1(
        "SimplifiedLayerNormalization",
        [h, g.init("model.layers.0.input_layernorm.weight", _np(layers[0].input_layernorm.weight))],
        name="layers.0/input_norm",
        epsilon=spec.rms_eps,
        axis=-1,
        stash_type=1,
    )
    res = h
    for i, layer in enumerate(layers):
        p = f"model.layers.{i}"
        a = layer.self_attn
        wqkv = torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight], 0)
        qkv = _linear(g, x, f"{p}.self_attn.qkv_proj", wqkv, [a.q_proj, a.k_proj, a.v_proj], plan, accuracy_level)
        # GQA writes the graph's present outputs directly (an Identity in between could copy the whole cache).
        attn_out = f"{p}/GroupQueryAttention/out"
        g.nodes.append(
            helper.make_node(
                "GroupQueryAttention",
                [qkv, "", "", f"past_key_values.{i}.key", f"past_key_values.{i}.value", seqlens, total, cos_n, sin_n],
                [attn_out, f"present.{i}.key", f"present.{i}.value"],
                name=f"{p}/GroupQueryAttention",
                domain=MS,
                num_heads=spec.heads,
                kv_num_heads=spec.kv_heads,
                do_rotary=1,
                rotary_interleaved=0,
                scale=1.0 / math.sqrt(spec.head_dim),
            )
        )
        o = _linear(g, attn_out, f"{p}.self_attn.o_proj", a.o_proj.weight, [a.o_proj], plan, accuracy_level)
        ln2 = g.init(f"{p}.post_attention_layernorm.weight", _np(layer.post_attention_layernorm.weight))
        x, _, _, res = g.op(
            "SkipSimplifiedLayerNormalization", [o, res, ln2], 4, name=f"{p}/post_attn_norm", domain=MS,
            epsilon=spec.rms_eps,
        )  # fmt: skip
        mlp = layer.mlp
        wgu = torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight], 0)
        gu = _linear(g, x, f"{p}.mlp.gate_up_proj", wgu, [mlp.gate_proj, mlp.up_proj], plan, accuracy_level)
        gate, up = g.op(
            "Split", [gu, g.const([spec.intermediate, spec.intermediate])], 2, name=f"{p}/mlp/Split", axis=-1
        )
        act = g.op1("Mul", [gate, g.op1("Sigmoid", [gate], name=f"{p}/mlp/Sigmoid")], name=f"{p}/mlp/SiLU")
        prod = g.op1("Mul", [act, up], name=f"{p}/mlp/Mul")
        d = _linear(g, prod, f"{p}.mlp.down_proj", mlp.down_proj.weight, [mlp.down_proj], plan, accuracy_level)
        last = i == spec.layers - 1
        nw = m.norm.weight if last else layers[i + 1].input_layernorm.weight
        nname = "model.norm.weight" if last else f"model.layers.{i + 1}.input_layernorm.weight"
        x, _, _, res = g.op(
            "SkipSimplifiedLayerNormalization", [d, res, g.init(nname, _np(nw))], 4, name=f"{p}/next_norm",
            domain=MS, epsilon=spec.rms_eps,
        )  # fmt: skip

    # Positions whose logits are computed: Slice(x, start, end) on the sequence axis (default: all).
    g.init(LOGITS_RANGE, np.array([0, ALL_POSITIONS], np.int64))
    start, end = g.op("Split", [LOGITS_RANGE, g.const([1, 1])], 2, name="keep/Split", axis=0)
    x = g.op1("Slice", [x, start, end, g.const([1])], name="keep/Slice")
    head = model.get_output_embeddings()
    float_embed = f"{EMBED}.weight" in {t.name for t in g.inits}
    # a plan may ask for an untied float lm_head (e.g. for ORT's int8 quantizer, which needs a constant B)
    tied = head.weight is m.embed_tokens.weight and float_embed and getattr(plan, "keep_tied", True)

    def head_plan(name: str, w: torch.Tensor, sources: list) -> NBitsWeight | None:
        packed = plan(name, w, sources)
        return _TIED if packed is None and tied else packed

    # untied into its own initializer, so MatMulNBits covers it like any other projection
    logits = _linear(g, x, "lm_head", head.weight, [head], head_plan, accuracy_level)
    g.nodes.append(helper.make_node("Identity", [logits], ["logits"], name="logits"))

    graph = helper.make_graph(g.nodes, "slimserve_decoder", inputs, outputs, initializer=g.inits)
    graph.input.append(helper.make_tensor_value_info(LOGITS_RANGE, i64, [2]))
    model_proto = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS, 1)], producer_name="slimserve"
    )
    model_proto.ir_version = 10
    return model_proto


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
