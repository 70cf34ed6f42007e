"""Bench profiles: how much measurement a run buys with its time.

`quick` (the default) is a first look that finishes in a few minutes on a 2-core laptop; `full` is the rigour behind
published tables (SpeedConfig's own defaults, over an hour for four variants on 2 cores). A flag given explicitly
(--rounds, --new-tokens, --limit, ...) overrides the profile's value. The run config records the profile and the
overrides, and every report header prints them, so a quick number is never mistaken for a full one.

Kept free of torch (plain dicts, validated into SpeedConfig/QualityConfig by the caller), so reports can import it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from ..errors import UserError


class Profile(BaseModel):
    """SpeedConfig and QualityConfig values that differ from those classes' defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    summary: str
    speed: dict[str, Any] = {}
    quality: dict[str, Any] = {}


PROFILES: dict[str, Profile] = {
    "quick": Profile(
        name="quick",
        summary="a quick look: one round and short scenarios; use --full before publishing a number",
        # What the price still needs: prefill (input cost), batch-1 decode with ITL (cost on CPU torch, where
        # batching misses the SLO) and one batch > 1 (ONNX, where batching pays). Prompt 512 and batch 4 go.
        speed={
            "rounds": 1,
            "min_seconds": 0.5,
            "max_iters": 10,
            "prompt_lens": (128,),
            "new_tokens": 32,
            "batches": (1, 8),
            "batch_prompt_len": 64,
            "batch_new_tokens": 16,
        },
        # 16 windows of 512 (4351 scored tokens) keep KLD/top-1 fit for quality gates; accuracy on 10 questions
        # per task is only a smoke test (its 95% interval is about ±30 points).
        quality={"windows": 16, "mc_limit": 10},
    ),
    "full": Profile(
        name="full",
        summary="rigour for published tables: interleaved rounds, long decodes, batches 1/4/16",
        quality={"windows": 32},
    ),
}
DEFAULT_PROFILE = "quick"


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise UserError(f"unknown bench profile '{name}'", field="--profile", allowed=list(PROFILES))
    return PROFILES[name]


def profile_line(config: dict[str, Any]) -> str | None:
    """Report header line naming the run's profile, its key settings and any overrides; None for older runs."""
    name = config.get("profile")
    if not name:
        return None
    s, q = config.get("speed") or {}, config.get("quality") or {}
    summary = PROFILES[name].summary if name in PROFILES else ""
    parts = [
        f"{s.get('rounds', '?')} round(s)",
        "prompts " + ",".join(str(n) for n in s.get("prompt_lens", [])),
        f"decode {s.get('new_tokens', '?')} tokens x {s.get('decode_iters', '?')}",
        "batches " + ",".join(str(b) for b in s.get("batches", [])),
        f"{q.get('windows', '?')} perplexity windows of {q.get('ctx', '?')}",
        f"{q.get('mc_limit', '?')} questions per task",
    ]
    given = config.get("profile_overrides") or []
    extra = f"; overridden: {', '.join(given)}" if given else ""
    return f"- profile: **{name}** ({summary}): {', '.join(parts)}{extra}"
