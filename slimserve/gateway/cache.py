"""Semantic response cache in SQLite: an exact-match fast path, then the most similar cached prompt above a cosine
threshold (calibrated by `route cache-eval` to a maximum false-hit rate). Entries expire after `ttl_s`; past
`max_entries` the oldest go. The key holds the model/router and the sampling settings; responses made at
temperature > 0 are cached only when `cache_sampled` is set."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA = """
CREATE TABLE IF NOT EXISTS cache (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scope TEXT NOT NULL,       -- sha256 of model/router + sampling settings
    exact TEXT NOT NULL,       -- sha256 of scope + prompt
    prompt TEXT NOT NULL,
    embedding BLOB,
    response TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS cache_exact ON cache (exact);
CREATE INDEX IF NOT EXISTS cache_scope ON cache (scope);
"""
SAMPLING_KEYS = ("temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "seed", "n", "tools",
                 "logprobs", "top_logprobs")  # fmt: skip


def scope_of(model: str, body: dict) -> str:
    settings = {k: body.get(k) for k in SAMPLING_KEYS if body.get(k) is not None}
    return hashlib.sha256(json.dumps([model, settings], sort_keys=True, default=str).encode()).hexdigest()


def cacheable(body: dict, cache_sampled: bool) -> bool:
    return cache_sampled or float(body.get("temperature", 1.0) or 0.0) <= 0.0


class SemanticCache:
    def __init__(self, path: str | Path, *, ttl_s: float, max_entries: int, threshold: float | None, embed=None):
        self.path = Path(path)
        self.ttl_s, self.max_entries, self.threshold, self.embed = ttl_s, max_entries, threshold, embed
        self._lock = threading.Lock()
        self._con = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.executescript(SCHEMA)

    def get(self, scope: str, prompt: str) -> tuple[dict, str] | None:
        """(response, "exact" | "semantic:<similarity>") or None."""
        now = time.time()
        exact = hashlib.sha256((scope + "\x1f" + prompt).encode()).hexdigest()
        with self._lock:
            self._con.execute("DELETE FROM cache WHERE created < ?", (now - self.ttl_s,))
            row = self._con.execute("SELECT response FROM cache WHERE exact = ? ORDER BY id DESC", (exact,)).fetchone()
            if row:
                return json.loads(row[0]), "exact"
            if self.embed is None or self.threshold is None:
                return None
            rows = self._con.execute("SELECT embedding, response FROM cache WHERE scope = ?", (scope,)).fetchall()
        if not rows:
            return None
        e = self.embed(prompt)
        mat = np.stack([np.frombuffer(r[0], np.float32) for r in rows])
        sims = mat @ e
        i = int(np.argmax(sims))
        if sims[i] >= self.threshold:
            return json.loads(rows[i][1]), f"semantic:{sims[i]:.3f}"
        return None

    def put(self, scope: str, prompt: str, response: dict) -> None:
        exact = hashlib.sha256((scope + "\x1f" + prompt).encode()).hexdigest()
        emb = self.embed(prompt).astype(np.float32).tobytes() if self.embed is not None else None
        with self._lock:
            self._con.execute(
                "INSERT INTO cache (scope, exact, prompt, embedding, response, created) VALUES (?, ?, ?, ?, ?, ?)",
                (scope, exact, prompt, emb, json.dumps(response), time.time()),
            )
            n = self._con.execute("SELECT COUNT(*) FROM cache").fetchone()[0]
            if n > self.max_entries:
                self._con.execute(
                    "DELETE FROM cache WHERE id IN (SELECT id FROM cache ORDER BY id LIMIT ?)", (n - self.max_entries,)
                )

    def __len__(self) -> int:
        with self._lock:
            return int(self._con.execute("SELECT COUNT(*) FROM cache").fetchone()[0])


def calibrate(similarity: np.ndarray, same: np.ndarray, max_false_hit_rate: float) -> dict[str, Any]:
    """The lowest threshold whose false-hit rate (share of hits whose pair is not a paraphrase) is at most the
    target, with its hit rate (share of all pairs that hit) and recall of true paraphrases."""
    rows = sweep(similarity, same, np.round(np.arange(0.5, 1.0001, 0.005), 3))
    ok = [r for r in rows if r["hits"] and r["false_hit_rate"] <= max_false_hit_rate]
    return ok[0] if ok else {"threshold": None, "note": f"no threshold reaches {max_false_hit_rate:.1%} false hits"}


def sweep(similarity: np.ndarray, same: np.ndarray, thresholds) -> list[dict[str, Any]]:
    out = []
    for th in thresholds:
        hit = similarity >= th
        n_hit = int(hit.sum())
        out.append({"threshold": float(th), "hits": n_hit, "hit_rate": n_hit / len(similarity),
                    "false_hit_rate": float((~same[hit]).mean()) if n_hit else 0.0,
                    "recall": float(hit[same].mean()) if same.any() else 0.0})  # fmt: skip
    return out
