"""Tiny random Llama models for tests and examples: built from a config in seconds, offline."""

from __future__ import annotations

from pathlib import Path

FALLBACK_TEXT = (
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, "
    "must be in want of a wife. However little known the feelings or views of such a man may be "
    "on his first entering a neighbourhood, this truth is so well fixed in the minds of the "
    "surrounding families, that he is considered the rightful property of some one or other of "
    "their daughters. "
) * 20


def tiny_tokenizer(vocab_size: int = 320):
    """A byte-level BPE tokenizer trained on a little English text, with ChatML-style specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    try:
        from .data import read_text

        text = read_text()[:60_000]
    except Exception:  # the default text is an optional package; a fixed paragraph also works
        text = FALLBACK_TEXT
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator([text[i : i + 2000] for i in range(0, len(text), 2000)], trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>",
        pad_token="<|im_end|>",
    )


def tiny_llama_config(vocab_size: int, **overrides):
    from transformers import LlamaConfig

    kw = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    kw.update(overrides)
    return LlamaConfig(**kw)


def tiny_llama(seed: int = 0, vocab_size: int = 256, **config_overrides):
    """A random tiny LlamaForCausalLM in memory (eval mode), the same for the same seed and config."""
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(tiny_llama_config(vocab_size, **config_overrides)).eval()


def make_tiny_llama(out: str | Path, seed: int = 0, **config_overrides) -> Path:
    """Save a random tiny Llama (fp32 safetensors) and its tokenizer into `out`."""
    out = Path(out)
    tok = tiny_tokenizer()
    model = tiny_llama(seed, len(tok), **config_overrides)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out
