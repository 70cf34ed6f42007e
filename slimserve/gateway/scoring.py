"""Multiple-choice answers of each tier, by log-likelihood, cached per item on disk.

Every tier answers every item once: the choices of an item run as one right-padded batch through the tier's runner
(`slimserve.bench` targets, or transformers for a model folder / GGUF outside the catalog). A result is keyed by the
tier's model key and the item id, so `fit` and `eval` (and reruns) never score an item twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from .datasets import Item

SCHEMA = """
CREATE TABLE IF NOT EXISTS item_scores (
    model TEXT NOT NULL,
    item TEXT NOT NULL,
    logliks TEXT NOT NULL,  -- JSON list, one sum log p(choice | context) per choice
    picked INTEGER NOT NULL,
    correct INTEGER NOT NULL,
    PRIMARY KEY (model, item)
)
"""


@dataclass(frozen=True)
class ItemScore:
    logliks: tuple[float, ...]
    picked: int
    correct: bool

    def probs(self, choices: tuple[str, ...], normalize: bool) -> list[float]:
        """Softmax over the (per-byte when normalize) choice scores: the tier's belief in each choice."""
        s = choice_scores(self.logliks, choices, normalize)
        m = max(s)
        e = [math.exp(x - m) for x in s]
        return [x / sum(e) for x in e]

    def margin(self, choices: tuple[str, ...], normalize: bool) -> float:
        """Probability of the top choice minus the runner-up's (the cascade's confidence)."""
        p = sorted(self.probs(choices, normalize), reverse=True)
        return p[0] - p[1]


def choice_scores(logliks, choices, normalize: bool) -> list[float]:
    if normalize:
        return [ll / max(1, len(c.encode("utf-8"))) for ll, c in zip(logliks, choices, strict=True)]
    return list(logliks)


def pick(logliks, choices, normalize: bool) -> int:
    s = choice_scores(logliks, choices, normalize)
    return max(range(len(s)), key=s.__getitem__)


class ScoreStore:
    """SQLite file of per-item results (WAL, so a second process can read while one scores)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        with self._con() as con:
            con.executescript(SCHEMA)

    @contextlib.contextmanager
    def _con(self):
        con = sqlite3.connect(self.path, timeout=60)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            yield con
            con.commit()
        finally:
            con.close()

    def get(self, model: str, ids: list[str]) -> dict[str, ItemScore]:
        with self._con() as con:
            rows = con.execute("SELECT item, logliks, picked, correct FROM item_scores WHERE model = ?", (model,))
            have = {r[0]: ItemScore(tuple(json.loads(r[1])), r[2], bool(r[3])) for r in rows}
        wanted = set(ids)
        return {k: v for k, v in have.items() if k in wanted}

    def put(self, model: str, rows: list[tuple[str, ItemScore]]) -> None:
        with self._con() as con:
            con.executemany(
                "INSERT OR REPLACE INTO item_scores VALUES (?, ?, ?, ?, ?)",
                [(model, i, json.dumps(s.logliks), s.picked, int(s.correct)) for i, s in rows],
            )


class _HFRunner:
    """Just enough of a bench Runner (tokenizer + logits) for a transformers model outside the catalog."""

    def __init__(self, model: Any, tokenizer: Any):
        self.model, self.tokenizer = model, tokenizer

    def logits(self, input_ids):
        import torch

        with torch.inference_mode():
            return self.model(input_ids=input_ids, use_cache=False).logits.float()

    def logits_from(self, input_ids, start: int):
        from ..bench.torch_runner import logits_from

        return logits_from(self.model, input_ids, start)


def open_runner(tier: Any, catalog: Any | None):
    """A runner with `.tokenizer` and `.logits(ids)` for a local tier: its catalog variant on the first bench target
    that runs it (or `tier.target`), else its `model_path` (HF folder or .gguf file) with transformers."""
    if tier.variant:
        from ..bench.gate_check import natural_target
        from ..bench.targets import get_target

        row = catalog.get(tier.variant)
        target = get_target(tier.target) if tier.target else natural_target(row.manifest)
        return target.load(row.path, row.manifest)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p = Path(tier.model_path)
    if not p.exists():
        raise UserError(f"tier '{tier.name}': model_path does not exist", file=str(p), field="model_path")
    kw = {"gguf_file": p.name} if p.suffix == ".gguf" else {}
    folder = p.parent if p.suffix == ".gguf" else p
    tok = AutoTokenizer.from_pretrained(folder, **kw)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kw).eval()
    return _HFRunner(model, tok)


def model_key(tier: Any) -> str:
    """What identifies a tier's answers: the variant (and target) or the model file."""
    if tier.variant:
        return f"{tier.variant}@{tier.target or 'auto'}"
    return "path:" + hashlib.sha256(str(Path(tier.model_path).resolve()).encode()).hexdigest()[:12]


def score_item(runner: Any, item: Item) -> ItemScore:
    import torch

    from ..bench.metrics import choice_loglik

    tok = runner.tokenizer
    bos = [tok.bos_token_id] if getattr(tok, "add_bos_token", False) and tok.bos_token_id is not None else []
    ctx = bos + tok(item.context, add_special_tokens=False).input_ids
    seqs = [ctx + tok(c, add_special_tokens=False).input_ids for c in item.choices]
    width = max(len(s) for s in seqs)
    batch = torch.tensor([s + [s[-1]] * (width - len(s)) for s in seqs], dtype=torch.long)
    start = len(ctx)
    if hasattr(runner, "logits_from"):
        lp = torch.log_softmax(runner.logits_from(batch, start).double(), dim=-1)
        lls = tuple(float(lp[i, : len(s) - start].gather(-1, torch.tensor(s[start:])[:, None]).sum())
                    for i, s in enumerate(seqs))  # fmt: skip
    else:
        logits = runner.logits(batch)
        lls = tuple(choice_loglik(logits[i, : len(s)], torch.tensor(s), start) for i, s in enumerate(seqs))
    picked = pick(lls, item.choices, item.normalize)
    return ItemScore(lls, picked, picked == item.answer)


def score_tier(tier: Any, items: list[Item], store: ScoreStore, catalog: Any | None) -> dict[str, ItemScore]:
    """Every item's result for this tier; scores only the items not in the store (with progress and ETA)."""
    key = model_key(tier)
    have = store.get(key, [it.id for it in items])
    todo = [it for it in items if it.id not in have]
    if not todo:
        return have
    runner = open_runner(tier, catalog)
    t0, batch = time.perf_counter(), []
    for n, it in enumerate(todo, 1):
        batch.append((it.id, score_item(runner, it)))
        if len(batch) == 25 or n == len(todo):
            store.put(key, batch)
            have.update(batch)
            batch = []
            rate = (time.perf_counter() - t0) / n
            print(f"\r  scoring {tier.name}: {n}/{len(todo)} items, ETA {rate * (len(todo) - n):.0f} s",
                  end="", file=sys.stderr, flush=True)  # fmt: skip
    print(file=sys.stderr)
    return have
