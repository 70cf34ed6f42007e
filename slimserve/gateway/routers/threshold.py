"""`threshold` (RouteLLM-style): logistic regression on the prompt's MiniLM embedding predicts that the strong tier
wins (answers right where the weak one fails); thresholds on that probability pick the tier. `fit` trains the scorer
on the train split and calibrates the threshold to `strong_share` (or to `quality_floor`). The fitted coefficients
are plain JSON beside the config (never a pickle)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...errors import UserError
from ...util import atomic_write_text
from .base import ROUTERS, Decision, FitData, Request, Router, pick_by_thresholds, share_threshold


def labels(data: FitData) -> np.ndarray:
    """1 where only the strong tier answers right (RouteLLM's "strong wins")."""
    return (data.strong_correct & ~data.weak_correct).astype(int)


def floor_share(scores: np.ndarray, data: FitData, floor: float) -> float:
    """The lowest strong share whose routed accuracy on these items reaches `floor` (1.0 when none does)."""
    order = np.argsort(-scores, kind="stable")
    acc = data.weak_correct.astype(float).copy()
    for k in range(len(order) + 1):
        if acc.mean() >= floor:
            return k / len(order)
        if k < len(order):
            acc[order[k]] = float(data.strong_correct[order[k]])
    return 1.0


@ROUTERS.register("threshold")
class ThresholdRouter(Router):
    kind = "threshold"

    def __init__(self, spec, ctx):
        super().__init__(spec, ctx)
        self._coef = self._bias = None
        if spec.fitted:
            p = ctx.path(spec.fitted)
            if not p.is_file():
                raise UserError(f"router '{spec.name}': fitted scorer not found", file=str(p), field="fitted",
                                hint="Run: slimserve route fit CONFIG --data DATA")  # fmt: skip
            d = json.loads(p.read_text())
            self._coef, self._bias = np.asarray(d["coef"], np.float32), float(d["intercept"])

    def _prob(self, emb: np.ndarray) -> np.ndarray:
        if self._coef is None:
            raise UserError(f"router '{self.name}' is not fitted", hint="Run: slimserve route fit CONFIG --data DATA")
        return 1.0 / (1.0 + np.exp(-(emb @ self._coef + self._bias)))

    def score(self, request: Request) -> float:
        return float(self._prob(self.ctx.embedder.encode_one(request.text)))

    def decide(self, request: Request) -> Decision:
        s = self.score(request)
        if not self.spec.thresholds:
            raise UserError(f"router '{self.name}' has no thresholds", hint="Run: slimserve route fit CONFIG")
        tier, i = pick_by_thresholds(list(self.spec.tiers), list(self.spec.thresholds), s)
        return Decision(tier, s, f"threshold: P(strong wins) {s:.3f} reaches {i} of {list(self.spec.thresholds)}")

    def eval_scores(self, data: FitData) -> np.ndarray:
        return self._prob(data.embeddings).astype(np.float64)

    def fit(self, data: FitData):
        from sklearn.linear_model import LogisticRegression

        y = labels(data)
        if y.min() == y.max():
            raise UserError(f"router '{self.name}': every train item has the same label ({y[0]}); nothing to learn",
                            field="--data", hint="Use more items or tiers that differ")  # fmt: skip
        lr = LogisticRegression(C=self.spec.C, class_weight="balanced", max_iter=2000).fit(data.embeddings, y)
        rel = self.spec.fitted or f"{Path(self.ctx.config_path).stem}.{self.name}.json"
        atomic_write_text(self.ctx.path(rel), json.dumps({"coef": lr.coef_[0].tolist(),
                          "intercept": float(lr.intercept_[0]), "label": "strong_wins", "n": int(len(y))}))  # fmt: skip
        self._coef, self._bias = lr.coef_[0].astype(np.float32), float(lr.intercept_[0])
        scores = self.eval_scores(data)
        if self.spec.quality_floor is not None:
            share = floor_share(scores, data, self.spec.quality_floor)
        else:
            share = self.spec.strong_share if self.spec.strong_share is not None else 0.3
        th = share_threshold(scores, share)
        n = len(self.spec.tiers) - 1  # more than two tiers: the strong band split evenly above the threshold
        thresholds = [th + (1 - th) * k / n for k in range(n)]
        return self.spec.model_copy(update={"fitted": rel, "thresholds": thresholds})
