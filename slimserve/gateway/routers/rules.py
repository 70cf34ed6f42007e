"""`rules`: the first rule whose conditions all hold names the tier (prompt tokens, regex, keywords, tools, code,
turns); none holds: the default. Score = the chosen tier's position among the tiers, in [0, 1]."""

from __future__ import annotations

import re

from .base import ROUTERS, Decision, Request, Router


def _token_counter(ctx):
    try:
        return ctx.embedder.count_tokens
    except Exception:  # no embedder installed: whitespace words are close enough for a length rule
        return lambda text: len(text.split())


@ROUTERS.register("rules")
class RulesRouter(Router):
    kind = "rules"

    def __init__(self, spec, ctx):
        super().__init__(spec, ctx)
        self._regex = [re.compile(r.regex, re.IGNORECASE) if r.regex else None for r in spec.rules]
        self._count = None

    def _tokens(self, text: str) -> int:
        if self._count is None:
            self._count = _token_counter(self.ctx)
        return self._count(text)

    def _match(self, i: int, req: Request) -> str | None:
        """Why rule i holds, or None."""
        r, why = self.spec.rules[i], []
        if r.min_tokens is not None or r.max_tokens is not None:
            n = self._tokens(req.text)
            if (r.min_tokens is not None and n < r.min_tokens) or (r.max_tokens is not None and n > r.max_tokens):
                return None
            why.append(f"{n} tokens")
        if self._regex[i] is not None:
            if not self._regex[i].search(req.text):
                return None
            why.append(f"matches /{r.regex}/")
        if r.keywords:
            low = req.text.lower()
            hit = next((k for k in r.keywords if k.lower() in low), None)
            if hit is None:
                return None
            why.append(f"keyword '{hit}'")
        for attr in ("has_tools", "has_code"):
            want = getattr(r, attr)
            if want is not None:
                if getattr(req, attr) != want:
                    return None
                why.append(f"{attr}={want}")
        if r.min_turns is not None:
            if req.turns < r.min_turns:
                return None
            why.append(f"{req.turns} turns")
        return ", ".join(why) or "always"

    def _score_of(self, tier: str) -> float:
        n = len(self.ctx.tiers)
        return self.ctx.tiers.index(tier) / (n - 1) if n > 1 else 0.0

    def decide(self, request: Request) -> Decision:
        for i, r in enumerate(self.spec.rules):
            why = self._match(i, request)
            if why is not None:
                return Decision(r.tier, self._score_of(r.tier), f"rules: rule {i} ({why})")
        return Decision(self.spec.default, self._score_of(self.spec.default), "rules: no rule matched, default")

    def score(self, request: Request) -> float:
        return self.decide(request).score
