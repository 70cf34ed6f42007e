"""A cascade router in `route serve`: the weak tier answers with logprobs first, and its confidence (mean or min
token log-prob) against the threshold decides whether the strong tier answers instead. Both tiers are a real
`slimserve serve` of a tiny random Llama (weak: its fused ONNX graph, strong: its PyTorch reference). The thresholds
are set from the weak answer's measured confidence. Seconds, no real model."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import yaml

pytest.importorskip("fastapi")
pytest.importorskip("onnxruntime")
openai = pytest.importorskip("openai", reason="the openai client is a test dependency (pip install openai)")

from slimserve.gateway.app import build_gateway, create_app  # noqa: E402
from slimserve.serve.app import create_app as serve_app  # noqa: E402
from slimserve.serve.server import ServeConfig  # noqa: E402

from .serve_helpers import build_tiny_catalog, running  # noqa: E402
from .test_gateway_serve import metric  # noqa: E402

HI = [{"role": "user", "content": "It is a truth universally acknowledged"}]
N = 6
PRICES = {"nano": (1.0, 2.0), "strong": (3.0, 6.0)}  # $/1M in, out (local prices are measured; set here)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """(gateway URL, the weak answer as served with logprobs, its mean and min token log-prob)."""
    tmp = tmp_path_factory.mktemp("cascade")
    cat = build_tiny_catalog(tmp, max_positions=512)
    served, _ = serve_app(ServeConfig(catalog=str(cat), context=512, max_batch=4, record=False))
    with running(served) as tier:
        weak = httpx.post(tier + "/v1/chat/completions", json={"model": "onnx", "messages": HI, "max_tokens": N,
                                                               "temperature": 0, "logprobs": True}, timeout=60).json()  # fmt: skip
        lps = [t["logprob"] for t in weak["choices"][0]["logprobs"]["content"]]
        mean, low = float(np.mean(lps)), float(min(lps))

        def cascade(name, threshold, signal="mean_logprob", tiers=("nano", "strong")):
            return {"name": name, "kind": "cascade", "tiers": list(tiers), "signal": signal,
                    "threshold": threshold}  # fmt: skip

        cfg = {
            "catalog": str(cat),
            "tiers": [{"name": "nano", "variant": "onnx", "api_base": tier + "/v1"},
                      {"name": "mid", "variant": "onnx", "api_base": tier + "/v1"},
                      {"name": "strong", "variant": "ref", "model": "ref", "api_base": tier + "/v1"}],
            "routers": [cascade("up", mean + 0.25), cascade("keep", mean - 0.25), cascade("minup", low + 0.1, "min_logprob"),
                        cascade("chain", mean + 0.25, tiers=("nano", "mid", "strong")),
                        {"name": "margin", "kind": "cascade", "tiers": ["nano", "strong"]}],
            "cache": {"enabled": False},
        }  # fmt: skip
        path = tmp / "router.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        gw = build_gateway(path)
        gw.prices.update(PRICES)
        with running(create_app(gw)) as url:
            yield url, weak, mean, low


@pytest.fixture(scope="module")
def client(stack):
    return openai.OpenAI(base_url=stack[0] + "/v1", api_key="unused", max_retries=0, timeout=60)


def ask(client, router, **kw):
    return client.chat.completions.with_raw_response.create(model=f"router-{router}", messages=HI, max_tokens=N,
                                                            temperature=0, **kw)  # fmt: skip


def test_confident_weak_answer_is_kept_and_the_client_sees_no_logprobs(client, stack):
    url, weak, mean, _ = stack
    raw = ask(client, "keep")
    h, r = raw.headers, raw.parse()
    assert h["x-slimserve-route"] == "nano" and r.router_model_name == "nano" and r.model == "onnx"
    assert float(h["x-slimserve-score"]) == pytest.approx(mean, abs=1e-4)
    assert h["x-slimserve-reason"].startswith("cascade: mean_logprob") and "kept nano" in h["x-slimserve-reason"]
    assert r.choices[0].message.content == weak["choices"][0]["message"]["content"]
    assert r.choices[0].logprobs is None  # the gateway asked for them; this client did not
    with client.chat.completions.with_streaming_response.create(
        model="router-keep", messages=HI, max_tokens=N, temperature=0, stream=True
    ) as resp:  # buffered, then replayed as a stream
        assert resp.headers["x-slimserve-route"] == "nano"
        chunks = list(resp.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == r.choices[0].message.content
    assert metric(url, "slimserve_gateway_cascade_escalations_total", router="keep", from_tier="nano",
                  to_tier="strong") == 0  # fmt: skip


def test_unconfident_weak_answer_escalates_and_its_tokens_are_counted_as_discarded(client, stack):
    url, weak, mean, low = stack
    before = metric(url, "slimserve_gateway_cascade_discarded_tokens_total", tier="nano", kind="completion")
    cost0 = metric(url, "slimserve_gateway_cascade_discarded_cost_usd_total")
    raw = ask(client, "up", logprobs=True)
    h, r = raw.headers, raw.parse()
    assert h["x-slimserve-route"] == "strong" and r.router_model_name == "strong" and r.model == "ref"
    assert float(h["x-slimserve-score"]) == pytest.approx(mean, abs=1e-4)
    assert h["x-slimserve-reason"] == f"cascade: mean_logprob {mean:.3f} < {mean + 0.25:.3f} -> strong"
    assert len(r.choices[0].logprobs.content) == N  # asked for: the strong tier's own
    assert metric(url, "slimserve_gateway_cascade_escalations_total", router="up", from_tier="nano",
                  to_tier="strong") == 1  # fmt: skip
    u = weak["usage"]
    assert metric(url, "slimserve_gateway_cascade_discarded_tokens_total", tier="nano", kind="completion") - before == N
    expect = (PRICES["nano"][0] * u["prompt_tokens"] + PRICES["nano"][1] * u["completion_tokens"]) / 1e6
    assert metric(url, "slimserve_gateway_cascade_discarded_cost_usd_total") - cost0 == pytest.approx(expect)
    with client.chat.completions.with_streaming_response.create(
        model="router-minup", messages=HI, max_tokens=N, temperature=0, stream=True
    ) as resp:  # min signal; the strong tier streams to the client directly
        assert resp.headers["x-slimserve-route"] == "strong"
        assert resp.headers["x-slimserve-reason"].startswith(f"cascade: min_logprob {low:.3f} <")
        chunks = list(resp.parse())
    assert all(c.router_model_name == "strong" for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == r.choices[0].message.content


def test_margin_cascade_cannot_serve_and_says_what_to_set(client):
    with pytest.raises(openai.APIStatusError) as e:
        ask(client, "margin")
    assert e.value.status_code == 503 and e.value.body["code"] == "router_unready"
    assert "mean_logprob" in e.value.message


def test_three_tiers_escalate_one_at_a_time_and_completions_cascade_too(client, stack):
    url, _, mean, _ = stack
    raw = ask(client, "chain")
    assert raw.headers["x-slimserve-route"] == "strong"
    steps = raw.headers["x-slimserve-reason"].split("; ")
    assert [s.rsplit(" -> ", 1)[1] for s in steps] == ["mid", "strong"]  # mid answers as nano does: escalates too
    for frm, to in (("nano", "mid"), ("mid", "strong")):
        assert metric(url, "slimserve_gateway_cascade_escalations_total", router="chain", from_tier=frm,
                      to_tier=to) == 1  # fmt: skip
    assert metric(url, "slimserve_gateway_cascade_discarded_tokens_total", tier="mid", kind="completion") == N
    for router, threshold in (("up", mean + 0.25), ("keep", mean - 0.25)):  # the chat answer's, not this prompt's
        c = client.completions.with_raw_response.create(model=f"router-{router}", prompt="It is a truth",
                                                        max_tokens=N, temperature=0)  # fmt: skip
        score, route = float(c.headers["x-slimserve-score"]), c.headers["x-slimserve-route"]
        assert score < 0 and route == ("strong" if score < threshold else "nano"), (router, score, threshold)
        assert c.parse().router_model_name == route and c.parse().choices[0].logprobs is None
