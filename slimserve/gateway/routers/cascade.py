"""`cascade` (LLM-assisted): the weak tier answers first; when its confidence is below `threshold` the request
escalates to the next tier. Confidence: the margin of its top choice over the runner-up (multiple choice), or the
mean token log-prob of its answer (generation, what the gateway sees). The weak tier's tokens are paid either way."""

from __future__ import annotations

import numpy as np

from .base import ROUTERS, Decision, FitData, Request, Router


@ROUTERS.register("cascade")
class CascadeRouter(Router):
    kind = "cascade"

    def decide(self, request: Request) -> Decision:
        return Decision(self.spec.tiers[0], 0.0, "cascade: the weakest tier answers first")

    def score(self, request: Request) -> float:
        return 0.0  # known only after the weak tier answered: see escalate()

    def escalate(self, confidence: float | None, level: int) -> Decision | None:
        """The next tier when the answer at `level` is not confident enough (None: keep it)."""
        if level + 1 >= len(self.spec.tiers):
            return None
        th = self.spec.threshold
        if confidence is None:
            return Decision(self.spec.tiers[level + 1], 1.0, "cascade: no confidence signal from the answer, escalated")
        if th is not None and confidence < th:
            return Decision(self.spec.tiers[level + 1], 1.0 - confidence,
                            f"cascade: {self.spec.signal} {confidence:.3f} < {th:.3f}, escalated")  # fmt: skip
        return None

    def eval_scores(self, data: FitData) -> np.ndarray:
        return 1.0 - np.asarray(data.weak_margin, np.float64)  # low margin: escalate first

    def fit(self, data: FitData):
        if self.spec.signal != "margin":
            return self.spec  # mean_logprob thresholds come from traffic, not multiple-choice items
        conf = np.asarray(data.weak_margin, np.float64)
        th = float(np.quantile(conf, self.spec.strong_share)) if self.spec.strong_share > 0 else 0.0
        return self.spec.model_copy(update={"threshold": th})
