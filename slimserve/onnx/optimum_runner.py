"""Run a stock optimum-onnx decoder graph (``export: {format: onnx, graph: optimum}``) on ONNX Runtime.

The graph is whatever optimum-onnx traced for the model type (Gemma 3 included: its (1 + w) norms, q/k norms,
sliding-window layers and GELU-tanh MLP are plain ONNX ops there). It takes ``past_key_values.N.*`` and returns
``present.N.*`` one position longer, so each step feeds the previous step's presents back as OrtValues (no numpy copy,
but the graph concatenates the cache every step), and it returns logits for every input position (no
``logits_to_keep``). slimserve's fused graph avoids both; this loop exists for architectures it does not cover
(and to compare against it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..bench.runner import GenResult, RssPeakMemory
from ..errors import UserError
from .decode import check_lengths, decode
from .runtime import GraphInfo, _max_positions, make_session


class OptimumGraphRunner(RssPeakMemory):
    """Runner (slimserve.bench.runner protocol) for an optimum-onnx `text-generation-with-past` graph."""

    loop = "ort-optimum-kv-concat"

    def __init__(self, model_path: Path, tokenizer: Any, *, device: str = "cpu", threads: int | None = None):
        self.path, self.tokenizer, self.device, self.threads = Path(model_path), tokenizer, device, threads
        self.session = make_session(self.path, device, threads)
        self.info = GraphInfo(self.session)
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.outputs = [o.name for o in self.session.get_outputs()]
        if self.outputs[0] != "logits" or len(self.outputs) != 1 + 2 * self.info.layers:
            raise UserError(f"{self.path.name} is not an optimum decoder graph (outputs: {', '.join(self.outputs)})")
        self.vocab_size = self.info.vocab
        self.max_positions = _max_positions(self.path.parent)

    def feed(self, ids: np.ndarray, past: list | None, past_len: int) -> dict[str, Any]:
        """Inputs of one run: ids [B, T] after past_len cached positions (past: the last run's presents, or None)."""
        import onnxruntime as ort

        b, t = ids.shape
        feed: dict[str, Any] = {
            "input_ids": ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(ids, np.int64)),
            "attention_mask": ort.OrtValue.ortvalue_from_numpy(np.ones((b, past_len + t), np.int64)),
        }
        if "position_ids" in self.inputs:
            pos = np.broadcast_to(np.arange(past_len, past_len + t, dtype=np.int64), (b, t))
            feed["position_ids"] = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(pos))
        if past is None:
            empty = np.zeros((b, self.info.kv_heads, 0, self.info.head_dim), np.float32)
            past = [ort.OrtValue.ortvalue_from_numpy(empty)] * (2 * self.info.layers)
        for name, value in zip(self.outputs[1:], past, strict=True):
            feed[name.replace("present", "past_key_values", 1)] = value
        return feed

    def run(self, ids: np.ndarray, past: list | None, past_len: int) -> tuple[np.ndarray, list]:
        """(logits [B, T, V], presents) of one run."""
        out = self.session.run_with_ort_values(self.outputs, self.feed(ids, past, past_len))
        return out[0].numpy(), out[1:]

    def generate(
        self,
        input_ids: torch.Tensor,
        max_new_tokens: int,
        *,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        eos_token_id: int | None = None,
        on_step: Callable[[int], None] | None = None,
        seed: int | None = None,
        on_token: Callable[[np.ndarray], None] | None = None,
    ) -> GenResult:
        """As OrtRunner.generate: same-length prompts [B, T], max_new_tokens each (early stop only at eos_token_id)."""
        ids = input_ids.cpu().numpy().astype(np.int64)
        check_lengths(ids.shape[1], max_new_tokens, self.max_positions)
        return decode(_Presents(self, ids), max_new_tokens, do_sample=do_sample, temperature=temperature,
                      top_p=top_p, eos_token_id=eos_token_id, on_step=on_step, seed=seed, on_token=on_token)  # fmt: skip

    def logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Full-sequence forward (empty cache, every position's logits): float32 [B, T, V]."""
        return torch.from_numpy(self.run(input_ids.cpu().numpy(), None, 0)[0])

    def estimate_bytes(self, batch: int, seq_len: int) -> int | None:
        # the cache twice (past in, a concatenated present out) plus the prompt's logits at every position
        kv = 2 * self.info.layers * batch * self.info.kv_heads * self.info.head_dim * seq_len * 4
        return 2 * kv + batch * seq_len * self.vocab_size * 4

    def close(self) -> None:
        self.session = None


class _Presents:
    """The decode loop's layout for an optimum graph: each run's presents become the next run's past."""

    def __init__(self, runner: OptimumGraphRunner, ids: np.ndarray):
        self.runner, self.ids = runner, ids
        self.rows, self.t = ids.shape
        self.past: list | None = None

    def prefill(self) -> np.ndarray:
        logits, self.past = self.runner.run(self.ids, None, 0)
        return logits[:, -1]

    def step(self, i: int, tokens: np.ndarray) -> np.ndarray:
        logits, self.past = self.runner.run(tokens.reshape(self.rows, 1), self.past, self.t + i - 1)
        return logits[:, -1]
