"""Forward one request to one tier: a local tier over HTTP to its `slimserve serve` (httpx, streamed through), an
external one through LiteLLM (`litellm.acompletion` / `atext_completion`), with its key read from the environment.

A failure the next tier may absorb (unreachable, timed out, 429, 5xx, no key) raises TierFailed; any other upstream
answer (a 400 for a bad request) becomes a ProtocolError for the client as it is. A stream is opened and its first
event read before the gateway commits to it, so a tier that fails before it says anything still falls back.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ..serve.protocol import ProtocolError
from .config import TierSpec

PATHS = {"chat": "/chat/completions", "completions": "/completions"}


class TierFailed(Exception):
    """The tier could not answer; `kind` labels the metric (unreachable, timeout, 429, 5xx, missing_key, error)."""

    def __init__(self, tier: str, kind: str, message: str):
        super().__init__(f"tier '{tier}': {message}")
        self.tier, self.kind = tier, kind


@dataclass
class Answer:
    """A tier's answer: the body (non-stream), or its events as dicts, the first one already read (stream)."""

    tier: str
    body: dict | None = None
    events: AsyncIterator[dict] | None = None


def _upstream_error(tier: str, status: int, raw: bytes | str) -> ProtocolError:
    """The upstream's OpenAI-shaped error, passed on (its message prefixed with the tier)."""
    try:
        err = json.loads(raw)["error"]
        msg, param, code = str(err.get("message")), err.get("param"), err.get("code")
    except (ValueError, KeyError, TypeError, AttributeError):
        msg, param, code = (raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw))[:500], None, None
    return ProtocolError(status, f"tier '{tier}': {msg}", param=param, code=code)


async def _peeked(first: dict, rest: AsyncIterator[dict]) -> AsyncIterator[dict]:
    try:
        yield first
        async for ev in rest:
            yield ev
    finally:
        await rest.aclose()


async def _first(tier: str, events: AsyncIterator[dict]) -> AsyncIterator[dict]:
    """Read the first event: a stream that dies or errors before it is a TierFailed (the next tier may answer)."""
    try:
        first = await anext(events)
    except StopAsyncIteration:
        raise TierFailed(tier, "error", "the stream ended before its first event") from None
    if "error" in first:
        await events.aclose()
        raise TierFailed(tier, "error", f"the stream began with an error: {first['error'].get('message')}")
    return _peeked(first, events)


class LocalTier:
    """A catalog variant behind `slimserve serve`: its api_base, or the catalog's live `served` record."""

    def __init__(self, spec: TierSpec, client, catalog: Any = None):
        self.spec, self.client, self.catalog = spec, client, catalog
        self.model = spec.model or spec.variant or spec.name

    def endpoint(self) -> str:
        if self.spec.api_base:
            return self.spec.api_base.rstrip("/")
        if self.spec.variant and self.catalog is not None:
            from .. import served

            for rec in served.live(self.catalog):
                if rec.variant == self.spec.variant and self.spec.target in (None, rec.target):
                    return rec.endpoint.rstrip("/")
        raise TierFailed(self.spec.name, "unreachable", f"variant '{self.spec.variant}' is not being served (no "
                         f"api_base and no live `served` record in the catalog; start: slimserve serve "
                         f"{self.spec.variant})")  # fmt: skip

    async def send(self, kind: str, body: dict, stream: bool) -> Answer:
        import httpx

        name, url = self.spec.name, self.endpoint() + PATHS[kind]
        payload = {**body, "model": self.model}
        if stream:
            payload["stream_options"] = {"include_usage": True}  # usage for the cost counters; dropped if not asked
        try:
            req = self.client.build_request("POST", url, json=payload, timeout=self.spec.timeout_s)
            resp = await self.client.send(req, stream=stream)
        except httpx.TimeoutException:
            raise TierFailed(name, "timeout", f"no answer from {url} within {self.spec.timeout_s:g} s") from None
        except httpx.TransportError as e:
            raise TierFailed(name, "unreachable", f"{url} is unreachable ({type(e).__name__}: {e})") from None
        if resp.status_code != 200:
            raw = await resp.aread()
            await resp.aclose()
            if resp.status_code == 429 or resp.status_code >= 500:
                kind_ = "429" if resp.status_code == 429 else "5xx"
                raise TierFailed(name, kind_, str(_upstream_error(name, resp.status_code, raw)))
            raise _upstream_error(name, resp.status_code, raw)
        if not stream:
            return Answer(name, body=resp.json())
        return Answer(name, events=await _first(name, self._events(resp)))

    async def _events(self, resp) -> AsyncIterator[dict]:
        import httpx

        try:
            async for line in resp.aiter_lines():
                if not line.startswith("data: "):
                    continue
                if line[6:] == "[DONE]":
                    return
                yield json.loads(line[6:])
        except httpx.TimeoutException:
            yield {"error": {"message": f"tier '{self.spec.name}' stopped sending for {self.spec.timeout_s:g} s",
                             "type": "timeout_error", "param": None, "code": "timeout"}}  # fmt: skip
        finally:
            await resp.aclose()


def _litellm(tier: str):
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # offline: litellm's bundled price map
    try:
        import litellm
    except ImportError as e:
        raise TierFailed(tier, "error", f"external tiers need litellm (pip install litellm): {e}") from None
    return litellm


def missing_key(spec: TierSpec) -> str | None:
    """The environment variable an external tier needs and lacks, or None."""
    env = spec.api_key_env
    return env if env and not os.environ.get(env) else None


class ExternalTier:
    """A LiteLLM model; its key comes from the environment variable `api_key_env`, never from the config."""

    def __init__(self, spec: TierSpec):
        self.spec = spec
        self.model = spec.model

    async def send(self, kind: str, body: dict, stream: bool) -> Answer:
        spec = self.spec
        env = missing_key(spec)
        if env:
            raise TierFailed(spec.name, "missing_key", f"the environment variable {env} is not set (external keys "
                             f"are read from the gateway's environment, never from its config)")  # fmt: skip
        litellm = _litellm(spec.name)
        kw = {k: v for k, v in body.items() if k not in ("model", "stream")}
        kw.update(spec.litellm_params, model=spec.model, timeout=spec.timeout_s, stream=stream)
        if spec.api_key_env:
            kw["api_key"] = os.environ[spec.api_key_env]
        if spec.api_base:
            kw["api_base"] = spec.api_base
        call = litellm.acompletion if kind == "chat" else litellm.atext_completion
        try:
            resp = await call(**kw)
            if not stream:
                return Answer(spec.name, body=resp.model_dump())
            return Answer(spec.name, events=await _first(spec.name, self._events(resp)))
        except (TierFailed, ProtocolError):
            raise
        except Exception as e:  # noqa: BLE001 (litellm maps every provider's errors; sorted by status below)
            raise self._failure(e) from None

    def _failure(self, e: Exception) -> Exception:
        status = getattr(e, "status_code", None)
        what = f"{type(e).__name__}: {e}"
        if status in (400, 422):
            return ProtocolError(400, f"tier '{self.spec.name}' rejected the request: {what}")
        if status in (401, 403, 404):  # the gateway's key or model name is wrong, not the client's request
            return ProtocolError(502, f"tier '{self.spec.name}' ({self.spec.model}) refused: {what}; check "
                                 f"{self.spec.api_key_env or 'its key'} and the tier's model", code="upstream_refused")  # fmt: skip
        kind = "timeout" if status == 408 else "429" if status == 429 else "error"
        return TierFailed(self.spec.name, kind, what)

    async def _events(self, resp) -> AsyncIterator[dict]:
        async for chunk in resp:
            yield chunk.model_dump()
