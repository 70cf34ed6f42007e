"""Generate text from a catalog variant: one prompt (`generate`) or a conversation read line by line (`chat`).

The variant's manifest picks the decode loop: PyTorch formats (hf, compressed-tensors, bitsandbytes, and ONNX
graphs exported for optimum) run Hugging Face ``generate()``; fused ONNX graphs run slimserve's OrtRunner and
"onnx-static" variants its StaticRunner. Text is streamed as it is decoded, never splitting a multi-byte character.

>>> import slimserve
>>> slimserve.generate("smollm2-int8", "Name three rivers.", max_new_tokens=64)  # doctest: +SKIP
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .artifact.manifest import Manifest
from .errors import UserError
from .registry import Registry

DEFAULT_MAX_NEW_TOKENS = 256
CHAT_END = "<|im_end|>"  # ChatML's end of turn; SmolLM2 and Qwen stop there rather than at eos
CHAT_ENDS = (CHAT_END, "<end_of_turn>")  # ... and Gemma's
EXIT_COMMANDS = ("/exit", "/quit")


@dataclass(frozen=True)
class Sampling:
    """How to pick tokens: greedy when temperature is 0, else temperature + nucleus (top_p) sampling."""

    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise UserError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}", field="max_new_tokens")
        if self.temperature < 0:
            raise UserError(f"temperature must be >= 0, got {self.temperature}", field="temperature")
        if not 0 < self.top_p <= 1:
            raise UserError(f"top_p must be in (0, 1], got {self.top_p}", field="top_p")

    @property
    def do_sample(self) -> bool:
        return self.temperature > 0


class _Stop(Exception):
    """Raised from a runner's on_token callback to end the decode at a stop token."""


# --- decode loops, one per runtime: fn(path, manifest, device) -> Engine -------------------------------------------


class Engine:
    """A loaded variant that turns prompt ids into new token ids, calling on_token for each as it is picked."""

    tokenizer: Any

    def stop_ids(self) -> set[int]:
        return set()

    def decode(self, ids: list[int], s: Sampling, stop: set[int], on_token: Callable[[int], None]) -> list[int]:
        raise NotImplementedError


class _TokenStreamer:
    """transformers streamer protocol: put() first gets the prompt, then each new token; end() at the end."""

    def __init__(self, on_token: Callable[[int], None]):
        self.on_token, self.prompt_seen = on_token, False

    def put(self, value) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        for t in value.flatten().tolist():
            self.on_token(int(t))

    def end(self) -> None:
        pass


class TorchEngine(Engine):
    """Hugging Face generate() on a model from slimserve.loaders (and optimum's ORTModelForCausalLM)."""

    def __init__(self, path: Path, manifest: dict, device: str):
        from .artifact.loaders import load_variant

        self.model, self.tokenizer, _ = load_variant(path, device, verify=False)  # open_engine verified it
        self.device = device

    def stop_ids(self) -> set[int]:
        eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        return set(eos if isinstance(eos, (list, tuple)) else [] if eos is None else [eos])

    def decode(self, ids: list[int], s: Sampling, stop: set[int], on_token: Callable[[int], None]) -> list[int]:
        import torch

        input_ids = torch.tensor([ids], device=self.device)
        if s.do_sample:
            # top_k=None: nucleus only, as the ONNX loops sample
            pick = {"do_sample": True, "temperature": s.temperature, "top_p": s.top_p, "top_k": None}
        else:  # None, not 1.0: the model's own sampling defaults would make transformers warn about greedy search
            pick = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        if s.seed is not None:
            torch.manual_seed(s.seed)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(stop, default=0)
        out = self.model.generate(
            input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=s.max_new_tokens,
            eos_token_id=sorted(stop) or None,
            pad_token_id=pad,
            streamer=_TokenStreamer(on_token),
            **pick,
        )
        return out[0, len(ids) :].tolist()


class _RunnerEngine(Engine):
    """Shared decode for slimserve's ONNX runners: generate(..., on_token=...) with stop tokens ending it."""

    runner: Any

    def decode(self, ids: list[int], s: Sampling, stop: set[int], on_token: Callable[[int], None]) -> list[int]:
        import torch

        out: list[int] = []

        def step(tokens) -> None:
            t = int(tokens[0])
            out.append(t)
            on_token(t)
            if t in stop:
                raise _Stop

        kw = {"do_sample": s.do_sample, "temperature": s.temperature, "top_p": s.top_p, "seed": s.seed}
        try:
            self.runner.generate(torch.tensor([ids]), self.max_new(len(ids), s.max_new_tokens), on_token=step, **kw)
        except _Stop:
            pass
        return out

    def max_new(self, prompt_len: int, wanted: int) -> int:
        return wanted


class OrtEngine(_RunnerEngine):
    """A fused ONNX graph on OrtRunner (IO binding, in-place KV cache)."""

    def __init__(self, path: Path, manifest: dict, device: str):
        from transformers import AutoTokenizer

        from .onnx.runtime import OrtRunner

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        model_file = Manifest.of(manifest).model_file
        self.runner = OrtRunner(Path(path) / model_file, self.tokenizer, device=device)


class StaticEngine(_RunnerEngine):
    """An "onnx-static" variant on StaticRunner: prompt + new tokens must fit one of its (batch, sequence) buckets."""

    def __init__(self, path: Path, manifest: dict, device: str):
        from transformers import AutoTokenizer

        from .onnx.static import StaticRunner

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.runner = StaticRunner(Path(path), self.tokenizer, device=device)

    def max_new(self, prompt_len: int, wanted: int) -> int:
        room = max(bk["sequence"] for bk in self.runner.buckets) - prompt_len
        if 0 < room < wanted:
            print(
                f"note: max_new_tokens lowered from {wanted} to {room}: the largest static bucket holds "
                f"{room + prompt_len} positions and the prompt takes {prompt_len}",
                file=sys.stderr,
            )
            return room
        return wanted  # no room at all: StaticRunner's own error lists the buckets


ENGINES: Registry[Callable[[Path, dict, str], Engine]] = Registry("decode loop")
ENGINES.add("torch", TorchEngine)
ENGINES.add("onnx-fused", OrtEngine)
ENGINES.add("onnx-static", StaticEngine)


def engine_kind(manifest: dict) -> str:
    """Which decode loop runs a variant, from its manifest (never its directory name)."""
    m = Manifest.of(manifest)
    if m.format == "onnx-static":
        return "onnx-static"
    if m.format == "onnx" and m.graph == "fused":
        return "onnx-fused"
    return "torch"  # hf, compressed-tensors, bitsandbytes, and optimum-graph ONNX through slimserve.artifact.loaders


def open_engine(variant: str, *, catalog: str | Path | None = None, device: str = "cpu", verify: bool = True) -> Engine:
    """Load a catalog variant for generation; UserError listing the variants if there is no such name.

    The variant's files are checked first (`verify=False` skips only the sha256 check)."""
    from .artifact.verify import verify_variant
    from .catalog import Catalog

    row = Catalog.open(catalog, create=False).get(variant)
    verify_variant(row.path, row.manifest, verify=verify)
    return ENGINES.get(engine_kind(row.manifest))(row.path, row.manifest, device)


# --- prompts and streamed text --------------------------------------------------------------------------------------


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def prompt_ids(tokenizer, messages: Sequence[dict], *, chat: bool = True) -> list[int]:
    """Token ids of a conversation: the tokenizer's chat template, or (chat=False / no template) the raw text."""
    if chat and has_chat_template(tokenizer):
        ids = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True)
        return list(ids["input_ids"] if isinstance(ids, dict) else ids)
    return list(tokenizer("\n".join(m["content"] for m in messages)).input_ids)


def stop_ids(tokenizer, engine: Engine, *, chat: bool) -> set[int]:
    """The tokenizer's eos, the model's own eos ids, and the chat format's end of turn (ChatML, Gemma) in chat mode."""
    stop = set(engine.stop_ids())
    if tokenizer.eos_token_id is not None:
        stop.add(int(tokenizer.eos_token_id))
    vocab = tokenizer.get_vocab() if chat else {}
    stop.update(int(vocab[end]) for end in CHAT_ENDS if end in vocab)
    return stop


class TextStream:
    """Turns new token ids into text pieces; holds back a piece that ends inside a multi-byte character."""

    def __init__(self, tokenizer, emit: Callable[[str], None] | None, stop: set[int]):
        self.tokenizer, self.emit, self.stop = tokenizer, emit, stop
        self.ids: list[int] = []
        self.sent = 0
        self.stopped = False

    def push(self, token: int) -> None:
        if self.stopped or token in self.stop:
            self.stopped = True
            return
        self.ids.append(token)
        text = self.text()
        if not text.endswith("\ufffd"):  # U+FFFD: the bytes so far end mid-character; wait for the rest
            self._send(text)

    def text(self) -> str:
        return self.tokenizer.decode(self.ids, skip_special_tokens=True)

    def close(self) -> str:
        text = self.text()
        self._send(text)
        return text

    def _send(self, text: str) -> None:
        piece = text[self.sent :]
        if piece and self.emit is not None:
            self.emit(piece)
        self.sent = max(self.sent, len(text))


def reply(engine: Engine, messages: Sequence[dict], s: Sampling, *, chat: bool = True, stream=None) -> str:
    """The model's next turn after `messages`, streamed piece by piece to `stream` (a str callback) if given."""
    tok = engine.tokenizer
    stop = stop_ids(tok, engine, chat=chat)
    text = TextStream(tok, stream, stop)
    engine.decode(prompt_ids(tok, messages, chat=chat), s, stop, text.push)
    return text.close()


def _note_no_template(engine: Engine, chat: bool) -> None:
    if chat and not has_chat_template(engine.tokenizer):
        print("note: the tokenizer has no chat template; sending the raw text", file=sys.stderr)


# --- the API --------------------------------------------------------------------------------------------------------


def generate(
    variant: str,
    prompt: str,
    *,
    catalog: str | Path | None = None,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = None,
    chat: bool = True,
    stream: Callable[[str], None] | None = None,
    device: str = "cpu",
    verify: bool = True,
) -> str:
    """Text a catalog variant writes after `prompt` (greedy unless temperature > 0).

    chat: wrap the prompt in the tokenizer's chat template as one user turn (False: continue the raw text).
    stream: called with each new piece of text as soon as it is decoded. Stops at eos, ChatML's <|im_end|> in
    chat mode, or after max_new_tokens.
    """
    s = Sampling(max_new_tokens, temperature, top_p, seed)
    engine = open_engine(variant, catalog=catalog, device=device, verify=verify)
    _note_no_template(engine, chat)
    return reply(engine, [{"role": "user", "content": prompt}], s, chat=chat, stream=stream)


def chat(
    variant: str,
    *,
    catalog: str | Path | None = None,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = None,
    chat: bool = True,
    device: str = "cpu",
    verify: bool = True,
    stdin: IO[str] | None = None,
    stdout: IO[str] | None = None,
) -> list[dict]:
    """A conversation: one user turn per line of `stdin` until EOF or /exit; returns the messages.

    Each reply streams to `stdout` and joins the history, so every turn sees the ones before it.
    /reset forgets the history. A turn that fails (e.g. the context no longer fits) is reported and skipped.
    """
    s = Sampling(max_new_tokens, temperature, top_p, seed)
    inp, out = stdin or sys.stdin, stdout or sys.stdout
    engine = open_engine(variant, catalog=catalog, device=device, verify=verify)
    _note_no_template(engine, chat)
    interactive = inp.isatty()
    if interactive:
        out.write(f"chatting with {variant}: one message per line; /reset clears the history, /exit or Ctrl-D ends\n")
    history: list[dict] = []
    while True:
        if interactive:
            out.write(">>> ")
            out.flush()
        line = inp.readline()
        if not line or line.strip() in EXIT_COMMANDS:
            break
        text = line.rstrip("\r\n")
        if text.strip() == "/reset":
            history.clear()
            continue
        if not text.strip():
            continue
        turn = [*history, {"role": "user", "content": text}]
        try:
            answer = reply(engine, turn, s, chat=chat, stream=lambda p: (out.write(p), out.flush()))
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            continue
        out.write("\n")
        out.flush()
        history = [*turn, {"role": "assistant", "content": answer}]
    return history


class _CallableModule(types.ModuleType):
    """Lets the module itself be called: slimserve.generate("smollm2-int8", "Hi") (same as generate.generate)."""

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        return generate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
