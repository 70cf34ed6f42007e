"""The one ONNX decode loop, parameterised by how a runner lays out its KV cache and attention mask.

A layout runs the graph: ``prefill()`` feeds the prompt and ``step(i, tokens)`` feeds decode step i's tokens, each
returning the next-token logits of the caller's rows [rows, V]. The loop owns everything else: sampling
(``pick_token``), EOS handling, streaming callbacks and timings. OrtRunner's layout is one shared KV buffer with a
growing mask view (runtime.py); StaticRunner's a padded bucket (static.py); the server's batch (``RowBatch``) runs
rows that join and leave between steps on the same graph.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch

from ..bench.runner import GenResult
from ..errors import UserError


class CacheLayout(Protocol):
    rows: int  # sequences the caller decodes (a layout may run more, e.g. batch padding)

    def prefill(self) -> np.ndarray:
        """Run the prompt; logits [rows, V] of each row's last prompt position."""
        ...

    def step(self, i: int, tokens: np.ndarray) -> np.ndarray:
        """Feed decode step i's input tokens [rows] (picked at step i - 1); logits [rows, V]."""
        ...


def pick_token(logits: np.ndarray, do_sample: bool, temperature: float, top_p: float, rng) -> np.ndarray:
    """Greedy argmax, or temperature / nucleus sampling over logits [B, V]."""
    if not do_sample or temperature <= 0:
        return logits.argmax(-1)
    z = logits.astype(np.float64) / temperature
    z -= z.max(-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(-1, keepdims=True)
    out = np.empty(p.shape[0], np.int64)
    for b in range(p.shape[0]):
        pb = p[b]
        if top_p < 1.0:
            order = np.argsort(-pb)
            keep = np.cumsum(pb[order]) - pb[order] < top_p  # always keeps the top token
            mask = np.zeros_like(pb, bool)
            mask[order[keep]] = True
            pb = np.where(mask, pb, 0.0)
            pb /= pb.sum()
        out[b] = rng.choice(pb.shape[0], p=pb)
    return out


def check_lengths(prompt_len: int, max_new_tokens: int, max_positions: int | None) -> None:
    """What every runner's generate() refuses before decoding: no new tokens, or more positions than the model has."""
    if max_new_tokens < 1:
        raise ValueError("max_new_tokens must be at least 1")
    if max_positions and prompt_len + max_new_tokens > max_positions:
        raise UserError(
            f"prompt ({prompt_len}) + max_new_tokens ({max_new_tokens}) exceeds the model's {max_positions} positions"
        )


def decode(
    layout: CacheLayout,
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
    """Decode max_new_tokens for layout.rows sequences; stops early only once every row has emitted eos_token_id.

    on_token gets each step's new token ids [rows] as soon as they are picked (streaming); an exception it raises
    ends the decode there. Rows that are done keep emitting eos_token_id.
    """
    n = layout.rows
    rng = np.random.default_rng(seed)
    out = np.zeros((n, max_new_tokens), np.int64)
    done = np.zeros(n, bool)

    t0 = time.perf_counter()
    out[:, 0] = pick_token(layout.prefill(), do_sample, temperature, top_p, rng)
    ttft = time.perf_counter() - t0
    if on_token:
        on_token(out[:, 0])
    if on_step:
        on_step(0)
    steps: list[float] = []
    k = 1
    for i in range(1, max_new_tokens):
        if eos_token_id is not None:
            done |= out[:, i - 1] == eos_token_id
            if done.all():
                break
        s0 = time.perf_counter()
        tok = pick_token(layout.step(i, out[:, i - 1]), do_sample, temperature, top_p, rng)
        out[:, i] = np.where(done, eos_token_id if eos_token_id is not None else 0, tok)
        steps.append(time.perf_counter() - s0)
        k = i + 1
        if on_token:
            on_token(out[:, i])
        if on_step:
            on_step(i)
    return GenResult(tokens=torch.from_numpy(out[:, :k].copy()), ttft_s=ttft, step_s=steps)
