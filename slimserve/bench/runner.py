"""The Runner protocol: what a target hands the benchmark after loading a variant.

A runner owns a loaded model and its tokenizer and exposes exactly what the scenarios time or score:
greedy generation with per-step timings, full-sequence logits, and peak memory. Targets (PyTorch, ONNX Runtime, ...)
implement it; speed.py and quality.py only talk to this protocol.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch


@dataclass
class GenResult:
    """One greedy generation of `n_new` tokens for a batch of same-length prompts.

    ttft_s covers the prompt forward pass and picking the first new token; step_s holds one wall time per
    further decode step (len == n_new - 1), each producing one token for every sequence in the batch.
    """

    tokens: torch.Tensor  # LongTensor [B, n_new]
    ttft_s: float
    step_s: list[float] = field(default_factory=list)


@runtime_checkable
class Runner(Protocol):
    """A loaded variant on one target.

    Attributes:
        loop: name of the decode loop that generate() runs, written into the report (e.g. "torch-static-kv").
        device: "cpu", "cuda", ...
        tokenizer: a Hugging Face tokenizer (encode real-text prompts, score eval text).
        vocab_size: width of the logits.
    """

    loop: str
    device: str
    tokenizer: Any
    vocab_size: int

    def generate(self, input_ids: torch.Tensor, max_new_tokens: int) -> GenResult:
        """Greedy-decode max_new_tokens for input_ids [B, T] (no padding); never stops early at EOS."""
        ...

    def logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Next-token logits for every position: float32 CPU tensor [B, T, vocab]."""
        ...

    def estimate_bytes(self, batch: int, seq_len: int) -> int | None:
        """Extra memory a generate() of this batch and total length needs (KV cache, logits), or None if unknown."""
        ...

    def reset_peak_memory(self) -> None: ...

    def peak_memory_mb(self) -> float | None:
        """Peak memory since the last reset: process RSS on CPU, max allocated on CUDA; None if unmeasurable."""
        ...

    def close(self) -> None:
        """Free the model (the harness loads one variant at a time)."""
        ...


# --- process RSS helpers, shared by CPU runners of every backend ---------------------------------------------------


def reset_rss_peak() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process; False where the OS does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # "5" resets the peak RSS watermark (Linux >= 4.0)
        return True
    except OSError:
        return False


def rss_peak_mb() -> float | None:
    """Peak resident set size of this process in MiB (since the last reset_rss_peak where supported)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    try:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
        return peak / (1024.0 * 1024.0) if os.uname().sysname == "Darwin" else peak / 1024.0
    except (OSError, ValueError):
        return None


class RssPeakMemory:
    """Runner mixin: peak memory as this process's peak RSS (CPU runners of every backend)."""

    def reset_peak_memory(self) -> None:
        reset_rss_peak()

    def peak_memory_mb(self) -> float | None:
        return rss_peak_mb()


def available_bytes(device: str) -> int | None:
    """Memory a new allocation could still get on this device, or None if unknown."""
    if device.startswith("cuda") and torch.cuda.is_available():
        free, _total = torch.cuda.mem_get_info()
        return int(free)
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        return None


def is_out_of_memory(exc: BaseException) -> bool:
    """True for the out-of-memory errors of torch, the OS and ONNX Runtime (which raises plain RuntimeErrors)."""
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(
        s in text for s in ("out of memory", "failed to allocate", "can't allocate", "bad_alloc")
    )
