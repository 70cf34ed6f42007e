"""Rows that join and leave a running batch between decode steps, on the fused graph (continuous batching).

The cache is one KVCache of ``slots`` rows. Active rows are kept packed at the front (rows 0..n-1), so a step binds
the contiguous view ``[:n]`` of every buffer and runs only live rows. Each row has its own length: the mask is
right-padded with zeros, the graph turns its row sums into GroupQueryAttention's per-row ``seqlens_k``, so every row
attends to its own tokens, takes its own rotary positions and appends its new KV at its own offset, in place.
A prompt is prefilled alone into its row's view (``[r:r+1]``, also contiguous). When a row leaves, the last row's
used prefix is copied into its place.
"""

from __future__ import annotations

import numpy as np

from .graph import ALL_POSITIONS, LOGITS_RANGE
from .runtime import KVCache, OrtRunner


class RowBatch:
    """A fixed-capacity batch of sequences on one OrtRunner's session (one thread drives it)."""

    def __init__(self, runner: OrtRunner, slots: int, capacity: int):
        self.runner, self.slots, self.capacity = runner, slots, capacity
        self.info, self.session = runner.info, runner.session
        self.cache = KVCache(self.info, slots, capacity, runner.device)
        self.lens = np.zeros(slots, np.int64)  # tokens in each row's cache
        self.n = 0  # active rows, packed at the front
        self._range = np.array([-1, ALL_POSITIONS], np.int64)
        self._views: dict[tuple[int, int], list] = {}

    def _bind_rows(self, binding, lo: int, hi: int) -> None:
        """Bind rows [lo, hi) of every KV buffer as both past and present (OrtValues of contiguous views)."""
        import onnxruntime as ort

        key = (lo, hi)
        if key not in self._views:
            self._views[key] = [ort.OrtValue.ortvalue_from_numpy(a[lo:hi]) for a in self.cache.arrays]
        vals = self._views[key]
        for i in range(self.info.layers):
            for j, kv in enumerate(("key", "value")):
                binding.bind_ortvalue_input(f"past_key_values.{i}.{kv}", vals[2 * i + j])
                binding.bind_ortvalue_output(f"present.{i}.{kv}", vals[2 * i + j])

    def _run(self, lo: int, hi: int, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import onnxruntime as ort

        binding = self.session.io_binding()
        self._bind_rows(binding, lo, hi)
        logits = np.empty((hi - lo, 1, self.info.vocab), np.float32)
        binding.bind_ortvalue_input("input_ids", ort.OrtValue.ortvalue_from_numpy(ids))
        binding.bind_ortvalue_input("attention_mask", ort.OrtValue.ortvalue_from_numpy(mask))
        binding.bind_ortvalue_input(LOGITS_RANGE, ort.OrtValue.ortvalue_from_numpy(self._range))
        binding.bind_ortvalue_output("logits", ort.OrtValue.ortvalue_from_numpy(logits))
        self.session.run_with_iobinding(binding)
        return logits[:, -1]

    def add(self, ids: list[int]) -> tuple[int, np.ndarray]:
        """Prefill a prompt into the next free row; (row, logits [V] of its last position)."""
        if self.n >= self.slots:
            raise RuntimeError("the batch is full")
        if len(ids) >= self.capacity:
            raise ValueError(f"prompt of {len(ids)} tokens does not fit a cache of {self.capacity}")
        r = self.n
        arr = np.ascontiguousarray(np.asarray(ids, np.int64)[None, :])
        logits = self._run(r, r + 1, arr, np.ones_like(arr))
        self.lens[r] = len(ids)
        self.n += 1
        return r, logits[0]

    def step(self, tokens: np.ndarray) -> np.ndarray:
        """Feed one token per active row [n]; logits [n, V]. Each row's length grows by one."""
        n = self.n
        if n == 0:
            return np.empty((0, self.info.vocab), np.float32)
        if int(self.lens[:n].max()) >= self.capacity:
            raise RuntimeError("a row is at the cache capacity")
        self.lens[:n] += 1
        width = int(self.lens[:n].max())
        mask = (np.arange(width)[None, :] < self.lens[:n, None]).astype(np.int64)
        ids = np.ascontiguousarray(np.asarray(tokens, np.int64).reshape(n, 1))
        return self._run(0, n, ids, mask).copy()

    def remove(self, r: int) -> int | None:
        """Free row r; the last active row moves into it. Returns the row that moved (now at r), or None."""
        last = self.n - 1
        moved = None
        if r != last:
            used = int(self.lens[last])
            for a in self.cache.arrays:
                a[r, :, :used] = a[last, :, :used]
            self.lens[r] = self.lens[last]
            moved = last
        self.lens[last] = 0
        self.n -= 1
        return moved

    def room(self, r: int) -> int:
        """Tokens row r can still take."""
        return self.capacity - int(self.lens[r])
