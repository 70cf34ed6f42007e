"""`slimserve route serve` end to end: a real `slimserve serve` of a tiny random Llama as the local tier (found
through the catalog's `served` records), failing tiers in front of it, an external tier through LiteLLM's
mock_response (offline), and the real `openai` client against the gateway. Seconds, no real model."""

from __future__ import annotations

import asyncio
import os
import re
import time

import httpx
import pytest
import yaml

pytest.importorskip("fastapi")
pytest.importorskip("onnxruntime")
openai = pytest.importorskip("openai", reason="the openai client is a test dependency (pip install openai)")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before the import: no fetch of its price map
pytest.importorskip("litellm", reason="litellm is a test dependency (pip install litellm)")

from slimserve.cli import main  # noqa: E402
from slimserve.gateway.app import build_gateway, create_app  # noqa: E402
from slimserve.serve.app import create_app as serve_app  # noqa: E402
from slimserve.serve.server import ServeConfig  # noqa: E402

from .serve_helpers import build_tiny_catalog, free_port, running  # noqa: E402

KEY_ENV, MISSING_ENV = "SLIMSERVE_TEST_PREMIUM_KEY", "SLIMSERVE_TEST_MISSING_KEY"
MOCK = "a mocked premium answer"
HI = [{"role": "user", "content": "It is a truth universally acknowledged"}]


def failing_app():
    """A tier that answers 429 (/busy), 500 (/boom) or too late (/slow)."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI()

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.post("/{mode}/v1/{rest:path}")
    async def answer(mode: str, rest: str):
        if mode == "slow":
            await asyncio.sleep(1.5)
        status = 429 if mode == "busy" else 500
        err = {"message": f"{mode} on purpose", "type": "rate_limit_error", "param": None, "code": mode}
        return JSONResponse({"error": err}, status_code=status)

    return app


def write_config(path, cat, fake: str, **extra) -> str:
    def local(name, **kw):
        return {"name": name, "variant": "onnx", **kw}

    cfg = {
        "catalog": str(cat),
        "tiers": [
            local("down", api_base=f"http://127.0.0.1:{free_port()}/v1", timeout_s=5),  # nothing listens there
            local("busy", api_base=f"{fake}/busy/v1"),
            local("boom", api_base=f"{fake}/boom/v1"),
            local("slow", api_base=f"{fake}/slow/v1", timeout_s=0.3),
            local("nano"),  # no api_base: the catalog's live `served` record says where
            {"name": "premium", "kind": "external", "model": "openai/gpt-4o-mini", "api_key_env": KEY_ENV,
             "litellm_params": {"mock_response": MOCK}, "usd_per_1m_input": 0.15, "usd_per_1m_output": 0.6},
            {"name": "nokey", "kind": "external", "model": "openai/gpt-4o", "api_key_env": MISSING_ENV,
             "fallbacks": ["nano"]},
        ],
        "routers": [
            {"name": "local", "kind": "rules", "default": "nano", "rules": [{"tier": "premium", "keywords": ["hard"]}]},
            {"name": "fallback", "kind": "rules", "default": "down", "rules": [{"tier": "busy", "keywords": ["x"]}]},
            {"name": "ext", "kind": "rules", "default": "premium", "rules": [{"tier": "nano", "keywords": ["x"]}]},
            {"name": "nokey", "kind": "rules", "default": "nokey", "rules": [{"tier": "nano", "keywords": ["x"]}]},
        ],
        "default_router": "local",
        "cache": {"path": str(path.parent / f"{path.stem}-cache.sqlite")},
        **extra,
    }  # fmt: skip
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(path)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """(gateway URL, config path, fake tier URL) over a real `slimserve serve` of the tiny catalog's onnx variant."""
    tmp = tmp_path_factory.mktemp("gateway")
    cat = build_tiny_catalog(tmp, max_positions=512)
    port = free_port()
    served, _ = serve_app(ServeConfig(catalog=str(cat), variants=["onnx"], context=512, max_batch=4),
                          endpoint=f"http://127.0.0.1:{port}/v1")  # fmt: skip
    os.environ[KEY_ENV] = "sk-test-not-a-real-key"
    os.environ.pop(MISSING_ENV, None)
    with running(served, port=port), running(failing_app()) as fake:
        cfg = write_config(tmp / "router.yaml", cat, fake)
        with running(create_app(build_gateway(cfg))) as gw:
            yield gw, cfg, fake, cat
    os.environ.pop(KEY_ENV, None)


@pytest.fixture(scope="module")
def client(stack):
    return openai.OpenAI(base_url=stack[0] + "/v1", api_key="unused", max_retries=0, timeout=60)


def metric(url: str, name: str, **labels) -> float:
    text = httpx.get(url + "/metrics").text
    sel = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pat = re.escape(name) + (r"\{" + re.escape(sel) + r"\}" if labels else "") + r" ([0-9.e+-]+)$"
    m = re.search(pat, text, re.MULTILINE)
    return float(m.group(1)) if m else 0.0


def test_models_health_unknown_model_and_bad_json(stack):
    url = stack[0]
    ids = [m["id"] for m in httpx.get(url + "/v1/models").json()["data"]]
    assert ids[:5] == ["auto", "router-local", "router-fallback", "router-ext", "router-nokey"]
    assert {"nano", "premium", "down"} <= set(ids)
    assert httpx.get(url + "/health").json()["status"] == "ok"
    r = httpx.post(url + "/v1/chat/completions", json={"model": "gpt-9", "messages": HI})
    assert r.status_code == 404
    err = r.json()["error"]
    assert err["param"] == "model" and err["code"] == "model_not_found"
    assert "router-local" in err["message"] and "router-ext" in err["message"]
    r = httpx.post(url + "/v1/chat/completions", content=b'{"model": "auto", "messages": [', timeout=10)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = httpx.post(url + "/v1/chat/completions", json={"model": "auto", "messages": HI, "temprature": 0})
    assert r.status_code == 400 and r.json()["error"]["param"] == "temprature"


def test_openai_client_gets_the_route_in_headers_and_body(client):
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=HI, max_tokens=5, temperature=0)
    assert raw.headers["x-slimserve-route"] == "nano" and raw.headers["x-slimserve-cache"] == "miss"
    assert raw.headers["x-slimserve-router"] == "local" and float(raw.headers["x-slimserve-score"]) == pytest.approx(
        4 / 6, abs=1e-4
    )
    r = raw.parse()
    assert r.router_model_name == "nano" and r.model == "onnx" and r.usage.completion_tokens == 5
    with client.chat.completions.with_streaming_response.create(
        model="router-local", messages=HI, max_tokens=5, temperature=0.7, stream=True
    ) as resp:
        assert resp.headers["x-slimserve-route"] == "nano" and resp.headers["x-slimserve-cache"] == "miss"
        chunks = list(resp.parse())
    assert chunks and all(c.router_model_name == "nano" for c in chunks)
    assert all(c.usage is None for c in chunks)  # the gateway asked the tier for usage; this client did not
    assert chunks[-1].choices[0].finish_reason == "length"
    c = client.completions.with_raw_response.create(model="auto", prompt="Once upon", max_tokens=4, temperature=0)
    assert c.headers["x-slimserve-route"] == "nano" and c.parse().router_model_name == "nano"
    assert c.parse().usage.completion_tokens == 4


def test_second_identical_request_is_a_cache_hit_ten_times_faster(client, stack):
    msgs = [{"role": "user", "content": "Tell me a long story about caches"}]
    kw = dict(model="auto", messages=msgs, max_tokens=450, temperature=0)
    t0 = time.perf_counter()
    first = client.chat.completions.with_raw_response.create(**kw)
    t1 = time.perf_counter()
    second = client.chat.completions.with_raw_response.create(**kw)
    t2 = time.perf_counter()
    assert first.headers["x-slimserve-cache"] == "miss" and second.headers["x-slimserve-cache"] == "hit"
    assert second.headers["x-slimserve-route"] == "nano"
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert first.parse().usage.completion_tokens == 450
    assert t2 - t1 < (t1 - t0) / 10, f"hit {t2 - t1:.4f} s, first {t1 - t0:.4f} s"
    with client.chat.completions.with_streaming_response.create(**kw, stream=True) as resp:  # replayed as a stream
        assert resp.headers["x-slimserve-cache"] == "hit"
        text = "".join(c.choices[0].delta.content or "" for c in resp.parse() if c.choices)
    assert text == first.parse().choices[0].message.content
    sampled = client.chat.completions.with_raw_response.create(**{**kw, "temperature": 0.8, "max_tokens": 3})
    again = client.chat.completions.with_raw_response.create(**{**kw, "temperature": 0.8, "max_tokens": 3})
    assert again.headers["x-slimserve-cache"] == sampled.headers["x-slimserve-cache"] == "miss"  # temperature > 0
    assert metric(stack[0], "slimserve_gateway_cache_lookups_total", result="hit") >= 2


def test_a_streamed_answer_is_cached_too(client):
    kw = dict(model="auto", messages=[{"role": "user", "content": "stream me"}], max_tokens=6, temperature=0)
    with client.chat.completions.with_streaming_response.create(**kw, stream=True) as resp:
        text = "".join(c.choices[0].delta.content or "" for c in resp.parse() if c.choices)
    raw = client.chat.completions.with_raw_response.create(**kw)
    assert raw.headers["x-slimserve-cache"] == "hit" and raw.parse().choices[0].message.content == text


def test_fallback_past_unreachable_429_500_and_timed_out_tiers(client, stack):
    url = stack[0]
    raw = client.chat.completions.with_raw_response.create(model="router-fallback", messages=HI, max_tokens=3,
                                                           temperature=0.5)  # fmt: skip
    assert raw.headers["x-slimserve-route"] == "nano" and raw.parse().router_model_name == "nano"
    assert raw.headers["x-slimserve-fallback"] == "down,busy,boom,slow->nano"
    with client.chat.completions.with_streaming_response.create(
        model="router-fallback", messages=[{"role": "user", "content": "x marks it"}], max_tokens=3, stream=True
    ) as resp:  # a rule sends this one to `busy` (429): the stream comes from the next tier that answers
        assert resp.headers["x-slimserve-route"] == "nano"
        assert all(c.router_model_name == "nano" for c in resp.parse())
    assert metric(url, "slimserve_gateway_fallbacks_total", from_tier="down", to_tier="busy") >= 1
    assert metric(url, "slimserve_gateway_fallbacks_total", from_tier="busy", to_tier="boom") >= 2
    for tier, why in (("down", "unreachable"), ("busy", "429"), ("boom", "5xx"), ("slow", "timeout")):
        assert metric(url, "slimserve_gateway_tier_failures_total", tier=tier, reason=why) >= 1, (tier, why)
    assert metric(url, "slimserve_gateway_tier_requests_total", tier="nano") >= 2


def test_external_tier_through_litellm_mock_and_the_cost_it_saves(client, stack):
    url = stack[0]
    msgs = [{"role": "user", "content": "a question for the premium tier"}]
    raw = client.chat.completions.with_raw_response.create(model="router-ext", messages=msgs, temperature=0)
    r = raw.parse()
    assert raw.headers["x-slimserve-route"] == "premium" and r.router_model_name == "premium"
    assert r.choices[0].message.content == MOCK
    with client.chat.completions.with_streaming_response.create(
        model="router-ext", messages=msgs, temperature=0.3, stream=True
    ) as resp:
        assert resp.headers["x-slimserve-route"] == "premium"
        chunks = list(resp.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == MOCK
    assert all(c.router_model_name == "premium" for c in chunks)
    saved0 = metric(url, "slimserve_gateway_cost_saved_usd_total")
    hit = client.chat.completions.with_raw_response.create(model="router-ext", messages=msgs, temperature=0)
    assert hit.headers["x-slimserve-cache"] == "hit"
    u = r.usage  # a hit costs nothing: it saves what premium (the priciest tier) charges for these tokens
    expect = (0.15 * u.prompt_tokens + 0.6 * u.completion_tokens) / 1e6
    assert metric(url, "slimserve_gateway_cost_saved_usd_total") - saved0 == pytest.approx(expect, rel=1e-6)
    assert metric(url, "slimserve_gateway_unpriced_requests_total", tier="nano") >= 1  # no bench: no local price


def test_missing_key_names_the_variable_and_does_not_fall_back_to_a_local_tier(client, stack, tmp_path):
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="router-nokey", messages=HI, max_tokens=3)
    assert e.value.status_code == 503 and MISSING_ENV in e.value.message
    assert e.value.body["code"] == "missing_api_key" and "allow_local_fallback" in e.value.message
    _, _, fake, cat = stack
    cfg = write_config(tmp_path / "allow.yaml", cat, fake, allow_local_fallback=True)
    with running(create_app(build_gateway(cfg, api_key="gw-key"))) as gw:
        ok = openai.OpenAI(base_url=gw + "/v1", api_key="gw-key", max_retries=0)
        raw = ok.chat.completions.with_raw_response.create(model="router-nokey", messages=HI, max_tokens=3)
        assert raw.headers["x-slimserve-route"] == "nano" and raw.headers["x-slimserve-fallback"] == "nokey->nano"
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=gw + "/v1", api_key="wrong", max_retries=0).models.list()


def test_bad_config_and_flags_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"tiers": [{"name": "a", "model_path": "/x", "fallbacks": ["zz"]}]}))
    assert main(["route", "serve", str(bad), "--port", "0"]) == 2
    assert "tiers[0].fallbacks" in capsys.readouterr().err
    assert main(["route", "serve", str(bad), "--port", "70000"]) == 2
    assert "--port" in capsys.readouterr().err
