"""Speed scenarios on a loaded Runner: TTFT, prefill and decode throughput, inter-token latency, batch throughput.

Each scenario warms up, then repeats until it has at least `min_iters` iterations and `min_seconds` of measurement
(capped at `max_iters`), optimum-benchmark style. Prompts are slices of real text, never constant tokens.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from pydantic import BaseModel, ConfigDict, Field

from ..errors import UserError
from .record import SpeedResult
from .runner import GenResult, Runner, available_bytes, is_out_of_memory
from .stats import latency_stats, scaled

T = TypeVar("T")


class SpeedConfig(BaseModel):
    """How long and what to time. Defaults fit a 2-core CPU; raise them on a quiet or bigger machine."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    warmup: int = Field(1, ge=0)
    min_iters: int = Field(3, ge=1)
    min_seconds: float = Field(2.0, ge=0)
    max_iters: int = Field(50, ge=1)
    prompt_lens: tuple[int, ...] = (128, 512)  # prefill scenarios; TTFT is reported for the first
    new_tokens: int = Field(128, ge=2)  # decode scenario (batch 1)
    batches: tuple[int, ...] = (1, 4, 16)
    batch_prompt_len: int = Field(128, ge=1)
    batch_new_tokens: int = Field(32, ge=2)
    memory_headroom: float = Field(0.8, gt=0, le=1)  # a batch may use at most this share of the free memory


def measure(fn: Callable[[], T], cfg: SpeedConfig) -> list[T]:
    """Warm up, then call fn until both the iteration and the time floor are met."""
    for _ in range(cfg.warmup):
        fn()
    results: list[T] = []
    start = time.perf_counter()
    while len(results) < cfg.max_iters:
        results.append(fn())
        if len(results) >= cfg.min_iters and time.perf_counter() - start >= cfg.min_seconds:
            break
    return results


def text_token_ids(tokenizer: Any, text: str, max_chars: int = 400_000) -> torch.Tensor:
    """Token ids of (the start of) a text as a 1-D LongTensor."""
    ids = tokenizer(text[:max_chars], add_special_tokens=False, return_tensors="pt").input_ids[0]
    return ids.long()


def prompt_batch(ids: torch.Tensor, length: int, batch: int, *, source: str = "eval text") -> torch.Tensor:
    """[batch, length] prompts cut from different places of a tokenized text (no padding needed)."""
    if ids.numel() < length + batch:
        raise UserError(
            f"{source} has {ids.numel()} tokens, too few for {batch} prompt(s) of {length} tokens",
            hint="use a longer --eval-text file",
        )
    span = ids.numel() - length
    offsets = [(i * span) // max(1, batch) for i in range(batch)]
    return torch.stack([ids[o : o + length] for o in offsets])


def _decode_rate(batch: int, r: GenResult) -> float:
    return batch * len(r.step_s) / sum(r.step_s)


def batch_fit_error(runner: Runner, batch: int, seq_len: int, headroom: float) -> str | None:
    """Why a batch will not fit in memory (from the runner's estimate), or None if it should."""
    need = runner.estimate_bytes(batch, seq_len)
    free = available_bytes(runner.device)
    if need is None or free is None:
        return None
    if need > headroom * free:
        return f"needs about {need / 2**30:.2f} GiB for KV cache and activations, {free / 2**30:.2f} GiB free"
    return None


def run_speed(
    runner: Runner,
    prompt_ids: torch.Tensor,
    cfg: SpeedConfig,
    *,
    load_s: float | None = None,
    size_mb: float | None = None,
    log: Callable[[str], None] = lambda m: None,
) -> SpeedResult:
    """All speed scenarios; prompt_ids is a tokenized real text (1-D) to cut prompts from."""
    res = SpeedResult(loop=runner.loop, load_s=load_s, size_mb=size_mb)

    # Prefill: one forward over the prompt plus the first token; TTFT is the same wall time.
    for i, n in enumerate(cfg.prompt_lens):
        ids = prompt_batch(prompt_ids, n, 1)
        runs = measure(lambda ids=ids: runner.generate(ids, 1), cfg)
        res.prefill_tok_s[n] = latency_stats([n / r.ttft_s for r in runs])
        if i == 0:
            res.ttft_s = latency_stats([r.ttft_s for r in runs])
        log(f"  prefill {n}: {res.prefill_tok_s[n].p50:.1f} tok/s")

    # Decode at batch 1: tokens after the first, over new_tokens steps.
    ids = prompt_batch(prompt_ids, cfg.batch_prompt_len, 1)
    runs = measure(lambda: runner.generate(ids, cfg.new_tokens), cfg)
    res.decode_tok_s = latency_stats([_decode_rate(1, r) for r in runs])
    itl = [s for r in runs for s in r.step_s]
    res.itl_ms = scaled(latency_stats(itl), 1000.0)
    log(f"  decode: {res.decode_tok_s.p50:.2f} tok/s, ITL p99 {res.itl_ms.p99:.1f} ms")

    for b in cfg.batches:
        if b == 1:  # the decode scenario above is batch 1
            res.batch_tok_s[1] = res.decode_tok_s.p50
            res.batch_itl_p99_ms[1] = res.itl_ms.p99
            continue
        seq_len = cfg.batch_prompt_len + cfg.batch_new_tokens
        err = batch_fit_error(runner, b, seq_len, cfg.memory_headroom)
        if err is None:
            try:
                ids_b = prompt_batch(prompt_ids, cfg.batch_prompt_len, b)
                runs_b = measure(lambda ids_b=ids_b: runner.generate(ids_b, cfg.batch_new_tokens), cfg)
                res.batch_tok_s[b] = statistics.median(_decode_rate(b, r) for r in runs_b)
                res.batch_itl_p99_ms[b] = latency_stats([s for r in runs_b for s in r.step_s]).p99 * 1000.0
                log(f"  batch {b}: {res.batch_tok_s[b]:.1f} tok/s, ITL p99 {res.batch_itl_p99_ms[b]:.1f} ms")
            except Exception as exc:  # noqa: BLE001 - only out-of-memory is recorded, everything else propagates
                if not is_out_of_memory(exc):
                    raise
                err = f"out of memory: {str(exc).splitlines()[0][:200]}"
                if runner.device.startswith("cuda"):
                    torch.cuda.empty_cache()
        if err is not None:
            res.batch_errors[b] = err
    return res
