"""slimserve serve over HTTP on a tiny catalog: answers, usage, stops, SSE framing, limits and errors."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("onnxruntime")

from slimserve.serve.app import create_app  # noqa: E402
from slimserve.serve.server import ServeConfig, ServedModel  # noqa: E402

from .serve_helpers import build_tiny_catalog, running  # noqa: E402
from .test_serve_scheduler import FakeEngine  # noqa: E402

CTX = 96
HI = [{"role": "user", "content": "It is a truth universally acknowledged"}]


@pytest.fixture(scope="module")
def cat(tmp_path_factory):
    return build_tiny_catalog(tmp_path_factory.mktemp("serve"), max_positions=256)


@pytest.fixture(scope="module")
def url(cat):
    app, _ = create_app(ServeConfig(catalog=str(cat), context=CTX, max_batch=4, record=False))
    with running(app) as u:
        yield u


def chat(url, **kw):
    return httpx.post(url + "/v1/chat/completions", json={"model": "onnx", "messages": HI, **kw}, timeout=60)


def events(text: str) -> list:
    assert text.endswith("data: [DONE]\n\n")
    blocks = text.split("\n\n")[:-1]
    assert all(b.startswith("data: ") and "\n" not in b for b in blocks)
    return [b[6:] if b[6:] == "[DONE]" else json.loads(b[6:]) for b in blocks]


def test_models_lists_variants_and_unknown_model_is_a_404_listing_them(url):
    data = httpx.get(url + "/v1/models").json()["data"]
    assert {(m["id"], m["target"], m["tier"]) for m in data} == {
        ("onnx", "onnx-cpu", "small"),
        ("ref", "cpu", "reference"),
    }
    r = httpx.post(url + "/v1/chat/completions", json={"model": "nope", "messages": HI})
    assert r.status_code == 404
    err = r.json()["error"]
    assert err["param"] == "model" and "onnx" in err["message"] and "ref" in err["message"]


def test_max_tokens_usage_and_both_engines_agree(url, cat):
    from transformers import AutoTokenizer

    from slimserve.generate import prompt_ids

    r = chat(url, max_tokens=7).json()
    n_prompt = len(prompt_ids(AutoTokenizer.from_pretrained(cat / "onnx"), HI))
    assert r["usage"] == {"prompt_tokens": n_prompt, "completion_tokens": 7, "total_tokens": n_prompt + 7}
    assert r["choices"][0]["finish_reason"] == "length" and r["object"] == "chat.completion"
    ref = chat(url, max_tokens=7, model="ref").json()  # the fp32 graph decodes what PyTorch decodes
    assert ref["choices"][0]["message"]["content"] == r["choices"][0]["message"]["content"]
    assert chat(url, max_tokens=7, model="onnx@onnx-cpu").json()["choices"] == r["choices"]


def test_stop_sequence_cuts_the_text_before_it(url):
    full = chat(url, max_tokens=16).json()["choices"][0]["message"]["content"]
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    assert stop.strip(), full
    r = chat(url, max_tokens=16, stop=[stop]).json()
    assert r["choices"][0]["message"]["content"] == full[: full.index(stop)]
    assert r["choices"][0]["finish_reason"] == "stop"


def test_sse_framing_include_usage_and_done(url):
    whole = chat(url, max_tokens=9).json()
    r = chat(url, max_tokens=9, stream=True, stream_options={"include_usage": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    evs = events(r.text)
    assert evs[-1] == "[DONE]" and evs[0]["choices"][0]["delta"]["role"] == "assistant"
    usage = evs[-2]
    assert usage["choices"] == [] and usage["usage"] == whole["usage"]
    assert evs[-3]["choices"][0]["finish_reason"] == "length"
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in evs[:-3])
    assert text == whole["choices"][0]["message"]["content"]
    assert all(e["usage"] is None for e in evs[:-2])


def test_completions_stream_without_usage(url):
    body = {"model": "onnx", "prompt": "It is a truth", "max_tokens": 5, "stream": True}
    evs = events(httpx.post(url + "/v1/completions", json=body, timeout=60).text)
    assert evs[-2]["choices"][0]["finish_reason"] == "length" and evs[-2]["object"] == "text_completion"
    whole = httpx.post(url + "/v1/completions", json={**body, "stream": False}, timeout=60).json()
    assert "".join(e["choices"][0]["text"] for e in evs[:-1]) == whole["choices"][0]["text"]
    assert whole["usage"]["completion_tokens"] == 5


def test_over_long_prompt_is_a_400_naming_the_limit(url):
    long = [{"role": "user", "content": "It is a truth universally acknowledged " * 40}]
    r = httpx.post(url + "/v1/chat/completions", json={"model": "onnx", "messages": long})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "context_length_exceeded" and str(CTX) in err["message"]
    r = chat(url, max_tokens=CTX)
    assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens"


@pytest.mark.parametrize(
    "body, param",
    [
        (b'{"model": "onnx", "messages": [', "body"),
        (b'{"model": "onnx", "messages": []}', "messages"),
        (b'{"model": "onnx", "messages": [{"role": "wizard", "content": "x"}]}', "messages[0].role"),
        (b'{"model": "onnx", "messages": [{"role": "user", "content": "x"}], "max_tokens": -3}', "max_tokens"),
        (b'{"model": "onnx", "messages": [{"role": "user", "content": "x"}], "temperature": -1}', "temperature"),
        (b'{"model": "onnx", "messages": [{"role": "user", "content": "x"}], "max_tokens": "many"}', "max_tokens"),
        (b'{"model": "onnx", "prompt": [1, 99999]}', "prompt"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_the_server_stays_up(url, body, param):
    path = "/v1/completions" if b'"prompt"' in body else "/v1/chat/completions"
    r = httpx.post(url + path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    assert httpx.get(url + "/health").status_code == 200


def test_metrics_count_requests_and_tokens(url):
    chat(url, max_tokens=3)
    text = httpx.get(url + "/metrics").text
    assert 'slimserve_generation_tokens_total{model="onnx"}' in text
    assert "slimserve_time_to_first_token_seconds_bucket" in text and "slimserve_queue_depth" in text


def test_wrong_api_key_is_a_401(cat):
    app, _ = create_app(ServeConfig(catalog=str(cat), variants=["onnx"], context=CTX, api_key="s3cret", record=False))
    with running(app) as u:
        bad = httpx.post(u + "/v1/chat/completions", json={"model": "onnx", "messages": HI},
                         headers={"Authorization": "Bearer nope"})  # fmt: skip
        assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_api_key"
        assert httpx.get(u + "/v1/models").status_code == 401
        ok = httpx.post(u + "/v1/chat/completions", json={"model": "onnx", "messages": HI, "max_tokens": 2},
                        headers={"Authorization": "Bearer s3cret"}, timeout=60)  # fmt: skip
        assert ok.status_code == 200


def _fake_app(cat, *, slots: int, max_queue: int, delay_s: float):
    from transformers import AutoTokenizer

    from slimserve.serve.scheduler import Scheduler

    eng = FakeEngine(slots=slots, delay_s=delay_s, eos=-1)
    eng.tokenizer = AutoTokenizer.from_pretrained(cat / "ref")
    sched = Scheduler(eng, max_queue=max_queue, name="fake")
    sched.start()
    m = ServedModel(name="fake", engine=eng, scheduler=sched, target="fake")
    app, _ = create_app(ServeConfig(record=False), preloaded=[m])
    return app, sched


def test_full_queue_is_a_429_with_retry_after(cat):
    app, sched = _fake_app(cat, slots=1, max_queue=1, delay_s=0.02)
    body = {"model": "fake", "messages": HI, "max_tokens": 40}
    with running(app) as u:
        codes: list = []

        def call():
            r = httpx.post(u + "/v1/chat/completions", json=body, timeout=60)
            codes.append((r.status_code, r.headers.get("retry-after")))

        threads = [threading.Thread(target=call) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(c for c, _ in codes).count(200) == 2
    assert all(ra and int(ra) >= 1 for c, ra in codes if c == 429) and [c for c, _ in codes].count(429) == 2


def test_disconnect_mid_stream_frees_the_slot(cat):
    app, sched = _fake_app(cat, slots=1, max_queue=4, delay_s=0.01)
    with running(app) as u:
        body = {"model": "fake", "messages": HI, "max_tokens": 900, "stream": True}
        with httpx.stream("POST", u + "/v1/chat/completions", json=body, timeout=60) as r:
            lines = r.iter_lines()
            next(lines)  # the role chunk
            next(lines)  # a blank line, then the first token's chunk: the request holds the slot
            next(lines)
            assert sched.running == 1
        deadline = time.monotonic() + 10
        while sched.running and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sched.running == 0
        r = httpx.post(u + "/v1/chat/completions", json={**body, "max_tokens": 3, "stream": False}, timeout=60)
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 3


def _greedy_logprobs(path, ids: list[int], n: int) -> tuple[list[int], list[float]]:
    """n greedy tokens from a direct PyTorch forward of the variant, and each one's log_softmax of its logits."""
    import torch

    from slimserve.loaders import load_variant

    model, _, _ = load_variant(path, "cpu")
    toks, lps = [], []
    with torch.inference_mode():
        for _ in range(n):
            logp = torch.log_softmax(model(input_ids=torch.tensor([ids + toks])).logits[0, -1].double(), -1)
            toks.append(int(logp.argmax()))
            lps.append(float(logp[toks[-1]]))
    return toks, lps


@pytest.mark.parametrize("model", ["onnx", "ref"])
def test_chat_logprobs_are_log_softmax_of_the_models_logits_streamed_or_not(url, cat, model):
    from transformers import AutoTokenizer

    from slimserve.generate import prompt_ids

    tok = AutoTokenizer.from_pretrained(cat / "onnx")
    toks, lps = _greedy_logprobs(cat / "ref", prompt_ids(tok, HI), 6)
    r = chat(url, model=model, max_tokens=6, logprobs=True).json()
    content = r["choices"][0]["logprobs"]["content"]
    assert [c["token"] for c in content] == [tok.decode([t]) for t in toks]
    assert [c["logprob"] for c in content] == pytest.approx(lps, abs=2e-4)
    assert all(c["top_logprobs"] == [] and bytes(c["bytes"]).decode() == c["token"] for c in content)
    assert "".join(c["token"] for c in content) == r["choices"][0]["message"]["content"]
    evs = events(chat(url, model=model, max_tokens=6, logprobs=True, stream=True).text)[:-1]
    streamed = [c for e in evs for c in ((e["choices"][0].get("logprobs") or {}).get("content") or [])]
    assert streamed == content
    assert chat(url, model=model, max_tokens=3).json()["choices"][0]["logprobs"] is None  # only when asked


def test_completion_logprobs_zero_and_unsupported_alternatives_are_400s(url):
    body = {"model": "onnx", "prompt": "It is a truth", "max_tokens": 5, "logprobs": 0}
    lp = httpx.post(url + "/v1/completions", json=body, timeout=60).json()["choices"][0]["logprobs"]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == 5 and all(v <= 0 for v in lp["token_logprobs"])
    assert lp["text_offset"][0] == 0 and lp["text_offset"][1] == len(lp["tokens"][0])
    for path, extra, param in (("/v1/chat/completions", {"messages": HI, "logprobs": True, "top_logprobs": 2},
                                "top_logprobs"), ("/v1/completions", {"prompt": "x", "logprobs": 3}, "logprobs")):  # fmt: skip
        r = httpx.post(url + path, json={"model": "onnx", **extra}, timeout=60)
        assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
