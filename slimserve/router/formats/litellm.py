"""LiteLLM proxy/router config: one model_list entry per tier member, model_name = tier.

Costs go in litellm_params (what cost-based routing reads) and again in model_info; router_settings selects
cost-based-routing with fallbacks from each tier to the next one up. A tier without a target of its own (it borrows
one from above) says so in its entries' model_info (`slimserve_borrowed_from`, `slimserve_note`) and in the header. Load with
`litellm.Router(model_list=cfg["model_list"], **cfg["router_settings"])` or `litellm --config router.yaml`.
"""

from __future__ import annotations

import yaml

from . import EXPORTERS, ExportContext, header_comment, per_token_float


@EXPORTERS.register("litellm")
def render(ctx: ExportContext) -> str:
    by_id = ctx.by_id()
    model_list = []
    for tier in ctx.assignment.tiers:
        for tid in tier.members:
            t = by_id[tid]
            costs = {
                "input_cost_per_token": per_token_float(t.usd_per_1m_input),
                "output_cost_per_token": per_token_float(t.usd_per_1m_output),
            }
            params = {"model": t.model if t.kind == "external" else f"openai/{t.id}"}
            base = ctx.endpoint(t)
            if base:
                params["api_base"] = base
            if t.kind == "local":
                params["api_key"] = "none"  # a local OpenAI-compatible server started without --api-key takes any key
            params.update(costs)
            info = {"id": f"{tier.name}/{t.id}", "mode": "chat", **costs, "price_kind": t.price_kind}
            if t.context_length:
                info["max_input_tokens"] = t.context_length
            info["slimserve_target"] = t.id
            if tier.borrowed_from:  # said here too, so three tier names on one model are not silent
                info["slimserve_borrowed_from"] = tier.borrowed_from
                info["slimserve_note"] = (
                    f"tier {tier.name} has no target of its own: it routes to {t.id}, which belongs to "
                    f"{tier.borrowed_from}"
                )
            model_list.append({"model_name": tier.name, "litellm_params": params, "model_info": info})
    fallbacks = []
    for tier in ctx.assignment.tiers:
        up = ctx.assignment.next_up(tier.name)
        if up:
            fallbacks.append({tier.name: [up]})
    cfg = {
        "model_list": model_list,
        "router_settings": {"routing_strategy": "cost-based-routing", "fallbacks": fallbacks},
    }
    return header_comment(ctx, "LiteLLM router config") + yaml.safe_dump(cfg, sort_keys=False)
