"""OpenRouter `/api/v1/models` listing: {"data": [...]} with prices as USD-per-token decimal strings."""

from __future__ import annotations

import datetime as dt
import json

from . import EXPORTERS, ExportContext, per_token_str


def _created(ts: str | None) -> int:
    try:
        return int(dt.datetime.fromisoformat(str(ts).replace("Z", "+00:00")).timestamp())
    except (TypeError, ValueError):
        return 0


@EXPORTERS.register("openrouter")
def render(ctx: ExportContext) -> str:
    data = []
    for t in ctx.targets:
        tier = ctx.tier(t)
        where = "external API" if t.kind == "external" else f"{t.method} on {t.target}"
        lent = [tr.name for tr in ctx.assignment.tiers if tr.borrowed_from and tr.leader == t.id]
        if lent:
            where += f"; also serves {', '.join(lent)} (tiers without a target of their own)"
        data.append(
            {
                "id": t.id,
                "canonical_slug": t.id,
                "hugging_face_id": t.base_model if t.kind == "local" and "/" in (t.base_model or "") else "",
                "name": f"slimserve {tier}: {t.variant}" + ("" if t.kind == "external" else f" ({t.target})"),
                "created": _created(t.created),
                "description": f"{where}; tier {tier}; {t.price_kind} price: {t.price_source}",
                "context_length": t.context_length,
                "architecture": {
                    "modality": "text->text",
                    "input_modalities": ["text"],
                    "output_modalities": ["text"],
                    "tokenizer": "Other",
                    "instruct_type": None,
                },
                "pricing": {
                    "prompt": per_token_str(t.usd_per_1m_input),
                    "completion": per_token_str(t.usd_per_1m_output),
                    "request": "0",
                    "image": "0",
                },
                "top_provider": {
                    "context_length": t.context_length,
                    "max_completion_tokens": None,
                    "is_moderated": False,
                },
                "per_request_limits": None,
                "supported_parameters": ["max_tokens", "temperature", "top_p", "stop", "seed"],
            }
        )
    return json.dumps({"data": data}, indent=2) + "\n"
