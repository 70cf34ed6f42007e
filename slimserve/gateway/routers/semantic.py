"""`semantic`: routes are example utterances embedded with MiniLM; a prompt takes the most similar route whose
threshold it reaches. `fit` on labelled items stores the train items' embeddings and labels (an .npz of plain
arrays) and scores a prompt as the similarity-weighted share of "strong wins" among its k nearest train items,
with the threshold calibrated to `strong_share`; it also fits each route's threshold when routes are given."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import UserError
from .base import ROUTERS, Decision, FitData, Request, Router, share_threshold
from .threshold import labels


@ROUTERS.register("semantic")
class SemanticRouter(Router):
    kind = "semantic"

    def __init__(self, spec, ctx):
        super().__init__(spec, ctx)
        self._routes: list[np.ndarray] | None = None
        self._X = self._y = None
        if spec.fitted:
            p = ctx.path(spec.fitted)
            if not p.is_file():
                raise UserError(f"router '{spec.name}': fitted examples not found", file=str(p), field="fitted",
                                hint="Run: slimserve route fit CONFIG --data DATA")  # fmt: skip
            with np.load(p, allow_pickle=False) as z:
                self._X, self._y = z["X"].astype(np.float32), z["y"].astype(np.float32)

    def _route_embs(self) -> list[np.ndarray]:
        if self._routes is None:
            self._routes = [self.ctx.embedder.encode(list(r.utterances)) for r in self.spec.routes]
        return self._routes

    def _knn(self, embs: np.ndarray, exclude_self: bool = False) -> np.ndarray:
        sims = embs @ self._X.T
        if exclude_self:
            np.fill_diagonal(sims, -np.inf)
        k = min(self.spec.k, self._X.shape[0] - int(exclude_self))
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        w = np.clip(np.take_along_axis(sims, idx, 1), 0, None) + 1e-6
        return (w * self._y[idx]).sum(1) / w.sum(1)

    def score(self, request: Request) -> float:
        return self._decide(self.ctx.embedder.encode_one(request.text)).score

    def _decide(self, emb: np.ndarray) -> Decision:
        best = None
        for r, e in zip(self.spec.routes, self._route_embs(), strict=True):
            sim = float((e @ emb).max())
            if sim >= r.threshold and (best is None or sim > best[1]):
                best = (r, sim)
        if best is not None:
            return Decision(best[0].tier, best[1], f"semantic: route '{best[0].name}' (similarity {best[1]:.3f})")
        if self._X is not None and self.spec.threshold is not None and len(self.spec.tiers) == 2:
            s = float(self._knn(emb[None])[0])
            tier = self.spec.tiers[1] if s >= self.spec.threshold else self.spec.tiers[0]
            return Decision(
                tier, s, f"semantic: {self.spec.k}-NN strong-wins share {s:.3f} vs {self.spec.threshold:.3f}"
            )
        if self.spec.default is None:
            raise UserError(f"router '{self.name}': no route matched and no default tier", field="default")
        return Decision(self.spec.default, 0.0, "semantic: no route matched, default")

    def decide(self, request: Request) -> Decision:
        return self._decide(self.ctx.embedder.encode_one(request.text))

    def eval_scores(self, data: FitData) -> np.ndarray:
        if self._X is None:
            return super().eval_scores(data)
        return self._knn(data.embeddings).astype(np.float64)

    def fit(self, data: FitData):
        if len(self.spec.tiers) != 2:
            raise UserError(f"router '{self.name}': fit needs tiers: [weak, strong]", field="tiers")
        rel = self.spec.fitted or f"{Path(self.ctx.config_path).stem}.{self.name}.npz"
        self._X, self._y = data.embeddings.astype(np.float32), labels(data).astype(np.float32)
        p = self.ctx.path(rel)
        tmp = p.with_name(p.name + ".tmp.npz")
        np.savez(tmp, X=self._X, y=self._y)
        tmp.replace(p)
        th = share_threshold(self._knn(self._X, exclude_self=True), self.spec.strong_share)  # leave-one-out
        routes = [r.model_copy(update={"threshold": self._route_threshold(r, data)}) for r in self.spec.routes]
        return self.spec.model_copy(update={"fitted": rel, "threshold": th, "routes": routes})

    def _route_threshold(self, route, data: FitData) -> float:
        """The lowest similarity at which the train items this route catches mostly belong to its tier."""
        sims = data.embeddings @ self.ctx.embedder.encode(list(route.utterances)).T
        best = sims.max(1)
        want_strong = route.tier == self.spec.tiers[1]
        good = labels(data).astype(bool) == want_strong
        for th in np.arange(0.3, 1.0, 0.02):
            hit = best >= th
            if hit.sum() and good[hit].mean() >= 0.7:
                return round(float(th), 3)
        return 1.0
