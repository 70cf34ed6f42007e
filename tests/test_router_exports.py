"""Each export format's round trip, prices equal to the stored measurements to the cent, and the bad-input cases."""

from __future__ import annotations

import importlib.util
import inspect
import itertools
import json
import os
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

import slimserve.router as router
from slimserve.bench.store import latest_records
from slimserve.cli import main
from slimserve.errors import UserError
from slimserve.router.external import list_external
from slimserve.router.formats import routellm as routellm_fmt
from slimserve.router.formats import write_atomic

from .router_helpers import make_catalog, manifest, record, standard, use_records

SCHEMA_DIR = Path(router.__file__).parent / "schema"


def stored_prices(cat) -> dict[str, tuple[float, float]]:
    """id -> ($/1M input, $/1M output) as stored: bench measurements and declared list prices."""
    out = {f"{r.variant}@{r.target}": (r.cost.usd_per_1m_input, r.cost.usd_per_1m_output) for r in latest_records(cat)}
    out.update({e["name"]: (e["input_per_1m"], e["output_per_1m"]) for e in list_external(cat)})
    return out


def same_to_the_cent(per_1m: float | Decimal, stored: float) -> bool:
    return abs(float(per_1m) - stored) < 0.005


@pytest.fixture
def cat(tmp_path):
    return standard(tmp_path)


def export_all(cat, tmp_path) -> dict[str, Path]:
    return {f: router.export(f, tmp_path / f"out-{f}", catalog=cat) for f in router.formats()}


def test_every_format_exports_with_the_stored_prices(cat, tmp_path, capsys):
    files = export_all(cat, tmp_path)
    assert set(files) == {"litellm", "openrouter", "routellm", "json"}
    assert "pruned: no benchmark record" in capsys.readouterr().err  # left out, with the reason
    prices = stored_prices(cat)
    assert set(prices) == {"ref@cpu", "int8@cpu", "int4-g128@cpu", "int4-bad@cpu", "gpt-4o"}

    lite = yaml.safe_load(files["litellm"].read_text())
    seen = set()
    for m in lite["model_list"]:
        tid = m["model_info"]["slimserve_target"]
        seen.add(tid)
        for block in (m["litellm_params"], m["model_info"]):
            assert same_to_the_cent(block["input_cost_per_token"] * 1e6, prices[tid][0])
            assert same_to_the_cent(block["output_cost_per_token"] * 1e6, prices[tid][1])
    assert "int4-bad@cpu" not in seen  # dominated: not a tier member in the router config
    assert seen == set(prices) - {"int4-bad@cpu"}

    orr = json.loads(files["openrouter"].read_text())
    assert {d["id"] for d in orr["data"]} == set(prices)
    for d in orr["data"]:
        assert isinstance(d["pricing"]["prompt"], str)
        assert same_to_the_cent(Decimal(d["pricing"]["prompt"]) * 1_000_000, prices[d["id"]][0])
        assert same_to_the_cent(Decimal(d["pricing"]["completion"]) * 1_000_000, prices[d["id"]][1])

    rl = yaml.safe_load(files["routellm"].read_text())
    for side in ("weak", "strong"):
        e = rl["slimserve"][side]
        assert same_to_the_cent(e["usd_per_1m_input"], prices[e["id"]][0])
        assert same_to_the_cent(e["usd_per_1m_output"], prices[e["id"]][1])

    doc = json.loads(files["json"].read_text())
    assert doc["version"] == 1 and doc["format"] == "slimserve-catalog"
    for t in doc["targets"]:
        assert same_to_the_cent(t["usd_per_1m_input"], prices[t["id"]][0])
        assert same_to_the_cent(t["usd_per_1m_output"], prices[t["id"]][1])
    kinds = {t["id"]: t["price_kind"] for t in doc["targets"]}
    assert kinds["gpt-4o"] == "list" and kinds["int8@cpu"] == "measured"
    assert {t["id"]: t["status"] for t in doc["targets"]}["int4-bad@cpu"] == "dominated"
    assert any("pruned" in s for s in doc["skipped"])


def test_litellm_structure(cat, tmp_path):
    cfg = yaml.safe_load(
        router.export("litellm", tmp_path / "r.yaml", catalog=cat, api_base="http://h:9/v1").read_text()
    )
    rs = cfg["router_settings"]
    assert rs["routing_strategy"] == "cost-based-routing"
    groups = [m["model_name"] for m in cfg["model_list"]]
    order = list(dict.fromkeys(groups))
    assert order == ["nano", "small", "base", "premium"]
    assert rs["fallbacks"] == [{a: [b]} for a, b in itertools.pairwise(order)]
    for m in cfg["model_list"]:
        p = m["litellm_params"]
        if m["model_info"]["price_kind"] == "measured":
            assert p["model"] == f"openai/{m['model_info']['slimserve_target']}" and p["api_base"] == "http://h:9/v1"
        else:
            assert p["model"] == "openai/gpt-4o" and "api_base" not in p
    ids = [m["model_info"]["id"] for m in cfg["model_list"]]
    assert len(ids) == len(set(ids))  # litellm deployment ids are unique even when a target leads two tiers


def test_api_base_template_and_two_targets_of_one_variant(tmp_path):
    cat = make_catalog(tmp_path / "c", [manifest("ref", "base", reference=True), manifest("int8", "small", bits=8)])
    use_records(
        cat,
        [
            record("ref", "cpu", usd_in=0.4, usd_out=1.6),
            record("int8", "cpu", usd_in=0.2, usd_out=0.8, top1=0.98),
            record("int8", "onnx-cpu", usd_in=0.1, usd_out=0.5, top1=0.98),
        ],
    )
    rules = tmp_path / "t.yaml"
    rules.write_text("tiers: [{name: small, floor: 0.9}, {name: base, floor: 0.99}]\n")
    p = router.export(
        "json", tmp_path / "c.json", catalog=cat, api_base="http://{target}.local/{variant}/v1", rules=rules
    )
    doc = json.loads(p.read_text())
    by = {t["id"]: t for t in doc["targets"]}
    assert by["int8@cpu"]["usd_per_1m_output"] == 0.8 and by["int8@onnx-cpu"]["usd_per_1m_output"] == 0.5
    assert by["int8@onnx-cpu"]["endpoint"] == "http://onnx-cpu.local/int8/v1"
    assert by["int8@cpu"]["status"] == "dominated"  # same quality, dearer than the onnx target
    only_cpu = json.loads(
        router.export("json", tmp_path / "d.json", catalog=cat, target="cpu", rules=rules).read_text()
    )
    assert {t["id"] for t in only_cpu["targets"]} == {"ref@cpu", "int8@cpu"}


def test_json_and_openrouter_validate_against_their_schemas(cat, tmp_path):
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema validates the exports (pip install jsonschema)")
    files = export_all(cat, tmp_path)
    for fmt, schema in (("json", "catalog.schema.json"), ("openrouter", "openrouter-models.schema.json")):
        s = json.loads((SCHEMA_DIR / schema).read_text())
        jsonschema.Draft202012Validator.check_schema(s)
        doc = json.loads(files[fmt].read_text())
        jsonschema.validate(doc, s)
        if fmt == "json":
            assert doc["$schema"] == s["$id"] and doc["version"] == s["properties"]["version"]["const"]
    broken = json.loads(files["openrouter"].read_text())
    broken["data"][0]["pricing"]["prompt"] = 1.2e-7  # a number, not the documented string
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, json.loads((SCHEMA_DIR / "openrouter-models.schema.json").read_text()))


def _routellm_controller():
    if importlib.util.find_spec("routellm") is None:
        return None
    try:
        os.environ.setdefault("OPENAI_API_KEY", "sk-not-used")  # routellm builds an OpenAI client at import
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        from routellm.controller import Controller
    except Exception:
        return None
    return Controller


# RouteLLM 0.2.0 routellm/controller.py: Controller.__init__ parameters (used when routellm is not installed).
ROUTELLM_CONTROLLER_PARAMS = ["routers", "strong_model", "weak_model", "config", "api_base", "api_key", "progress_bar"]


def _controller_params() -> list[str]:
    controller = _routellm_controller()  # routellm pulls torch/datasets/sklearn; its absence must not fail the suite
    if controller is None:
        return ROUTELLM_CONTROLLER_PARAMS
    return [p for p in inspect.signature(controller.__init__).parameters if p != "self"]


def test_routellm_pair_and_keys(cat, tmp_path):
    cfg = yaml.safe_load(router.export("routellm", tmp_path / "rl.yaml", catalog=cat).read_text())
    params = _controller_params()
    kwargs = {k: cfg[k] for k in routellm_fmt.CONTROLLER_KEYS}
    assert set(kwargs) <= set(params)
    sig = inspect.Signature([inspect.Parameter(p, inspect.Parameter.KEYWORD_ONLY) for p in params])
    sig.bind_partial(**kwargs, config=cfg)  # the file is the Controller's kwargs and its router config
    assert {"routers", "strong_model", "weak_model"} <= set(kwargs)  # the arguments without defaults
    assert cfg["routers"] == ["mf"] and cfg["mf"]["checkpoint_path"]
    assert cfg["model"].startswith("router-mf-")
    assert cfg["strong_model"] == "openai/gpt-4o"  # the external premium model
    assert cfg["weak_model"] == "hosted_vllm/int4-g128@cpu"  # cheapest tier leader with top1 >= 0.90
    assert cfg["api_base"] is None and cfg["slimserve"]["env"]["HOSTED_VLLM_API_BASE"] == "http://localhost:8000/v1"


def test_default_rules_without_an_external_model(tmp_path, capsys):
    cat = standard(tmp_path, external=False)
    cfg = yaml.safe_load(router.export("litellm", tmp_path / "r.yaml", catalog=cat).read_text())
    assert list(dict.fromkeys(m["model_name"] for m in cfg["model_list"])) == ["nano", "small", "base"]
    assert "optional tier 'premium' left out" in capsys.readouterr().err
    rl = yaml.safe_load(
        router.export("routellm", tmp_path / "rl.yaml", catalog=cat, api_base="http://h/v1").read_text()
    )
    # both local: one endpoint for both, called as OpenAI-compatible models
    assert (rl["weak_model"], rl["strong_model"]) == ("openai/int4-g128@cpu", "openai/int8@cpu")
    assert rl["api_base"] == "http://h/v1" and rl["slimserve"]["env"] == {}


@pytest.mark.skipif(_routellm_controller() is None, reason="routellm is not installed (pip install routellm)")
def test_real_routellm_controller_routes_between_the_pair(cat, tmp_path, monkeypatch):
    cfg = yaml.safe_load(router.export("routellm", tmp_path / "rl.yaml", catalog=cat).read_text())
    for k, v in cfg["slimserve"]["env"].items():
        monkeypatch.setenv(k, v)
    kwargs = {k: cfg[k] for k in routellm_fmt.CONTROLLER_KEYS} | {"routers": ["random"]}  # mf needs the HF hub
    c = _routellm_controller()(**kwargs, config=cfg)
    msgs = [{"role": "user", "content": "hi"}]
    strong = c.completion(model="router-random-0.0", messages=msgs, mock_response="ok")  # threshold 0: always strong
    weak = c.completion(model="router-random-1.0", messages=msgs, mock_response="ok")  # threshold 1: always weak
    assert (strong.model, weak.model) == ("gpt-4o", "int4-g128@cpu")


def test_routellm_without_a_pair_is_a_clear_error(tmp_path):
    cat = make_catalog(tmp_path / "c", [manifest("ref", "base", reference=True)])
    use_records(cat, [record("ref", usd_in=0.4)])
    rules = tmp_path / "t.yaml"
    rules.write_text("tiers: [{name: base, floor: 0.99}]\n")
    with pytest.raises(UserError) as e:
        router.export("routellm", tmp_path / "rl.yaml", catalog=cat, rules=rules)
    msg = str(e.value)
    assert "RouteLLM needs a weak model cheaper than the strong one, ref@cpu" in msg
    assert "every tier routes to ref@cpu" in msg and "slimserve catalog add-external" in msg  # and what to do
    assert not (tmp_path / "rl.yaml").exists()


def test_tier_is_stored_and_reused_until_measurements_change(cat, tmp_path, capsys):
    rules = tmp_path / "t.yaml"
    rules.write_text("tiers: [{name: cheap, floor: 0.9}, {name: good, floor: 0.99}, {name: premium, kind: external}]\n")
    a = router.tier(cat, rules)
    assert [t.name for t in a.tiers] == ["cheap", "good", "premium"]
    doc = json.loads(router.export("json", tmp_path / "a.json", catalog=cat).read_text())
    assert [t["name"] for t in doc["tiers"]] == ["cheap", "good", "premium"]  # the stored rules, not the default
    use_records(
        cat,
        [record("int8", usd_in=0.05, usd_out=0.2, top1=0.985, kld=0.01, run="2", created="2026-11-30T02:00:00+00:00")],
    )  # a newer, cheaper run
    capsys.readouterr()
    doc = json.loads(router.export("json", tmp_path / "b.json", catalog=cat).read_text())
    assert "tiers recomputed" in capsys.readouterr().err
    assert [t["name"] for t in doc["tiers"]] == ["cheap", "good", "premium"]
    assert doc["tiers"][0]["leader"] == "int8@cpu"


def test_recipe_labels_survive_new_measurements(cat, tmp_path):
    a = router.tier(cat, from_recipe=True)
    assert a.source == "recipe" and [t.name for t in a.tiers][0] == "nano"
    use_records(
        cat, [record("int8", usd_in=0.3, usd_out=0.9, top1=0.985, run="3", created="2026-11-30T03:00:00+00:00")]
    )
    doc = json.loads(router.export("json", tmp_path / "c.json", catalog=cat).read_text())
    assert doc["tier_source"] == "recipe"
    assert {t["name"] for t in doc["tiers"]} == {"nano", "small", "base", "premium"}


def test_write_atomic_leaves_no_partial_file(tmp_path, monkeypatch):
    out = tmp_path / "x.yaml"
    out.write_text("old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    from slimserve.errors import UserError

    with pytest.raises(UserError, match="could not write"):  # one clear line (exit 2), not a traceback
        write_atomic(out, "new")
    assert out.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["x.yaml"]
    monkeypatch.undo()
    write_atomic(out, "new")
    assert out.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["x.yaml"]


def test_add_external_records_list_price_source_and_date(tmp_path):
    cat = make_catalog(tmp_path / "c", [])
    row = router.add_external(
        "claude", input_per_1m=3, output_per_1m=15, quality=["mc:arc_easy=0.95", "0.99"], source="vendor page",
        date="2026-10-01", catalog=cat,
    )  # fmt: skip
    assert row["quality"] == {"mc:arc_easy": 0.95, "top1": 0.99}
    (e,) = list_external(cat)
    assert (e["input_per_1m"], e["output_per_1m"], e["source"], e["date"]) == (3.0, 15.0, "vendor page", "2026-10-01")
    for bad, match in (
        ({"input_per_1m": -1}, "non-negative"),
        ({"output_per_1m": float("nan")}, "non-negative"),
        ({"source": " "}, "source"),
        ({"date": "yesterday"}, "YYYY-MM-DD"),
        ({"quality": {"accuracy": 0.9}}, "unknown quality metric"),
    ):
        kw = {"input_per_1m": 1, "output_per_1m": 2, "source": "s", "catalog": cat, **bad}
        with pytest.raises(UserError, match=match):
            router.add_external("x", **kw)


def run_cli(*argv: str, capsys) -> tuple[int, str, str]:
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_round_trip(cat, tmp_path, capsys):
    c = str(cat.root)
    rc, out, _ = run_cli("catalog", "add-external", "mistral-large", "--input-per-1m", "2", "--output-per-1m", "6",
                         "--quality", "mc:arc_easy=0.93", "--source", "https://mistral.ai/pricing", "--date",
                         "2026-11-02", "--catalog", c, capsys=capsys)  # fmt: skip
    assert rc == 0 and "list price" in out
    rc, out, err = run_cli("catalog", "tier", "--catalog", c, capsys=capsys)
    assert rc == 0 and "premium" in out and "dominated: int4-bad@cpu" in out and "pruned" in err
    for fmt in ("litellm", "openrouter", "routellm", "json"):
        rc, out, _ = run_cli("catalog", "export", "--format", fmt, "-o", str(tmp_path / f"o.{fmt}"), "--catalog", c,
                             capsys=capsys)  # fmt: skip
        assert rc == 0 and (tmp_path / f"o.{fmt}").is_file()
    doc = json.loads((tmp_path / "o.json").read_text())
    assert doc["tiers"][-1]["leader"] == "mistral-large"  # cheaper external wins premium


@pytest.mark.parametrize(
    "argv, message",
    [
        (["catalog", "export", "--format", "csv", "-o", "{tmp}/x"], "unknown export format 'csv'"),
        (["catalog", "export", "--format", "json", "-o", "{tmp}/missing/x.json"], "does not exist"),
        (
            ["catalog", "export", "--format", "json", "-o", "{tmp}/x.json", "--catalog", "{tmp}/empty"],
            "nothing to export",
        ),
        (["report", "-o", "{tmp}/r.html", "--catalog", "{tmp}/empty"], "nothing to report"),
        (["catalog", "export", "--format", "json", "-o", "{tmp}/x.json", "--catalog", "{tmp}/nope"], "does not exist"),
        (
            ["catalog", "add-external", "m", "--input-per-1m", "-1", "--output-per-1m", "1", "--source", "s"],
            "non-negative",
        ),
        (["catalog", "tier", "--rules", "{tmp}/impossible.yaml"], "matches no target"),
        (
            ["catalog", "export", "--format", "json", "-o", "{tmp}/x.json", "--api-base", "http://h:{{port}}/v1"],
            "placeholder",
        ),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(cat, tmp_path, capsys, argv, message):
    (tmp_path / "impossible.yaml").write_text("tiers: [{name: perfect, floor: 1.5}]\n")
    (tmp_path / "empty").mkdir()
    argv = [a.format(tmp=tmp_path) for a in argv]
    if "--catalog" not in argv:
        argv += ["--catalog", str(cat.root)]
    rc, _, err = run_cli(*argv, capsys=capsys)
    assert rc == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "r.html").exists()
    assert not (tmp_path / "nope").exists()  # reading commands create no catalog
