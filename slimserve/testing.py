"""Tiny random Llama and Gemma 3 models for tests and examples: built from a config in seconds, offline."""

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
    """Save a random tiny Llama (fp32 safetensors) and its tokenizer into `out` (vocab_size: at least the tokenizer's)."""
    out = Path(out)
    tok = tiny_tokenizer()
    model = tiny_llama(seed, max(len(tok), config_overrides.pop("vocab_size", 0)), **config_overrides)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def write_tiny_spm_gguf(path: str | Path, text: str = FALLBACK_TEXT, merges: int = 200) -> Path:
    """A GGUF holding only a Gemma-style SentencePiece-BPE vocabulary (no tensors), trained on `text`.

    Piece ids follow Gemma's layout: pad, eos, bos, unk, the turn markers, "\\n", 256 byte pieces, then characters
    and merged pieces whose score falls with their merge rank, as in a real tokenizer.model.
    """
    from collections import Counter

    import gguf

    specials = [("<pad>", 3), ("<eos>", 3), ("<bos>", 3), ("<unk>", 2), ("<start_of_turn>", 3), ("<end_of_turn>", 3)]
    pieces = [(t, k, 0.0) for t, k in specials] + [("\n", 4, 0.0)]
    pieces += [(f"<0x{b:02X}>", 6, 0.0) for b in range(256)]
    words = [list(w) for w in text.replace(" ", " ▁").split(" ") if w]
    chars = sorted({c for w in words for c in w})
    pieces += [(c, 1, -float(i)) for i, c in enumerate(chars)]
    for rank in range(merges):  # greedy BPE training: merge the most frequent adjacent pair
        pairs = Counter((a, b) for w in words for a, b in zip(w, w[1:], strict=False))
        if not pairs:
            break
        (a, b), _ = pairs.most_common(1)[0]
        pieces.append((a + b, 1, -float(len(chars) + rank)))
        for w in words:
            i = 0
            while i < len(w) - 1:
                if w[i] == a and w[i + 1] == b:
                    w[i : i + 2] = [a + b]
                i += 1
    path = Path(path)
    w = gguf.GGUFWriter(str(path), "gemma3")
    w.add_tokenizer_model("llama")
    w.add_token_list([p[0] for p in pieces])
    w.add_token_scores([p[2] for p in pieces])
    w.add_token_types([p[1] for p in pieces])
    w.add_bos_token_id(2)
    w.add_eos_token_id(1)
    w.add_unk_token_id(3)
    w.add_pad_token_id(0)
    w.add_add_bos_token(True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def tiny_gemma3_config(vocab_size: int, **overrides):
    """Two layers, one sliding-window (window 8, local rope) and one global, as Gemma 3 alternates them."""
    from transformers import Gemma3TextConfig

    kw = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=16,
        query_pre_attn_scalar=16,
        sliding_window=8,
        layer_types=["sliding_attention", "full_attention"],
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )
    kw.update(overrides)
    return Gemma3TextConfig(**kw)


def tiny_gemma3(seed: int = 0, vocab_size: int = 300, norm_std: float = 0.3, **config_overrides):
    """A random tiny Gemma3ForCausalLM in memory (eval mode), its norm weights drawn from N(0, norm_std).

    Gemma norms are (1 + w) with w initialised to 0: the spread tests that. norm_std 1.0 also keeps greedy decoding
    of the tied model from repeating one token (the token's own embedding dominates its logits otherwise).
    """
    import torch
    from transformers import Gemma3ForCausalLM

    torch.manual_seed(seed)
    model = Gemma3ForCausalLM(tiny_gemma3_config(vocab_size, **config_overrides)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.normal_(0, norm_std)
    return model


def make_tiny_gemma3(out: str | Path, seed: int = 0, **config_overrides) -> Path:
    """Save a random tiny Gemma 3 (fp32 safetensors) with a Gemma tokenizer converted from a tiny GGUF vocabulary."""
    import tempfile

    from .gguf_tokenizer import end_of_turn_id, gguf_gemma_tokenizer

    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        tok = gguf_gemma_tokenizer(write_tiny_spm_gguf(Path(tmp) / "vocab.gguf"))
    model = tiny_gemma3(seed, len(tok), **config_overrides)
    model.generation_config.eos_token_id = [tok.eos_token_id, end_of_turn_id(tok)]
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out
