"""Engines: one decode loop per runtime, as the scheduler drives it. Tokens and sampling settings in, tokens out.

An engine holds up to ``slots`` sequences. ``add`` prefills one and returns its first token, ``step`` advances every
active sequence by one token, ``remove`` frees one. Nothing here knows about HTTP, text or stop strings.

- ``OnnxBatchEngine``: a fused ONNX graph on ``onnx.batch.RowBatch`` (continuous batching, per-row lengths).
- ``TorchEngine``: PyTorch forward with a DynamicCache per sequence, one at a time (CPU, or CUDA when present).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import UserError
from ..registry import Registry


@dataclass(frozen=True)
class SamplingParams:
    """Per-sequence sampling: greedy when temperature is 0, else temperature + nucleus; seed makes it repeatable."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    logprobs: bool = False  # the engine keeps each picked token's log-prob (read with `logprob(key)`)


class Engine(Protocol):
    target: str  # the benchmark target it runs as ("onnx-cpu", "cpu", "cuda")
    slots: int  # sequences it holds at once
    context_length: int  # prompt + new tokens per sequence
    tokenizer: Any
    eos_ids: set[int]

    def add(self, key: Hashable, ids: list[int], params: SamplingParams) -> int: ...

    def step(self, tokens: dict[Hashable, int]) -> dict[Hashable, int]: ...

    def remove(self, key: Hashable) -> None: ...

    def logprob(self, key: Hashable) -> float | None: ...  # the last picked token's, if its params asked

    def close(self) -> None: ...


class _Picker:
    """Per-sequence token picking: greedy rows in one argmax, sampled rows each with their own generator.

    Rows whose params ask for logprobs get the picked token's log_softmax of the model's raw logits (before
    temperature and top_p, as OpenAI reports them): one logsumexp over the vocabulary per such row and step.
    """

    def __init__(self):
        self.params: dict[Hashable, SamplingParams] = {}
        self.rngs: dict[Hashable, np.random.Generator] = {}
        self.logprobs: dict[Hashable, float] = {}

    def start(self, key: Hashable, p: SamplingParams) -> None:
        self.params[key] = p
        self.rngs[key] = np.random.default_rng(p.seed)

    def stop(self, key: Hashable) -> None:
        self.params.pop(key, None)
        self.rngs.pop(key, None)
        self.logprobs.pop(key, None)

    def pick(self, keys: list[Hashable], logits: np.ndarray) -> list[int]:
        from ..onnx.decode import pick_token

        out = logits.argmax(-1).tolist()
        for i, k in enumerate(keys):
            p = self.params[k]
            if p.temperature > 0:
                out[i] = int(pick_token(logits[i : i + 1], True, p.temperature, p.top_p, self.rngs[k])[0])
            if p.logprobs:
                self.logprobs[k] = token_logprob(logits[i], int(out[i]))
        return [int(t) for t in out]


def token_logprob(logits: np.ndarray, token: int) -> float:
    """log_softmax(logits)[token], in float64 (a stable logsumexp over one row)."""
    row = np.asarray(logits, np.float64)
    top = row.max()
    return float(row[token] - top - np.log(np.exp(row - top).sum()))


def _eos_ids(tokenizer, config_eos) -> set[int]:
    ids = set(config_eos if isinstance(config_eos, list | tuple) else [] if config_eos is None else [config_eos])
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids


def _config(path: Path) -> dict:
    import json

    f = Path(path) / "config.json"
    return json.loads(f.read_text()) if f.is_file() else {}


class OnnxBatchEngine:
    """A fused ONNX graph with continuous batching: sequences join and leave between decode steps."""

    target = "onnx-cpu"

    def __init__(self, path: Path, manifest: dict, *, slots: int = 16, context: int = 2048, threads=None):
        from transformers import AutoTokenizer

        from ..artifact.verify import verify_variant
        from ..onnx.batch import RowBatch
        from ..onnx.runtime import OrtRunner

        path = Path(path)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        model_file = verify_variant(path, manifest).model_file  # listed files only, sizes and sha256 as built
        self.runner = OrtRunner(path / model_file, self.tokenizer, device="cpu", threads=threads)
        self.context_length = min(context, self.runner.max_positions or context)
        self.slots = slots
        self.batch = RowBatch(self.runner, slots, self.context_length)
        self.eos_ids = _eos_ids(self.tokenizer, _config(path).get("eos_token_id"))
        self.rows: list[Hashable] = []  # key of each active row, in row order
        self.picker = _Picker()

    def add(self, key: Hashable, ids: list[int], params: SamplingParams) -> int:
        row, logits = self.batch.add(ids)
        if row != len(self.rows):  # RowBatch appends: a mismatch means the two lost step
            raise RuntimeError(f"batch row {row} joined, but {len(self.rows)} rows are tracked")
        self.rows.append(key)
        self.picker.start(key, params)
        return self.picker.pick([key], logits[None, :])[0]

    def step(self, tokens: dict[Hashable, int]) -> dict[Hashable, int]:
        if not self.rows:
            return {}
        logits = self.batch.step(np.array([tokens[k] for k in self.rows], np.int64))
        return dict(zip(self.rows, self.picker.pick(self.rows, logits), strict=True))

    def remove(self, key: Hashable) -> None:
        r = self.rows.index(key)
        moved = self.batch.remove(r)
        if moved is not None:
            self.rows[r] = self.rows[moved]
        self.rows.pop()
        self.picker.stop(key)

    def logprob(self, key: Hashable) -> float | None:
        return self.picker.logprobs.get(key)

    def close(self) -> None:
        self.runner.close()


class TorchEngine:
    """PyTorch forward + DynamicCache, one sequence at a time (its batched decode is left to the ONNX engine)."""

    def __init__(self, path: Path, manifest: dict, *, slots: int = 1, context: int = 2048, threads=None, device=None):
        import torch

        from ..loaders import load_variant

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.target = "cuda" if self.device.startswith("cuda") else "cpu"
        if threads:
            torch.set_num_threads(int(threads))
        self.model, self.tokenizer, _ = load_variant(path, self.device)
        n_pos = getattr(self.model.config, "max_position_embeddings", None) or context
        self.context_length = min(context, int(n_pos))
        self.slots = 1
        self.eos_ids = _eos_ids(self.tokenizer, getattr(self.model.generation_config, "eos_token_id", None))
        self.seqs: dict[Hashable, Any] = {}  # key -> past_key_values
        self.picker = _Picker()

    def _forward(self, ids, past):
        import torch

        with torch.inference_mode():
            out = self.model(input_ids=ids, past_key_values=past, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1].float().cpu().numpy(), out.past_key_values

    def add(self, key: Hashable, ids: list[int], params: SamplingParams) -> int:
        import torch

        logits, past = self._forward(torch.tensor([ids], device=self.device), None)
        self.seqs[key] = past
        self.picker.start(key, params)
        return self.picker.pick([key], logits)[0]

    def step(self, tokens: dict[Hashable, int]) -> dict[Hashable, int]:
        import torch

        out = {}
        for key, past in list(self.seqs.items()):
            logits, self.seqs[key] = self._forward(torch.tensor([[tokens[key]]], device=self.device), past)
            out[key] = self.picker.pick([key], logits)[0]
        return out

    def remove(self, key: Hashable) -> None:
        self.seqs.pop(key, None)
        self.picker.stop(key)

    def logprob(self, key: Hashable) -> float | None:
        return self.picker.logprobs.get(key)

    def close(self) -> None:
        self.seqs.clear()


# fn(path, manifest, slots=, context=, threads=) -> Engine, by generate.engine_kind of the manifest
ENGINES: Registry[Callable[..., Any]] = Registry("serving engine")
ENGINES.add("onnx-fused", OnnxBatchEngine)
ENGINES.add("torch", TorchEngine)


def open_engine(
    path: Path, manifest: dict, *, slots: int, context: int, threads: int | None, device: str | None = None
) -> Engine:
    """The engine for a variant's manifest; UserError naming the servable kinds for the rest (onnx-static)."""
    from ..generate import engine_kind

    kind = engine_kind(manifest)
    if kind not in ENGINES:
        raise UserError(
            f"variant format '{manifest.get('format')}' ({kind}) cannot be served",
            allowed=ENGINES.names(),
            hint="serve a fused ONNX or PyTorch variant; static-bucket graphs are for the neuron-static bench",
        )
    kw: dict[str, Any] = {"slots": slots if kind == "onnx-fused" else 1, "context": context, "threads": threads}
    if kind == "torch":
        kw["device"] = device
    return ENGINES.get(kind)(path, manifest, **kw)
