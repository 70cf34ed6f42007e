"""The exported LiteLLM config loads in the real litellm.Router, which routes by the exported costs.

litellm is a test/optional dependency (pip install litellm). No request leaves the machine: completions use litellm's
mock_response, and LITELLM_LOCAL_MODEL_COST_MAP keeps litellm from fetching its price map at import.
"""

from __future__ import annotations

import asyncio
import os

import pytest
import yaml

import slimserve.router as router
from slimserve.bench.store import latest_records
from slimserve.router.external import list_external

from .router_helpers import standard

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
litellm = pytest.importorskip("litellm", reason="litellm is not installed (pip install litellm)")


@pytest.fixture
def exported(tmp_path):
    cat = standard(tmp_path)
    cfg = yaml.safe_load(router.export("litellm", tmp_path / "router.yaml", catalog=cat).read_text())
    prices = {
        f"{r.variant}@{r.target}": (r.cost.usd_per_1m_input, r.cost.usd_per_1m_output) for r in latest_records(cat)
    }
    prices.update({e["name"]: (e["input_per_1m"], e["output_per_1m"]) for e in list_external(cat)})
    return cat, cfg, prices


def test_router_loads_config_and_reads_back_costs(exported):
    _, cfg, prices = exported
    r = litellm.Router(model_list=cfg["model_list"], **cfg["router_settings"])
    assert r.routing_strategy == "cost-based-routing"
    assert r.fallbacks == cfg["router_settings"]["fallbacks"]
    deployments = r.registry().all() if hasattr(r, "registry") else r.get_model_list()  # newer litellm: registry()
    assert len(deployments) == len(cfg["model_list"])
    for d in deployments:
        tid = d["model_info"]["slimserve_target"]
        assert abs(d["litellm_params"]["input_cost_per_token"] * 1e6 - prices[tid][0]) < 0.005
        assert abs(d["litellm_params"]["output_cost_per_token"] * 1e6 - prices[tid][1]) < 0.005

    async def ask(group: str):
        return await r.acompletion(model=group, messages=[{"role": "user", "content": "hi"}], mock_response="a reply")

    # cost-based routing picks the cheapest member of each tier, and litellm prices the call with our numbers
    # (litellm's lowest-cost strategy is async-only: Router.completion finds no deployment with it)
    for tier in dict.fromkeys(m["model_name"] for m in cfg["model_list"]):
        members = [m for m in cfg["model_list"] if m["model_name"] == tier]
        cheapest = min(
            members,
            key=lambda m: m["litellm_params"]["input_cost_per_token"] + m["litellm_params"]["output_cost_per_token"],
        )
        resp = asyncio.run(ask(tier))
        assert resp._hidden_params["model_id"] == cheapest["model_info"]["id"]
        tid = cheapest["model_info"]["slimserve_target"]
        u = resp.usage
        expected = (u.prompt_tokens * prices[tid][0] + u.completion_tokens * prices[tid][1]) / 1e6
        assert resp._hidden_params["response_cost"] == pytest.approx(expected, rel=1e-9)


def test_router_falls_back_to_the_next_tier(tmp_path):
    cat = standard(tmp_path)
    # port 9 on loopback refuses connections: the fallback attempt fails fast and nothing leaves the machine
    cfg = yaml.safe_load(
        router.export("litellm", tmp_path / "r.yaml", catalog=cat, api_base="http://127.0.0.1:9/v1").read_text()
    )
    local = [m for m in cfg["model_list"] if m["model_name"] in ("nano", "small")]
    fallbacks = [f for f in cfg["router_settings"]["fallbacks"] if "nano" in f]
    assert fallbacks == [{"nano": ["small"]}]
    r = litellm.Router(model_list=local, routing_strategy="cost-based-routing", fallbacks=fallbacks, num_retries=0)

    async def failing():
        return await r.acompletion(
            model="nano", messages=[{"role": "user", "content": "hi"}], mock_testing_fallbacks=True
        )

    # nano's deployment fails on purpose; litellm then tries `small`, whose server is not running here
    with pytest.raises(Exception) as e:
        asyncio.run(failing())
    assert "small" in str(e.value)


def test_routellm_weak_model_resolves_to_the_local_endpoint(exported, tmp_path, monkeypatch):
    cat, _, _ = exported
    cfg = yaml.safe_load(
        router.export("routellm", tmp_path / "rl.yaml", catalog=cat, api_base="http://127.0.0.1:8123/v1").read_text()
    )
    for k, v in cfg["slimserve"]["env"].items():
        monkeypatch.setenv(k, v)
    model, provider, _, base = litellm.get_llm_provider(cfg["weak_model"])
    assert (model, provider, base) == ("int4-g128@cpu", "hosted_vllm", "http://127.0.0.1:8123/v1")
    assert litellm.get_llm_provider(cfg["strong_model"])[1] == "openai"


def test_borrowed_tiers_load_and_route_to_the_shared_model(tmp_path):
    from .router_demo import demo

    cfg = yaml.safe_load(router.export("litellm", tmp_path / "d.yaml", catalog=demo(tmp_path)).read_text())
    r = litellm.Router(model_list=cfg["model_list"], **cfg["router_settings"])  # the extra model_info keys load

    async def ask(group: str):
        return await r.acompletion(model=group, messages=[{"role": "user", "content": "hi"}], mock_response="ok")

    for tier in ("nano", "small", "base"):
        resp = asyncio.run(ask(tier))
        assert resp._hidden_params["model_id"] == f"{tier}/smollm2-fp32@cpu"
    infos = [m["model_info"] for m in cfg["model_list"]]
    assert [i.get("slimserve_borrowed_from") for i in infos] == ["base", "base", None]
