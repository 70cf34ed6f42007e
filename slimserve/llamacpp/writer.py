"""A Hugging Face Llama checkpoint -> one GGUF file, with numpy and the `gguf` package (no llama.cpp needed).

Tensor names, the q/k row order and the metadata keys are llama.cpp's (as its convert_hf_to_gguf.py writes them):
HF Llama applies rotary embeddings to the two halves of each head, llama.cpp to interleaved pairs, so the q and k
projections are permuted per head. The tokenizer keys are copied from the source GGUF when the base came from one (the
token ids then match llama.cpp's exactly), else built from a byte-level BPE tokenizer.json.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError

SUPPORTED_ARCHS = ("llama",)  # HF model_type -> GGUF general.architecture (same name)

# HF Llama per-layer tensors -> llama.cpp's names.
LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
FILE_TYPE = {  # general.file_type (llama_ftype) of each type name
    "F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9, "BF16": 32,
}  # fmt: skip


@dataclass
class GgufTensor:
    name: str
    data: np.ndarray  # float32, numpy (rows, cols) = GGUF ne [cols, rows]
    role: str  # "norm" | "embedding" | "output" | "weight"


def permute_heads(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF's half-split rotary row order -> llama.cpp's interleaved one (convert_hf_to_gguf's LlamaModel.permute)."""
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute_heads(w: np.ndarray, n_head: int) -> np.ndarray:
    """The inverse of permute_heads (for tests and read-back)."""
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def check_config(config: Any) -> None:
    """UserError for what this writer cannot express (another architecture, biases, rope scaling)."""
    arch = getattr(config, "model_type", None)
    if arch not in SUPPORTED_ARCHS:
        raise UserError(f"the GGUF export supports architectures {', '.join(SUPPORTED_ARCHS)}, not '{arch}'")
    for flag in ("attention_bias", "mlp_bias"):
        if getattr(config, flag, False):
            raise UserError(f"the GGUF export does not write Llama biases ({flag}: true)")
    if getattr(config, "rope_scaling", None):
        raise UserError(f"the GGUF export does not write rope_scaling ({config.rope_scaling})")


def llama_tensors(state: dict[str, np.ndarray], config: Any) -> Iterator[GgufTensor]:
    """GGUF tensors of a Llama state dict (float32 numpy arrays keyed by HF names)."""
    tied = getattr(config, "tie_word_embeddings", False) or "lm_head.weight" not in state
    yield GgufTensor("token_embd.weight", state["model.embed_tokens.weight"], "output" if tied else "embedding")
    for i in range(config.num_hidden_layers):
        for hf, gg in LAYER_NAMES.items():
            w = state[f"model.layers.{i}.{hf}"]
            if hf == "self_attn.q_proj.weight":
                w = permute_heads(w, config.num_attention_heads)
            elif hf == "self_attn.k_proj.weight":
                w = permute_heads(w, config.num_key_value_heads)
            yield GgufTensor(f"blk.{i}.{gg}", w, "norm" if w.ndim == 1 else "weight")
    yield GgufTensor("output_norm.weight", state["model.norm.weight"], "norm")
    if not tied:
        yield GgufTensor("output.weight", state["lm_head.weight"], "output")


def tensor_type(t: GgufTensor, type_name: str) -> tuple[str, str | None]:
    """(GGUF type of this tensor, why it differs from type_name or None): llama.cpp's choices for these types."""
    if t.role == "norm" or t.data.ndim == 1:
        return "F32", None  # as in every llama.cpp file
    if type_name in ("F32", "F16", "BF16", "Q8_0"):
        chosen = type_name
    elif t.role == "output":
        chosen = "Q8_0"  # llama-quantize: Q8_0 where the row is not a multiple of 256, else Q6_K (not in gguf-py)
    else:
        chosen = type_name
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    block = GGML_QUANT_SIZES[GGMLQuantizationType[chosen]][0]
    if t.data.shape[-1] % block:
        return "F16", f"rows of {t.data.shape[-1]} are not a multiple of {chosen}'s block of {block}"
    why = "the output projection is Q8_0 (llama.cpp's choice for Q4/Q5 types)" if chosen != type_name else None
    return chosen, why


def hparams(config: Any) -> dict[str, Any]:
    """llama.* metadata from a transformers LlamaConfig."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    out = {
        "context_length": int(config.max_position_embeddings),
        "embedding_length": int(config.hidden_size),
        "block_count": int(config.num_hidden_layers),
        "feed_forward_length": int(config.intermediate_size),
        "attention.head_count": int(config.num_attention_heads),
        "attention.head_count_kv": int(config.num_key_value_heads),
        "rope.freq_base": float(getattr(config, "rope_theta", 10000.0)),
        "attention.layer_norm_rms_epsilon": float(config.rms_norm_eps),
        "rope.dimension_count": int(head_dim),
        "vocab_size": int(config.vocab_size),
    }
    if head_dim != config.hidden_size // config.num_attention_heads:
        out["attention.key_length"] = out["attention.value_length"] = int(head_dim)
    return out


# ---------------------------------------------------------------- tokenizer keys


def tokenizer_fields_from_gguf(path: Path) -> list[tuple[str, Any, Any, Any]]:
    """(key, value, value type, array item type) of every tokenizer.* key of a GGUF file."""
    from gguf import GGUFReader, GGUFValueType

    out = []
    for key, f in GGUFReader(path).fields.items():
        if not key.startswith("tokenizer."):
            continue
        vtype = f.types[0]
        sub = f.types[-1] if vtype == GGUFValueType.ARRAY else None
        out.append((key, f.contents(), vtype, sub))
    return out


def tokenizer_fields_from_hf(tokenizer: Any) -> list[tuple[str, Any, Any, Any]]:
    """tokenizer.* keys for a byte-level BPE tokenizer (GPT-2 style, llama.cpp's "gpt2" model)."""
    from gguf import GGUFValueType as V

    spec = json.loads(tokenizer.backend_tokenizer.to_str()) if hasattr(tokenizer, "backend_tokenizer") else {}
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or "ByteLevel" not in json.dumps(spec.get("pre_tokenizer")):
        raise UserError(
            "the GGUF export builds a vocabulary only for byte-level BPE tokenizers (GPT-2 style); this one is "
            f"{model.get('type', type(tokenizer).__name__)}",
            hint="start from a .gguf base (its tokenizer is copied), or export with llama.cpp's convert_hf_to_gguf.py",
        )
    vocab = tokenizer.get_vocab()
    size = max(max(vocab.values()) + 1, len(vocab))
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [5] * size  # unused
    for tok, i in vocab.items():
        tokens[i], types[i] = tok, 1  # normal
    special = set(tokenizer.all_special_ids)
    for i, added in tokenizer.added_tokens_decoder.items():
        types[i] = 3 if (added.special or i in special) else 4  # control | user defined
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    fields = [
        ("tokenizer.ggml.model", "gpt2", V.STRING, None),
        ("tokenizer.ggml.pre", "default", V.STRING, None),
        ("tokenizer.ggml.tokens", tokens, V.ARRAY, V.STRING),
        ("tokenizer.ggml.token_type", types, V.ARRAY, V.INT32),
        ("tokenizer.ggml.merges", merges, V.ARRAY, V.STRING),
        ("tokenizer.ggml.add_bos_token", bool(getattr(tokenizer, "add_bos_token", False)), V.BOOL, None),
    ]
    for name in ("bos", "eos", "unk", "pad"):
        tid = getattr(tokenizer, f"{name}_token_id", None)
        if tid is not None:
            key = "unknown" if name == "unk" else ("padding" if name == "pad" else name)
            fields.append((f"tokenizer.ggml.{key}_token_id", int(tid), V.UINT32, None))
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, str):
        fields.append(("tokenizer.chat_template", template, V.STRING, None))
    return fields


# ---------------------------------------------------------------- the file


def write_gguf(
    path: Path,
    tensors: list[GgufTensor],
    type_name: str,
    params: dict[str, Any],
    tokenizer_fields: list[tuple[str, Any, Any, Any]],
    *,
    arch: str = "llama",
    name: str | None = None,
    progress=None,  # noqa: ANN001  (callable(i, n, tensor name) or None)
) -> dict[str, Any]:
    """Round every tensor (gguf.quants, numpy) and write the file. Returns {tensor types: count, deviations}."""
    from gguf import GGMLQuantizationType, GGUFWriter, quants

    w = GGUFWriter(str(path), arch)
    w.add_type("model")
    if name:
        w.add_name(name)
    w.add_quantized_by("slimserve")
    for key, val in params.items():
        _add_scalar(w, f"{arch}.{key}", val)
    w.add_file_type(FILE_TYPE[type_name])
    w.add_quantization_version(2)
    for key, val, vtype, sub in tokenizer_fields:
        w.add_key_value(key, val, vtype, sub_type=sub)
    counts: dict[str, int] = {}
    deviations: dict[str, list[str]] = {}
    for i, t in enumerate(tensors):
        if progress:
            progress(i, len(tensors), t.name)
        chosen, why = tensor_type(t, type_name)
        qtype = GGMLQuantizationType[chosen]
        data = np.ascontiguousarray(t.data, dtype=np.float32)
        if chosen == "F32":
            w.add_tensor(t.name, data)
        else:
            w.add_tensor(t.name, quants.quantize(data, qtype), raw_dtype=qtype)
        counts[chosen] = counts.get(chosen, 0) + 1
        if why:
            deviations.setdefault(why, []).append(t.name)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return {"tensor_types": dict(sorted(counts.items())), "deviations": deviations}


def _add_scalar(w, key: str, val: Any) -> None:  # noqa: ANN001
    if isinstance(val, bool):
        w.add_bool(key, val)
    elif isinstance(val, int):
        w.add_uint32(key, val)
    elif isinstance(val, float):
        w.add_float32(key, val)
    else:
        w.add_string(key, str(val))


def read_types(path: Path) -> dict[str, str]:
    """{tensor name: GGUF type name} of a GGUF file."""
    from gguf import GGUFReader

    return {t.name: t.tensor_type.name for t in GGUFReader(path).tensors}
