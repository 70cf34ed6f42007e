"""Tiny random Llama models, a byte tokenizer and a step context for the GPTQ/AWQ/pruning tests."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch

from slimserve import testing
from slimserve.steps import StepContext


def tiny_llama(
    seed: int = 0, *, heads: int = 8, kv_heads: int = 4, hidden: int = 64, inter: int = 128, layers: int = 2
):
    """slimserve.testing's tiny Llama with 8 query / 4 key-value heads (the compression tests' shapes)."""
    return testing.tiny_llama(
        seed, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers, num_attention_heads=heads,
        num_key_value_heads=kv_heads, head_dim=hidden // heads, max_position_embeddings=256, pad_token_id=None,
    )  # fmt: skip


class ByteTokenizer:
    """Enough of a tokenizer for calibration_batches: one token per UTF-8 byte."""

    def __call__(self, text, add_special_tokens=False, return_tensors="pt"):
        ids = torch.tensor([list(text.encode("utf-8"))], dtype=torch.long)
        return SimpleNamespace(input_ids=ids)


def write_text(tmp_path: Path, n_chars: int = 20000) -> Path:
    torch.manual_seed(1)
    words = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "and", "runs", "far", "away"]
    idx = torch.randint(0, len(words), (n_chars // 4,))
    text = " ".join(words[i] for i in idx)[:n_chars]
    p = tmp_path / "calib.txt"
    p.write_text(text)
    return p


def context(tmp_path: Path) -> StepContext:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return StepContext(
        base_dir=tmp_path / "base", work_dir=work, tokenizer=ByteTokenizer(), field="variants[0].steps[0]"
    )


def calib(text: Path, samples: int = 8, seq_len: int = 64) -> dict:
    return {"text": str(text), "samples": samples, "seq_len": seq_len, "batch_size": 4}
