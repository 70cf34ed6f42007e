"""`random`: the RouteLLM baseline. A prompt's score is a seeded hash, uniform in [0, 1); the top `strong_share`
go to the strong tier."""

from __future__ import annotations

import hashlib

import numpy as np

from .base import ROUTERS, Decision, FitData, Request, Router


@ROUTERS.register("random")
class RandomRouter(Router):
    kind = "random"

    def score(self, request: Request) -> float:
        h = hashlib.sha256(f"{self.spec.seed}\x1f{request.text}".encode()).digest()
        return int.from_bytes(h[:8], "big") / 2**64

    def decide(self, request: Request) -> Decision:
        s = self.score(request)
        weak, strong = self.spec.tiers
        tier = strong if s >= 1 - self.spec.strong_share else weak
        return Decision(tier, s, f"random: draw {s:.3f}, strong share {self.spec.strong_share}")

    def eval_scores(self, data: FitData) -> np.ndarray:
        return np.random.default_rng(self.spec.seed).random(len(data.prompts))
