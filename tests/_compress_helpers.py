"""Tiny random Llama models, a byte tokenizer and a step context for the GPTQ/AWQ/pruning tests."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from slimserve.steps import StepContext


def tiny_llama(
    seed: int = 0, *, heads: int = 8, kv_heads: int = 4, hidden: int = 64, inter: int = 128, layers: int = 2
):
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=256,
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=hidden // heads,
        max_position_embeddings=256,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(cfg).eval()


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
