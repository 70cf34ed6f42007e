"""Tiny random Llama models for the ONNX tests (in memory, seconds)."""

from __future__ import annotations

import torch


def tiny_model(seed: int = 0, **overrides):
    """A 2-layer GQA Llama with tied embeddings; initializer_range 0.2 so greedy decoding does not collapse."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    kw = dict(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True, initializer_range=0.2,
        eos_token_id=2, pad_token_id=2,
    )  # fmt: skip
    kw.update(overrides)
    return LlamaForCausalLM(LlamaConfig(**kw)).eval()


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def hf_greedy(model, ids: torch.Tensor, n: int) -> torch.Tensor:
    out = model.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=2
    )
    return out[:, ids.shape[1] :]
