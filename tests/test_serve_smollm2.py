"""Real SmolLM2 behind `slimserve serve`: the openai client (streaming and not), raw HTTP, and litellm.Router.

Needs the int4 ONNX variant in $SLIMSERVE_SERVE_CATALOG (default /tmp/serve/catalog; build it with
`slimserve build recipes/llama-tiers.yaml --variant smollm2-onnx-int4-gptq --catalog /tmp/serve/catalog`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow  # a real 135M model: seconds to load, tens of tokens per answer

VARIANT = "smollm2-onnx-int4-gptq"
CATALOG = Path(os.environ.get("SLIMSERVE_SERVE_CATALOG", "/tmp/serve/catalog"))


@pytest.fixture(scope="module")
def url():
    if not (CATALOG / VARIANT / "manifest.json").is_file():
        pytest.skip(f"no {VARIANT} in {CATALOG} (see the module docstring)")
    from slimserve.serve.app import create_app
    from slimserve.serve.server import ServeConfig

    from .serve_helpers import running

    app, _ = create_app(ServeConfig(catalog=str(CATALOG), variants=[VARIANT], threads=2, context=512, record=False))
    with running(app, timeout_s=300) as u:
        yield u


def test_openai_client_streaming_and_not(url):
    from openai import OpenAI

    c = OpenAI(base_url=url + "/v1", api_key="none")
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    r = c.chat.completions.create(model=VARIANT, messages=msgs, max_tokens=24, temperature=0)
    text = r.choices[0].message.content
    assert "Paris" in text and r.usage.completion_tokens <= 24 and r.usage.prompt_tokens > 5
    parts, usage = [], None
    for ch in c.chat.completions.create(model=VARIANT, messages=msgs, max_tokens=24, temperature=0, stream=True,
                                        stream_options={"include_usage": True}):  # fmt: skip
        parts += [ch.choices[0].delta.content or ""] if ch.choices else []
        usage = ch.usage or usage
    assert "".join(parts) == text and usage.completion_tokens == r.usage.completion_tokens
    assert [m.id for m in c.models.list()] == [VARIANT]


def test_raw_http_as_curl_sends_it(url):
    body = json.dumps({"model": VARIANT, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 12})
    r = httpx.post(
        url + "/v1/chat/completions", content=body, headers={"Content-Type": "application/json"}, timeout=120
    )
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"].strip()


def test_litellm_router_from_the_catalog_export(url, tmp_path):
    import yaml

    import slimserve.router as router
    from slimserve.errors import UserError

    rules = tmp_path / "tiers.yaml"  # one tier: the int4 variant alone does not meet the stock small/base floors
    rules.write_text("version: 1\nmetric: top1\ntiers:\n  - {name: nano, floor: 0.5}\n")
    try:
        out = router.export("litellm", tmp_path / "router.yaml", catalog=CATALOG, api_base=url + "/v1", rules=rules)
    except UserError as e:
        pytest.skip(f"the catalog has no priced targets to export ({e}); run `slimserve bench {VARIANT}` first")
    cfg = yaml.safe_load(out.read_text())
    import litellm

    r = litellm.Router(model_list=cfg["model_list"])
    tier = cfg["model_list"][0]["model_name"]
    resp = r.completion(model=tier, messages=[{"role": "user", "content": "What is the capital of France?"}],
                        max_tokens=24, temperature=0)  # fmt: skip
    assert "Paris" in resp.choices[0].message.content
