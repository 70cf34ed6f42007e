"""One completion request through the gateway: cache, router, fallback chain, then the answer with its decision.

Non-streamed answers are the tier's body plus `router_model_name`; streamed ones pass every event through with
`router_model_name` added. A cache hit replays the stored answer (as one chunk when streamed). What a stream said is
assembled into a completion so that the cache can keep it too.

A cascade router asks its tiers in order, each non-streamed with logprobs on, and keeps the first answer whose
confidence reaches the threshold (a kept answer the client wanted streamed is replayed as a stream); the last tier
gets the client's request as it is, streamed if asked. The discarded answers are counted and paid for.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ..serve.protocol import DONE, ProtocolError, new_id, sse
from .cache import cacheable, scope_of
from .routers import Request as RouteRequest
from .routers.base import content_text


def _headers(route: str, score: float | None, cache: str, router: str | None, failed: list[str]) -> dict:
    h = {"x-slimserve-route": route, "x-slimserve-score": f"{score:.4f}" if score is not None else "",
         "x-slimserve-cache": cache, "x-slimserve-router": router or "-"}  # fmt: skip
    if failed:
        h["x-slimserve-fallback"] = ",".join(failed) + "->" + route  # the tiers that failed, then the one answering
    return h


def _route_request(kind: str, body: dict) -> RouteRequest:
    if kind == "chat":
        return RouteRequest.from_chat(body)
    p = body.get("prompt")
    return RouteRequest.from_prompt(p if isinstance(p, str) else p[0] if p and isinstance(p[0], str) else "")


def _cache_prompt(kind: str, body: dict) -> str:
    """The text the cache keys on: the whole conversation, one 'role: text' line per message."""
    if kind == "chat":
        return "\n".join(f"{m.get('role')}: {content_text(m.get('content'))}" for m in body["messages"])
    p = body["prompt"]
    return p if isinstance(p, str) else str(p[0]) if isinstance(p[0], str) else " ".join(map(str, p))


class Slot:
    """Bounded concurrency: at most max_concurrency requests forward at once, max_waiting wait, the rest get 429."""

    def __init__(self, gw):
        self.gw, self.held = gw, False

    async def acquire(self) -> Slot:
        gw = self.gw
        if gw.waiting >= gw.max_concurrency + gw.max_waiting:
            raise ProtocolError(429, f"the gateway is at capacity ({gw.waiting} requests in flight); retry shortly",
                                code="gateway_busy", headers={"Retry-After": "1"})  # fmt: skip
        gw.waiting += 1
        gw.metrics.in_flight.inc()
        await gw.sem.acquire()
        self.held = True
        return self

    def release(self) -> None:
        if self.held:
            self.held = False
            self.gw.sem.release()
            self.gw.waiting -= 1
            self.gw.metrics.in_flight.dec()


async def handle(gw, kind: str, req) -> Any:
    from fastapi.responses import JSONResponse

    body = req.model_dump(exclude_unset=True, mode="json")
    router, tier = gw.lookup(req.model)
    stream = bool(req.stream)
    slot = await Slot(gw).acquire()  # released below, or by the stream when it ends
    try:
        use_cache = gw.cache is not None and cacheable(body, gw.cfg.cache.cache_sampled)
        scope = prompt = None
        if use_cache:
            scope, prompt = scope_of(f"{kind}:{req.model}", body), _cache_prompt(kind, body)
            hit = await asyncio.to_thread(gw.cache.get, scope, prompt)
            gw.metrics.cache.labels("hit" if hit else "miss").inc()
            if hit:
                entry, _how = hit
                gw.count(entry["route"], entry["response"].get("usage"), cached=True)
                headers = _headers(entry["route"], entry.get("score"), "hit", router, [])
                if stream:
                    return _stream(_replay(kind, entry, req.include_usage), headers)
                return JSONResponse(entry["response"], headers=headers)
        decision = await asyncio.to_thread(gw.decide, router, tier, _route_request(kind, body))
        gw.metrics.routed.labels(router or "-", decision.target).inc()
        extra = 0.0
        if router is not None and gw.routers[router].kind == "cascade":
            answer, failed, score, why, extra = await _cascade(gw, router, kind, body, stream)
        else:
            answer, failed = await gw.forward(decision.target, kind, body, stream)
            score, why = decision.score, decision.reason
        gw.metrics.answered.labels(answer.tier).inc()
        headers = _headers(answer.tier, score, "miss", router, failed)
        headers["x-slimserve-reason"] = why.encode("ascii", "replace").decode()[:300]
        keep = (lambda resp: gw.cache.put(scope, prompt, {"route": answer.tier, "score": score,
                                                         "response": resp})) if use_cache else None  # fmt: skip
        if stream and answer.events is not None:
            events = _relay(gw, kind, answer, req.include_usage, keep, slot, extra)
            slot = None  # the stream releases it
            return _stream(events, headers)
        out = {**answer.body, "router_model_name": answer.tier}
        gw.count(answer.tier, out.get("usage"), extra_usd=extra)
        if keep is not None:
            await asyncio.to_thread(keep, out)
        if stream:  # a cascade's kept (non-streamed) answer, replayed
            return _stream(_replay(kind, {"response": out, "route": answer.tier}, req.include_usage), headers)
        return JSONResponse(out, headers=headers)
    finally:
        if slot is not None:
            slot.release()


def _probe(kind: str, body: dict) -> dict:
    """The client's request as a cascade asks a tier that may be overruled: whole, with the tokens' log-probs."""
    out = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
    out["logprobs"] = True if kind == "chat" else 0
    return out


def _wanted_logprobs(kind: str, body: dict) -> bool:
    return bool(body.get("logprobs")) if kind == "chat" else body.get("logprobs") is not None


async def _cascade(gw, router: str, kind: str, body: dict, stream: bool):
    """(answer, failed tiers, confidence, reason, cost of the discarded answers) of a cascade router."""
    r = gw.routers[router]
    tiers = r.spec.tiers
    level, failed, reasons, score, extra = 0, [], [], None, 0.0
    while True:
        if level + 1 >= len(tiers):  # nothing above to escalate to: the client's request as it is
            answer, more = await gw.forward(tiers[level], kind, body, stream)
            return answer, failed + more, score, "; ".join(reasons) or "cascade: the last tier", extra
        answer, more = await gw.forward(tiers[level], kind, _probe(kind, body), False)
        failed += more
        level = tiers.index(answer.tier) if answer.tier in tiers else level  # a fallback may have answered
        score = r.confidence(kind, answer.body)
        up = r.escalate(score, level)
        if up is None:
            if not _wanted_logprobs(kind, body):
                for ch in answer.body.get("choices") or []:
                    ch["logprobs"] = None  # asked for the confidence; the client did not ask
            reasons.append(r.kept(score, answer.tier) if score is not None else f"cascade: kept {answer.tier}")
            return answer, failed, score, "; ".join(reasons), extra
        gw.metrics.escalations.labels(router, answer.tier, up.target).inc()
        extra += gw.discard(answer.tier, answer.body.get("usage"))
        reasons.append(up.reason)
        level = tiers.index(up.target)


def _stream(events, headers: dict):
    from fastapi.responses import StreamingResponse

    return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache", **headers})


def _assembled(kind: str, first: dict | None, text: str, finish: str | None, usage: dict | None, tier: str) -> dict:
    """A streamed answer as the non-streamed completion it amounts to (what the cache keeps)."""
    head = {"id": (first or {}).get("id") or new_id("chatcmpl" if kind == "chat" else "cmpl"),
            "created": (first or {}).get("created") or int(time.time()), "model": (first or {}).get("model")}  # fmt: skip
    if kind == "chat":
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish,
                  "logprobs": None}  # fmt: skip
        return {**head, "object": "chat.completion", "choices": [choice], "usage": usage, "router_model_name": tier}
    choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
    return {**head, "object": "text_completion", "choices": [choice], "usage": usage, "router_model_name": tier}


async def _relay(gw, kind: str, answer, include_usage: bool, keep, slot: Slot, extra_usd: float = 0.0):
    """Pass the tier's events through with router_model_name; count and cache what it said once it ends."""
    parts: list[str] = []
    first = finish = usage = None
    ok = True
    try:
        async for ev in answer.events:
            if "error" in ev:
                ok = False
                yield sse(ev)
                continue
            first = first or ev
            ev["router_model_name"] = answer.tier
            for ch in ev.get("choices") or []:
                piece = (ch.get("delta") or {}).get("content") if kind == "chat" else ch.get("text")
                parts.append(piece or "")
                finish = ch.get("finish_reason") or finish
            if ev.get("usage"):
                usage = ev["usage"]
                if not ev.get("choices") and not include_usage:
                    continue  # the gateway asked for usage (cost counters); this client did not
            yield sse(ev)
        if keep is not None and ok and finish is not None:  # before [DONE]: the client's next request may hit it
            await asyncio.to_thread(keep, _assembled(kind, first, "".join(parts), finish, usage, answer.tier))
            keep = None
        yield DONE
    except Exception as e:  # noqa: BLE001 (the status line is sent: the error goes out as an event)
        ok = False
        yield sse(ProtocolError(502, f"tier '{answer.tier}' failed mid-stream: {type(e).__name__}: {e}").body())
        yield DONE
    finally:
        await answer.events.aclose()  # a client gone mid-stream: the tier's stream (and its slot there) ends too
        slot.release()
        gw.count(answer.tier, usage, extra_usd=extra_usd)


async def _replay(kind: str, entry: dict, include_usage: bool):
    """A cached completion as a stream: the whole text in one chunk, the finish, the usage if asked, [DONE]."""
    resp, tier = entry["response"], entry["route"]
    choice = (resp.get("choices") or [{}])[0]
    head = {"id": resp.get("id"), "created": resp.get("created"), "model": resp.get("model"),
            "router_model_name": tier}  # fmt: skip
    if kind == "chat":
        text = (choice.get("message") or {}).get("content") or ""
        obj = "chat.completion.chunk"
        body = {"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": None,
                "logprobs": choice.get("logprobs")}  # fmt: skip
        end = {"index": 0, "delta": {}, "finish_reason": choice.get("finish_reason"), "logprobs": None}
    else:
        obj = "text_completion"
        body = {"index": 0, "text": choice.get("text") or "", "finish_reason": None,
                "logprobs": choice.get("logprobs")}  # fmt: skip
        end = {"index": 0, "text": "", "finish_reason": choice.get("finish_reason"), "logprobs": None}
    yield sse({**head, "object": obj, "choices": [body]})
    yield sse({**head, "object": obj, "choices": [end]})
    if include_usage and resp.get("usage"):
        yield sse({**head, "object": obj, "choices": [], "usage": resp["usage"]})
    yield DONE
