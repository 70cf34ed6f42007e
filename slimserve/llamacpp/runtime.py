"""A Runner (slimserve.bench.runner protocol) on llama.cpp through llama-cpp-python's C API bindings.

The high-level `llama_cpp.Llama` runs one sequence and keeps every position's logits only with `logits_all`; the
C API gives what the harness times and scores: a batch of B sequences decoded together (one llama_decode per step,
one token per sequence), and every position's logits of a window in one call. Token ids come from the artifact's
Hugging Face tokenizer, as on every other target (the GGUF's vocabulary holds the same ids).
"""

from __future__ import annotations

import ctypes
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..bench.runner import GenResult, reset_rss_peak, rss_peak_mb
from ..errors import UserError

_quiet_cb = None  # the C log callback must outlive every call into llama.cpp


def load_llama_cpp():
    """The `llama_cpp` module with its backend initialised and its logging silenced (errors still raise here)."""
    global _quiet_cb
    import llama_cpp

    if _quiet_cb is None:
        _quiet_cb = llama_cpp.llama_log_callback(lambda level, text, user: None)
        llama_cpp.llama_log_set(_quiet_cb, ctypes.c_void_p())
        llama_cpp.llama_backend_init()
    return llama_cpp


class LlamaCppRunner:
    """One GGUF model on llama.cpp's CPU backend; contexts are sized on demand (batch, positions)."""

    loop = "llama.cpp-c-api-batch-decode"
    device = "cpu"

    def __init__(self, gguf: Path, tokenizer: Any, *, threads: int | None = None, ubatch: int = 512):
        self.L = load_llama_cpp()
        self.path, self.tokenizer = Path(gguf), tokenizer
        self.threads = int(threads or os.cpu_count() or 1)
        self.ubatch = ubatch
        mp = self.L.llama_model_default_params()
        mp.n_gpu_layers = 0
        self.model = self.L.llama_model_load_from_file(str(self.path).encode(), mp)
        if not self.model:
            raise UserError(f"llama.cpp could not load {self.path}", hint="is it a GGUF of an architecture it knows?")
        self.vocab_size = int(self.L.llama_vocab_n_tokens(self.L.llama_model_get_vocab(self.model)))
        self.n_layer = int(self.L.llama_model_n_layer(self.model))
        self.n_ctx_train = int(self.L.llama_model_n_ctx_train(self.model))
        self._ctx = None
        self._shape = (0, 0)  # (sequences, positions) the current context holds
        self._batch = None
        self._batch_cap = 0

    # --- helpers -----------------------------------------------------------------------------------------------------
    def _context(self, seqs: int, tokens: int):
        """A context for `seqs` sequences and `tokens` KV cells in all (recreated only when it must grow)."""
        if self._ctx is not None and seqs <= self._shape[0] and tokens <= self._shape[1]:
            self.L.llama_memory_clear(self.L.llama_get_memory(self._ctx), True)
            return self._ctx
        self._free_context()
        cells = max(256, -(-tokens // 256) * 256)
        cp = self.L.llama_context_default_params()
        cp.n_ctx, cp.n_batch, cp.n_ubatch = cells, cells, min(self.ubatch, cells)
        cp.n_seq_max = max(1, seqs)
        cp.kv_unified = True  # one KV buffer shared by the sequences: n_ctx counts every sequence's cells
        cp.n_threads = cp.n_threads_batch = self.threads
        cp.embeddings = False
        cp.no_perf = True
        self._ctx = self.L.llama_init_from_model(self.model, cp)
        if not self._ctx:
            raise MemoryError(f"llama.cpp could not create a context of {cells} cells for {seqs} sequence(s)")
        self._shape = (cp.n_seq_max, cells)
        return self._ctx

    def _fill(self, rows: list[tuple[int, int, int, bool]]):
        """A llama_batch of (token, position, sequence, wants logits) rows."""
        if self._batch is None or len(rows) > self._batch_cap:
            if self._batch is not None:
                self.L.llama_batch_free(self._batch)
            self._batch_cap = max(len(rows), 512)
            self._batch = self.L.llama_batch_init(self._batch_cap, 0, 1)
        b = self._batch
        b.n_tokens = len(rows)
        for i, (tok, pos, seq, out) in enumerate(rows):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = int(tok), pos, 1, out
            b.seq_id[i][0] = seq
        return b

    def _decode(self, ctx, rows: list[tuple[int, int, int, bool]], n_out: int) -> np.ndarray:
        rc = self.L.llama_decode(ctx, self._fill(rows))
        if rc != 0:
            raise RuntimeError(f"llama_decode failed (rc {rc}) on a batch of {len(rows)} tokens")
        ptr = self.L.llama_get_logits(ctx)
        return np.ctypeslib.as_array(ptr, shape=(n_out, self.vocab_size))

    # --- Runner protocol ---------------------------------------------------------------------------------------------
    def generate(self, input_ids: torch.Tensor, max_new_tokens: int) -> GenResult:
        """Greedy-decode max_new_tokens for same-length prompts [B, T]: the prompts in one batch, then one batch of B
        tokens per step."""
        ids = input_ids.cpu().numpy().astype(np.int64)
        b, t = ids.shape
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        ctx = self._context(b, b * (t + max_new_tokens))
        prompt = [(ids[s, p], p, s, p == t - 1) for s in range(b) for p in range(t)]
        out = np.zeros((b, max_new_tokens), np.int64)
        t0 = time.perf_counter()
        out[:, 0] = self._decode(ctx, prompt, b).argmax(-1)
        ttft = time.perf_counter() - t0
        steps = []
        for i in range(1, max_new_tokens):
            s0 = time.perf_counter()
            rows = [(out[s, i - 1], t + i - 1, s, True) for s in range(b)]
            out[:, i] = self._decode(ctx, rows, b).argmax(-1)
            steps.append(time.perf_counter() - s0)
        return GenResult(tokens=torch.from_numpy(out), ttft_s=ttft, step_s=steps)

    def logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Every position's next-token logits, one sequence at a time from an empty cache: float32 [B, T, V]."""
        ids = input_ids.cpu().numpy().astype(np.int64)
        b, t = ids.shape
        out = np.empty((b, t, self.vocab_size), np.float32)
        for s in range(b):
            ctx = self._context(1, t)
            out[s] = self._decode(ctx, [(ids[s, p], p, 0, True) for p in range(t)], t)
        return torch.from_numpy(out)

    def estimate_bytes(self, batch: int, seq_len: int) -> int | None:
        L, m = self.L, self.model
        kv_dim = L.llama_model_n_embd(m) * L.llama_model_n_head_kv(m) // max(1, L.llama_model_n_head(m))
        return 2 * self.n_layer * kv_dim * batch * seq_len * 2 + batch * self.vocab_size * 4 * 2  # f16 K and V

    def reset_peak_memory(self) -> None:
        reset_rss_peak()

    def peak_memory_mb(self) -> float | None:
        return rss_peak_mb()

    def _free_context(self) -> None:
        if self._ctx is not None:
            self.L.llama_free(self._ctx)
            self._ctx, self._shape = None, (0, 0)

    def close(self) -> None:
        self._free_context()
        if self._batch is not None:
            self.L.llama_batch_free(self._batch)
            self._batch = None
        if getattr(self, "model", None):
            self.L.llama_model_free(self.model)
            self.model = None
