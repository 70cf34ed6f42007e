"""Speed scenarios on a loaded Runner: TTFT, prefill and decode throughput, inter-token latency, batch throughput.

Each scenario warms up, then repeats until it has at least `min_iters` iterations and `min_seconds` of measurement
(capped at `max_iters`), optimum-benchmark style; that is one round (measure_round), and the harness runs
`rounds` of them per variant, interleaved across variants (see rounds.py for why). Prompts are slices of real
text, never constant tokens. SpeedConfig's defaults are the `full` profile; profiles.py holds `quick`, the default.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from pydantic import BaseModel, ConfigDict, Field

from ..errors import UserError, flag
from .record import SpeedResult
from .rounds import RoundSamples, summarize
from .runner import GenResult, Runner, available_bytes, is_out_of_memory

T = TypeVar("T")


class SpeedConfig(BaseModel):
    """How long and what to time. The defaults are the `full` profile (over an hour for four variants on 2 cores);
    `slimserve bench` starts from the `quick` profile unless given --full (see profiles.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rounds: int = Field(5, ge=1)  # each variant is loaded and measured this many times, interleaved with the others
    warmup: int = Field(1, ge=0)  # per scenario and round
    min_iters: int = Field(1, ge=1)  # per scenario and round
    min_seconds: float = Field(1.0, ge=0)  # per scenario and round
    max_iters: int = Field(50, ge=1)
    prompt_lens: tuple[int, ...] = (128, 512)  # prefill scenarios; TTFT is reported for the first
    new_tokens: int = Field(128, ge=2)  # decode scenario (batch 1)
    decode_iters: int = Field(2, ge=1)  # per round: decode is the number prices rest on, so it gets more samples
    batches: tuple[int, ...] = (1, 4, 16)
    batch_prompt_len: int = Field(128, ge=1)
    batch_new_tokens: int = Field(32, ge=2)
    memory_headroom: float = Field(0.8, gt=0, le=1)  # a batch may use at most this share of the free memory


def scenarios(cfg: SpeedConfig) -> list[str]:
    """The scenarios one round runs, in order (progress plans the run with them)."""
    return [f"prefill@{n}" for n in cfg.prompt_lens] + ["decode"] + [f"batch {b}" for b in cfg.batches if b != 1]


def measure(fn: Callable[[], T], cfg: SpeedConfig, warm: Callable[[], object] | None = None) -> list[T]:
    """Warm up (with `warm` if given, else fn), then call fn until both the iteration and the time floor are met."""
    for _ in range(cfg.warmup):
        (warm or fn)()
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
            hint=("use a longer ", flag("--eval-text"), " file"),
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


def measure_round(
    runner: Runner,
    prompt_ids: torch.Tensor,
    cfg: SpeedConfig,
    *,
    load_s: float | None = None,
    skip_batches: dict[int, str] | None = None,
    log: Callable[[str], None] = lambda m: None,
    tick: Callable[[str], None] = lambda scenario: None,
) -> RoundSamples:
    """One round of every speed scenario on a loaded runner; prompt_ids is a tokenized real text (1-D).
    skip_batches: batch sizes already known not to fit (from an earlier round), with the reason. tick is called
    with each scenario's name (see scenarios()) once it is done or skipped."""
    out = RoundSamples(load_s=load_s, batch_errors=dict(skip_batches or {}))

    # Prefill: one forward over the prompt plus the first token; TTFT is the same wall time.
    for i, n in enumerate(cfg.prompt_lens):
        ids = prompt_batch(prompt_ids, n, 1)
        runs = measure(lambda ids=ids: runner.generate(ids, 1), cfg)
        out.prefill_tok_s[n] = [n / r.ttft_s for r in runs]
        if i == 0:
            out.ttft_s = [r.ttft_s for r in runs]
        log(f"  prefill {n}: {statistics.median(out.prefill_tok_s[n]):.1f} tok/s")
        tick(f"prefill@{n}")

    # Decode at batch 1: tokens after the first, over new_tokens steps.
    ids = prompt_batch(prompt_ids, cfg.batch_prompt_len, 1)
    # a short warm-up exercises the same kernels and cache growth as the timed loop
    warm = lambda: runner.generate(ids, min(cfg.new_tokens, 16))  # noqa: E731
    dcfg = cfg.model_copy(update={"min_iters": max(cfg.min_iters, cfg.decode_iters)})
    runs = measure(lambda: runner.generate(ids, cfg.new_tokens), dcfg, warm=warm)
    out.decode_tok_s = [_decode_rate(1, r) for r in runs]
    out.itl_s = [s for r in runs for s in r.step_s]
    log(
        f"  decode: {statistics.median(out.decode_tok_s):.2f} tok/s, ITL p50 {1000 * statistics.median(out.itl_s):.1f} ms"
    )
    tick("decode")

    for b in cfg.batches:
        if b == 1:  # the decode scenario above is batch 1
            out.batch_tok_s[1], out.batch_itl_s[1] = out.decode_tok_s, out.itl_s
            continue
        if b in out.batch_errors:
            tick(f"batch {b}")
            continue
        seq_len = cfg.batch_prompt_len + cfg.batch_new_tokens
        err = batch_fit_error(runner, b, seq_len, cfg.memory_headroom)
        if err is None:
            try:
                ids_b = prompt_batch(prompt_ids, cfg.batch_prompt_len, b)
                runs_b = measure(
                    lambda ids_b=ids_b: runner.generate(ids_b, cfg.batch_new_tokens),
                    cfg,
                    warm=lambda ids_b=ids_b: runner.generate(ids_b, min(cfg.batch_new_tokens, 4)),
                )
                out.batch_tok_s[b] = [_decode_rate(b, r) for r in runs_b]
                out.batch_itl_s[b] = [s for r in runs_b for s in r.step_s]
                log(f"  batch {b}: {statistics.median(out.batch_tok_s[b]):.1f} tok/s")
            except Exception as exc:  # noqa: BLE001 - only out-of-memory is recorded, everything else propagates
                if not is_out_of_memory(exc):
                    raise
                err = f"out of memory: {str(exc).splitlines()[0][:200]}"
                if runner.device.startswith("cuda"):
                    torch.cuda.empty_cache()
        if err is not None:
            out.batch_errors[b] = err
        tick(f"batch {b}")
    return out


def run_speed(
    runner: Runner,
    prompt_ids: torch.Tensor,
    cfg: SpeedConfig,
    *,
    load_s: float | None = None,
    size_mb: float | None = None,
    log: Callable[[str], None] = lambda m: None,
) -> SpeedResult:
    """Every speed scenario on one loaded runner, summarized (cfg.rounds of them, without reloading in between;
    the harness instead reloads and interleaves variants per round, see api.bench)."""
    rounds = [measure_round(runner, prompt_ids, cfg, load_s=load_s, log=log) for _ in range(cfg.rounds)]
    return summarize(rounds, loop=runner.loop, size_mb=size_mb)
