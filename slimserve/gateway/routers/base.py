"""One signature for every router: `decide(request) -> Decision(target, score, reason)`.

A router scores a request in [0, 1] (higher: a stronger tier is needed) and decides by thresholds on that score, so
a threshold can be calibrated to a share of strong calls (RouteLLM). `eval_scores` gives the scores of labelled items
for the call-performance curve; `fit` returns the router's config with its fitted fields set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...registry import Registry


@dataclass(frozen=True)
class Request:
    """What a router sees of a chat request."""

    text: str  # the last user message
    messages: tuple[dict, ...] = ()
    has_tools: bool = False

    @property
    def turns(self) -> int:
        return sum(1 for m in self.messages if m.get("role") == "user") or 1

    @property
    def has_code(self) -> bool:
        return bool(CODE.search(self.text))

    @classmethod
    def from_prompt(cls, text: str) -> Request:
        return cls(text, ({"role": "user", "content": text},))

    @classmethod
    def from_chat(cls, body: dict) -> Request:
        msgs = tuple(m for m in body.get("messages") or [] if isinstance(m, dict))
        users = [m for m in msgs if m.get("role") == "user"]
        text = content_text(users[-1].get("content")) if users else ""
        return cls(text, msgs, bool(body.get("tools") or body.get("functions")))


CODE = re.compile(r"```|\bdef \w+\(|\bclass \w+[:(]|#include\s*<|\bfunction\s+\w+\s*\(|;\s*$", re.MULTILINE)


def content_text(content: Any) -> str:
    """A message's text: a string, or the text parts of a content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


@dataclass(frozen=True)
class Decision:
    target: str  # tier name
    score: float
    reason: str


@dataclass
class FitData:
    """Labelled items for fit/eval: prompts, their embeddings, and whether each tier answered right."""

    prompts: list[str]
    embeddings: np.ndarray  # [n, dim], unit rows
    weak_correct: np.ndarray  # bool [n]
    strong_correct: np.ndarray  # bool [n]
    weak_margin: np.ndarray  # [n] the weak tier's choice margin (its confidence)


@dataclass
class RouterContext:
    """What routers share: the config file (fitted files sit beside it), the tier order and a lazy embedder."""

    config_path: Path
    tiers: list[str]
    embedder_path: str | None = None
    _embedder: Any = field(default=None, repr=False)

    @property
    def embedder(self):
        if self._embedder is None:
            from ..embed import shared_embedder

            self._embedder = shared_embedder(self.embedder_path)
        return self._embedder

    def path(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else self.config_path.parent / p


class Router:
    """Base class: subclasses set `kind`, implement `score`, and usually `fit`."""

    kind = "?"

    def __init__(self, spec: Any, ctx: RouterContext):
        self.spec, self.ctx = spec, ctx
        self.name = spec.name

    def score(self, request: Request) -> float:
        raise NotImplementedError

    def decide(self, request: Request) -> Decision:
        raise NotImplementedError

    def eval_scores(self, data: FitData) -> np.ndarray:
        return np.array([self.score(Request.from_prompt(p)) for p in data.prompts], dtype=np.float64)

    def fit(self, data: FitData) -> Any:
        """The spec with fitted fields set (default: nothing to fit)."""
        return self.spec


def share_threshold(scores: np.ndarray, strong_share: float) -> float:
    """The score threshold that sends `strong_share` of these items (those scoring highest) to the strong tier."""
    if strong_share <= 0:
        return 1.0
    if strong_share >= 1:
        return 0.0
    desc = np.sort(np.asarray(scores, np.float64))[::-1]
    k = int(round(strong_share * len(desc)))
    if k <= 0:
        return 1.0
    if k >= len(desc):
        return 0.0
    return float(np.clip((desc[k - 1] + desc[k]) / 2, 0.0, 1.0))  # midway: exactly the top k reach it


def pick_by_thresholds(tiers: list[str], thresholds: list[float], score: float) -> tuple[str, int]:
    """tiers[i], i = how many (ascending) thresholds the score reaches."""
    i = sum(1 for t in thresholds if score >= t)
    return tiers[min(i, len(tiers) - 1)], i


# kind -> Router subclass; routers/__init__ imports each module so it registers itself
ROUTERS: Registry[type[Router]] = Registry("router kind")
