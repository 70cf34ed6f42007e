"""`cascade` (LLM-assisted): the weak tier answers first; when its confidence is below `threshold` the request
escalates to the next tier. Confidence: the margin of its top choice over the runner-up (multiple choice), or the
mean (or min) token log-prob of its answer (generation, what the gateway sees). The weak tier's tokens are paid
either way."""

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
        th, nxt = self.spec.threshold, self.spec.tiers[level + 1]
        if confidence is None:
            return Decision(nxt, 1.0, f"cascade: no confidence signal from the answer -> {nxt}")
        if th is not None and confidence < th:
            return Decision(nxt, 1.0 - confidence,
                            f"cascade: {self.spec.signal} {confidence:.3f} < {th:.3f} -> {nxt}")  # fmt: skip
        return None

    def kept(self, confidence: float, tier: str) -> str:
        th = self.spec.threshold
        return f"cascade: {self.spec.signal} {confidence:.3f} >= {th:.3f}, kept {tier}"

    def unservable(self) -> str | None:
        """Why `route serve` cannot run this cascade (None: it can)."""
        if self.spec.signal == "margin":
            return ("signal 'margin' is a multiple-choice score (route eval); the gateway sees generations: set "
                    "signal: mean_logprob (or min_logprob) and a log-prob threshold")  # fmt: skip
        if self.spec.threshold is None:
            return f"no threshold for signal '{self.spec.signal}': set one (a token log-prob, e.g. -1.5)"
        return None

    def confidence(self, kind: str, body: dict) -> float | None:
        """The answer's confidence by `signal`: mean or min of its tokens' log-probs (None: it has none)."""
        lps = answer_logprobs(kind, body)
        if not lps:
            return None
        return float(min(lps)) if self.spec.signal == "min_logprob" else float(np.mean(lps))

    def eval_scores(self, data: FitData) -> np.ndarray:
        return 1.0 - np.asarray(data.weak_margin, np.float64)  # low margin: escalate first

    def fit(self, data: FitData):
        if self.spec.signal != "margin":
            return self.spec  # mean_logprob thresholds come from traffic, not multiple-choice items
        conf = np.asarray(data.weak_margin, np.float64)
        th = float(np.quantile(conf, self.spec.strong_share)) if self.spec.strong_share > 0 else 0.0
        return self.spec.model_copy(update={"threshold": th})


def answer_logprobs(kind: str, body: dict) -> list[float]:
    """The token log-probs of an OpenAI answer's first choice (chat or completions shape); [] when it has none."""
    choice = ((body or {}).get("choices") or [{}])[0]
    lp = choice.get("logprobs") or {}
    if kind == "chat":
        vals = [t.get("logprob") for t in lp.get("content") or []]
    else:
        vals = list(lp.get("token_logprobs") or [])
    return [float(v) for v in vals if v is not None and np.isfinite(v)]
