"""`slimserve route serve`: an OpenAI-compatible gateway over the config's tiers (the API of `slimserve serve`).

model="auto" takes the default router (else the first), "router-<name>" a named one, a tier's name that tier. The
semantic cache answers first; on a miss the router picks a tier and the request goes down that tier's fallback chain
(`TierSpec.fallbacks`, default: the tiers after it) until one answers. Every answer says what happened, in headers
(x-slimserve-route, -score, -cache, -router, -fallback) and in the body (`router_model_name`, in every stream chunk).

Fallback is this module's own loop rather than LiteLLM's Router: the route headers go out before a stream's first
byte, so the gateway must know which tier answers before it commits; local answers pass through as slimserve serve
wrote them; and Router's cooldowns would turn one failed request into skipped tiers for later ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request  # module level: the routes' annotations resolve against this module

from ..errors import UserError
from ..serve.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    ModelCard,
    ModelList,
    ProtocolError,
    check_api_key,
    install_error_handlers,
    install_request_counter,
    parse_request,
)
from . import config as C
from .cache import SemanticCache
from .forward import Answer, ExternalTier, LocalTier, TierFailed, missing_key
from .metrics import GatewayMetrics
from .routers import Decision, build_router
from .routers import Request as RouteRequest

ROUTES = ("/health", "/metrics", "/v1/models", "/v1/chat/completions", "/v1/completions")
ROUTER_PREFIX = "router-"


@dataclass
class Gateway:
    """Everything a request needs: the config, its routers and tiers, the cache, the metrics, the prices."""

    cfg: C.GatewayConfig
    cfg_path: Path
    catalog: Any = None
    api_key: str | None = None
    max_concurrency: int = 64
    max_waiting: int = 256
    routers: dict[str, Any] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)  # router -> why it cannot decide (e.g. not fitted)
    tiers: dict[str, Any] = field(default_factory=dict)
    prices: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    cache: SemanticCache | None = None
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)
    client: Any = None
    sem: asyncio.Semaphore | None = None
    waiting: int = 0

    # ---------------------------------------------------------------------------------------------------- models

    def model_names(self) -> list[str]:
        routers = ["auto"] + [ROUTER_PREFIX + r for r in self.routers] if self.routers else []
        return routers + list(self.tiers)

    def lookup(self, model: str) -> tuple[str | None, str | None]:
        """(router name, tier name) for a request's model; 404 listing the routers when it is neither."""
        if model == "auto" and self.routers:
            return self.cfg.default_router or next(iter(self.routers)), None
        if model.startswith(ROUTER_PREFIX) and model[len(ROUTER_PREFIX) :] in self.routers:
            return model[len(ROUTER_PREFIX) :], None
        if model in self.tiers:
            return None, model
        routers = ", ".join(["auto"] + [ROUTER_PREFIX + r for r in self.routers]) if self.routers else "(none)"
        raise ProtocolError(404, f"The model '{model}' does not exist here; routers: {routers}; tiers: "
                            f"{', '.join(self.tiers)}", param="model", code="model_not_found")  # fmt: skip

    def decide(self, router: str | None, tier: str | None, req: RouteRequest) -> Decision:
        if router is None:
            names = list(self.tiers)
            return Decision(tier, names.index(tier) / max(len(names) - 1, 1), f"direct: the model names tier '{tier}'")
        if router in self.broken:
            raise ProtocolError(503, f"router '{router}' cannot route: {self.broken[router]}", code="router_unready")
        try:
            return self.routers[router].decide(req)
        except UserError as e:
            raise ProtocolError(503, f"router '{router}' cannot route: {e}", code="router_unready") from e

    # -------------------------------------------------------------------------------------------------- forward

    async def forward(self, first: str, kind: str, body: dict, stream: bool) -> tuple[Answer, list[str]]:
        """The first tier of the chain that answers, and the tiers that failed before it."""
        failed: list[TierFailed] = []
        for name in self.cfg.fallback_chain(first):
            if failed:
                self.metrics.fallbacks.labels(failed[-1].tier, name).inc()
            try:
                return await self.tiers[name].send(kind, body, stream), [f.tier for f in failed]
            except TierFailed as e:
                e.tier = name
                self.metrics.failures.labels(name, e.kind).inc()
                print(f"gateway: {e}", file=sys.stderr, flush=True)
                failed.append(e)
        code = "missing_api_key" if failed[0].kind == "missing_key" else "tiers_unavailable"
        tried = "; ".join(str(f) for f in failed)
        hint = "" if self.cfg.allow_local_fallback else " (an external tier falls back to a local one only with " \
            "allow_local_fallback: true)"  # fmt: skip
        raise ProtocolError(503, f"no tier could answer: {tried}{hint}", code=code)

    # ------------------------------------------------------------------------------------------------------ cost

    def discard(self, tier: str, usage: dict | None) -> float:
        """Count a cascade answer thrown away on escalation; its estimated cost (0 when unpriced), for count()."""
        pt, ct = int((usage or {}).get("prompt_tokens") or 0), int((usage or {}).get("completion_tokens") or 0)
        for kind, n in (("prompt", pt), ("completion", ct)):
            self.metrics.discarded.labels(tier, kind).inc(n)
            self.metrics.tokens.labels(tier, kind).inc(n)
        own = self.prices.get(tier, (None, None))
        if None in own:
            return 0.0
        cost = (own[0] * pt + own[1] * ct) / 1e6
        self.metrics.discarded_cost.inc(cost)
        return cost

    def count(self, tier: str | None, usage: dict | None, *, cached: bool = False, extra_usd: float = 0.0) -> None:
        """Tokens, cost at the tier that answered (0 for a cache hit; plus extra_usd, a cascade's discarded answers)
        and the baseline at the priciest tier."""
        if not usage:
            self.metrics.unpriced.labels(tier or "?").inc()
            return
        pt, ct = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        if not cached and tier is not None:
            self.metrics.tokens.labels(tier, "prompt").inc(pt)
            self.metrics.tokens.labels(tier, "completion").inc(ct)
        top = self.priciest()
        own = (0.0, 0.0) if cached else self.prices.get(tier, (None, None))
        if top is None or None in own:
            self.metrics.unpriced.labels(tier or "?").inc()
            return
        cost = (own[0] * pt + own[1] * ct) / 1e6 + extra_usd
        base = (top[0] * pt + top[1] * ct) / 1e6
        self.metrics.cost.inc(cost)
        self.metrics.baseline.inc(base)
        self.metrics.saved.inc(max(base - cost, 0.0))

    def priciest(self) -> tuple[float, float] | None:
        from .api import blend

        priced = [p for p in self.prices.values() if None not in p]
        return max(priced, key=lambda p: blend(*p)) if priced else None

    # ------------------------------------------------------------------------------------------------ lifecycle

    def warm(self) -> None:
        """Try each router once (loads the embedder, reads fitted files); say which cannot route and why."""
        probe = RouteRequest.from_prompt("hello")
        for name, r in self.routers.items():
            why = r.unservable() if hasattr(r, "unservable") else None
            if why:
                self.broken[name] = why
                print(f"note: router '{name}' cannot route: {why}", file=sys.stderr, flush=True)
                continue
            try:
                r.decide(probe)
            except Exception as e:  # noqa: BLE001 (an unfitted or broken router: its requests get 503 saying why)
                self.broken[name] = f"{type(e).__name__}: {e}"
                print(f"note: router '{name}' cannot route: {self.broken[name]}", file=sys.stderr, flush=True)
        for t in self.cfg.tiers:
            if t.kind == "external" and missing_key(t):
                print(f"note: tier '{t.name}' needs the environment variable {t.api_key_env}", file=sys.stderr)
        if any(t.kind == "external" for t in self.cfg.tiers):
            from .forward import _litellm

            try:
                _litellm("external")  # seconds to import: before the first request, not during it
            except TierFailed as e:  # every external request will say so too
                print(f"note: {e}", file=sys.stderr, flush=True)


def build_gateway(config: str | Path, *, catalog: Any = None, api_key: str | None = None,
                  max_concurrency: int = 64, max_waiting: int = 256) -> Gateway:  # fmt: skip
    """The gateway of a config file: routers built, tiers priced, the cache opened (nothing listens yet)."""
    from .api import context, load, tier_prices

    cfg, cat = load(config, catalog)
    if cat is None and cfg.catalog is not None:
        from .api import open_catalog

        with contextlib.suppress(UserError):
            cat = open_catalog(cfg, Path(config))
    gw = Gateway(cfg, Path(config), cat, api_key, max_concurrency, max_waiting)
    ctx = context(cfg, config)
    gw.routers = {r.name: build_router(r, ctx) for r in cfg.routers}
    for t in cfg.tiers:
        gw.tiers[t.name] = ExternalTier(t) if t.kind == "external" else LocalTier(t, None, cat)
        gw.prices[t.name] = tier_prices(t, cat)[:2]
    if cfg.cache.enabled:
        embed = None
        if cfg.cache.threshold is not None:
            embed = ctx.embedder.encode_one  # a semantic hit needs embeddings; exact hits do not
        path = C.resolve(config, cfg.cache.path, "route-cache.sqlite")
        gw.cache = SemanticCache(path, ttl_s=cfg.cache.ttl_s, max_entries=cfg.cache.max_entries,
                                 threshold=cfg.cache.threshold, embed=embed)  # fmt: skip
    return gw


def create_app(gw: Gateway):
    """The FastAPI app of a gateway."""
    import httpx
    from fastapi import FastAPI
    from fastapi.responses import Response

    from . import handlers

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        gw.sem = asyncio.Semaphore(gw.max_concurrency)
        gw.client = httpx.AsyncClient(limits=httpx.Limits(max_connections=gw.max_concurrency))
        for t in gw.tiers.values():
            if isinstance(t, LocalTier):
                t.client = gw.client
        await asyncio.to_thread(gw.warm)
        yield
        await gw.client.aclose()

    app = FastAPI(title="slimserve gateway", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    install_error_handlers(app)

    install_request_counter(app, gw.metrics.http, ROUTES)

    @app.get("/health")
    async def health():
        return {"status": "ok", "routers": list(gw.routers), "unready_routers": gw.broken, "tiers": list(gw.tiers)}

    @app.get("/metrics")
    async def metrics():
        body, ctype = gw.metrics.render()
        return Response(body, media_type=ctype)

    @app.get("/v1/models")
    async def models(request: Request):
        check_api_key(gw.api_key, request.headers)
        cards = [ModelCard(id=m, owned_by="slimserve-gateway") for m in gw.model_names() if m not in gw.tiers]
        cards += [ModelCard(id=t, tier=t, price_per_1m_output_tokens_usd=gw.prices[t][1]) for t in gw.tiers]
        return ModelList(data=cards).model_dump()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        check_api_key(gw.api_key, request.headers)
        req = parse_request(ChatCompletionRequest, await request.body())
        return await handlers.handle(gw, "chat", req)

    @app.post("/v1/completions")
    async def complete(request: Request):
        check_api_key(gw.api_key, request.headers)
        req = parse_request(CompletionRequest, await request.body())
        return await handlers.handle(gw, "completions", req)

    app.state.gateway = gw
    return app


def serve(config: str | Path, *, host: str = "127.0.0.1", port: int = 8100, api_key: str | None = None,
          catalog: Any = None, max_concurrency: int = 64, max_waiting: int = 256) -> None:  # fmt: skip
    """Run the gateway until SIGTERM / Ctrl-C (what `slimserve route serve` calls)."""
    import uvicorn

    from ..serve.run import bind

    gw = build_gateway(config, catalog=catalog, api_key=api_key, max_concurrency=max_concurrency,
                       max_waiting=max_waiting)  # fmt: skip
    sock, url = bind(host, port)
    print(f"gateway listening on {url}/v1 (models: {', '.join(gw.model_names())})", file=sys.stderr)
    uvicorn.Server(uvicorn.Config(create_app(gw), log_level="warning", access_log=False)).run(sockets=[sock])
