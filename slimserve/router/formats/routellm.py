"""RouteLLM config: a strong/weak pair under the keys RouteLLM's Controller and OpenAI-compatible server read.

The file is at once the Controller's keyword arguments and the server's router `--config` (the server looks up only
the section named after each router, e.g. `mf:`):

    from routellm.controller import Controller
    cfg = yaml.safe_load(open("routellm.yaml"))
    client = Controller(**{k: cfg[k] for k in CONTROLLER_KEYS}, config=cfg)
    client.chat.completions.create(model=cfg["model"], messages=[...])

A local weak model is called through litellm's `hosted_vllm/` provider, whose endpoint comes from the environment
variable HOSTED_VLLM_API_BASE (RouteLLM has one api_base for both models, which a cloud strong model cannot share).
"""

from __future__ import annotations

import yaml

from ...errors import UserError
from .. import explain
from . import EXPORTERS, ExportContext, header_comment

CONTROLLER_KEYS = ("routers", "strong_model", "weak_model", "api_base", "api_key")
# Router sections RouteLLM ships as its default (GPT-4-augmented) config; `random` needs none.
ROUTER_CONFIG = {
    "mf": {"checkpoint_path": "routellm/mf_gpt4_augmented"},
    "bert": {"checkpoint_path": "routellm/bert_gpt4_augmented"},
    "causal_llm": {"checkpoint_path": "routellm/causal_llm_gpt4_augmented"},
    "sw_ranking": {
        "arena_battle_datasets": ["lmsys/lmsys-arena-human-preference-55k", "routellm/gpt4_judge_battles"],
        "arena_embedding_datasets": ["routellm/arena_battles_embeddings", "routellm/gpt4_judge_battles_embeddings"],
    },
    "random": {},
}


@EXPORTERS.register("routellm")
def render(ctx: ExportContext) -> str:
    pair = ctx.assignment.routellm
    if not pair.get("weak") or not pair.get("strong"):
        kept = {t.id for t in ctx.targets}
        gone = [t for t in ctx.rejected if t.id not in kept]
        message, hint = explain.routellm_problem(ctx.assignment, ctx.targets, gone)
        raise UserError(message, field="routellm.weak_floor", hint=hint)
    router = pair.get("router", "mf")
    if router not in ROUTER_CONFIG:
        raise UserError(f"unknown RouteLLM router '{router}'", field="routellm.router", allowed=sorted(ROUTER_CONFIG))
    by_id = ctx.by_id()
    weak, strong = by_id[pair["weak"]], by_id[pair["strong"]]
    env: dict[str, str] = {}
    api_base = None
    locals_ = [t for t in (weak, strong) if t.kind == "local"]
    bases = {ctx.endpoint(t) for t in locals_}
    if len(bases) > 1:
        raise UserError(
            f"RouteLLM calls both models through one endpoint, but {weak.id} and {strong.id} are served at "
            f"{sorted(bases)}",
            field="api_base",
            hint="use an api_base without {variant}/{target} placeholders for this export",
        )
    if len(locals_) == 2:
        api_base = bases.pop()
    elif locals_:
        env["HOSTED_VLLM_API_BASE"] = bases.pop()

    def model_name(t):
        if t.kind == "external":
            return t.model
        return f"openai/{t.id}" if api_base else f"hosted_vllm/{t.id}"

    threshold = pair.get("threshold", 0.11593)
    cfg = {
        "routers": [router],
        "strong_model": model_name(strong),
        "weak_model": model_name(weak),
        "api_base": api_base,
        "api_key": None,
        "model": f"router-{router}-{threshold}",
        router: ROUTER_CONFIG[router],
        "slimserve": {
            "env": env,
            "server_command": f"python -m routellm.openai_server --config routellm.yaml --routers {router} "
            f"--strong-model {model_name(strong)} --weak-model {model_name(weak)}"
            + (f" --base-url {api_base}" if api_base else ""),
            "weak": _entry(ctx, weak),
            "strong": _entry(ctx, strong),
            "weak_floor": pair.get("weak_floor"),
            "quality_metric": ctx.assignment.metric,
        },
    }
    return header_comment(ctx, "RouteLLM strong/weak config") + yaml.safe_dump(cfg, sort_keys=False)


def _entry(ctx: ExportContext, t) -> dict:
    return {
        "id": t.id,
        "tier": ctx.tier(t),
        "usd_per_1m_input": t.usd_per_1m_input,
        "usd_per_1m_output": t.usd_per_1m_output,
        "price_kind": t.price_kind,
        "price_source": t.price_source,
        "quality": t.quality,
        "api_base": ctx.endpoint(t),
    }
