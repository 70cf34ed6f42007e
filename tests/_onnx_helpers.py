"""Tiny random Llama models for the ONNX tests (in memory, seconds)."""

from __future__ import annotations

import torch


def tiny_model(seed: int = 0, **overrides):
    """slimserve.testing's tiny Llama with initializer_range 0.2, so greedy decoding does not collapse."""
    from slimserve.testing import tiny_llama

    return tiny_llama(seed, **{"max_position_embeddings": 256, "initializer_range": 0.2, **overrides})


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def hf_greedy(model, ids: torch.Tensor, n: int) -> torch.Tensor:
    out = model.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=2
    )
    return out[:, ids.shape[1] :]
