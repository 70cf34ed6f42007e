"""A Hugging Face tokenizer from a GGUF's SentencePiece-BPE vocabulary (Gemma 3), as llama.cpp tokenizes it.

transformers 4.57 converts a gemma3 GGUF vocabulary to a *Unigram* model scored by the GGUF's BPE merge ranks: long
pieces get the most negative scores, so "Hello world" comes out as `He llo ▁w or ld` and the model reads noise. Here
the vocabulary becomes the BPE model it is (merges ordered by piece score, as transformers' GemmaConverter does from
a tokenizer.model), control pieces are special added tokens and user-defined pieces ("\\n", runs of spaces) plain
added tokens. The GGUF carries no chat template, so Gemma's own turn format is set, and `<end_of_turn>` ends a turn.
"""

from __future__ import annotations

from pathlib import Path

# Gemma's chat format (text only): the system prompt is folded into the first user turn; "assistant" is "model".
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{%- endif -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)
END_OF_TURN = "<end_of_turn>"
_CONTROL, _USER_DEFINED = 3, 4  # SentencePiece piece types, as the GGUF stores them


def read_spm_vocab(gguf: Path) -> dict:
    """tokens, scores, types and special ids of a GGUF's tokenizer."""
    from gguf import GGUFReader

    fields = GGUFReader(gguf).fields

    def array(key):
        f = fields[key]
        return [f.parts[i] for i in f.data]

    def scalar(key):
        f = fields.get(key)
        return None if f is None or not f.data else f.parts[f.data[0]].tolist()[0]

    return {
        "model": bytes(fields["tokenizer.ggml.model"].parts[-1]).decode(),
        "tokens": [bytes(p).decode("utf-8") for p in array("tokenizer.ggml.tokens")],
        "scores": [float(p[0]) for p in array("tokenizer.ggml.scores")],
        "types": [int(p[0]) for p in array("tokenizer.ggml.token_type")],
        **{k: scalar(f"tokenizer.ggml.{k}_token_id") for k in ("bos", "eos", "unknown", "padding")},
        "add_bos": scalar("tokenizer.ggml.add_bos_token"),
    }


def bpe_merges(tokens: list[str], scores: list[float], types: list[int]) -> list[tuple[str, str]]:
    """Every split (left, right) of a normal piece into two vocabulary pieces, highest-scoring merged piece first.

    SentencePiece-BPE (and llama.cpp's SPM tokenizer) merges the adjacent pair whose concatenation scores highest;
    a BPE whose merges are ranked by that score picks the same pairs. Specials and bytes are never merge results.
    """
    vocab = {t: i for i, t in enumerate(tokens)}
    ranked = []
    for i, piece in enumerate(tokens):
        if types[i] != 1 or len(piece) < 2:
            continue
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in vocab and right in vocab:
                ranked.append((-scores[i], vocab[left], vocab[right], left, right))
    ranked.sort()
    return [(left, right) for *_, left, right in ranked]


def gguf_gemma_tokenizer(gguf: Path):
    """GemmaTokenizerFast for a gemma3 GGUF: BPE with byte fallback, BOS prepended, Gemma's chat template."""
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import BPE
    from transformers import GemmaTokenizerFast

    v = read_spm_vocab(gguf)
    if v["model"] != "llama":  # llama.cpp's name for SentencePiece
        raise ValueError(f"expected a SentencePiece ('llama') GGUF tokenizer, got '{v['model']}'")
    tokens, types = v["tokens"], v["types"]
    unk = tokens[v["unknown"] if v["unknown"] is not None else 3]
    model = BPE(
        {t: i for i, t in enumerate(tokens)},
        bpe_merges(tokens, v["scores"], types),
        unk_token=unk,
        fuse_unk=True,
        byte_fallback=True,
        dropout=None,
    )
    tok = Tokenizer(model)
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = pre_tokenizers.Split(" ", "merged_with_previous")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.add_tokens(
        [
            AddedToken(t, normalized=False, special=types[i] == _CONTROL or t == END_OF_TURN or t == "<start_of_turn>")
            for i, t in enumerate(tokens)
            if types[i] in (_CONTROL, _USER_DEFINED)
        ]
    )

    def name(key, default):
        return tokens[v[key]] if v[key] is not None else default

    hf = GemmaTokenizerFast(
        tokenizer_object=tok,
        bos_token=name("bos", "<bos>"),
        eos_token=name("eos", "<eos>"),
        unk_token=unk,
        pad_token=name("padding", "<pad>"),
        add_bos_token=True if v["add_bos"] is None else bool(v["add_bos"]),
        add_eos_token=False,
    )
    hf.chat_template = GEMMA_CHAT_TEMPLATE
    return hf


def end_of_turn_id(tokenizer) -> int | None:
    ids = tokenizer.convert_tokens_to_ids([END_OF_TURN])
    return ids[0] if ids and ids[0] != tokenizer.unk_token_id else None
