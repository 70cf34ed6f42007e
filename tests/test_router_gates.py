"""Targets whose quality gates rejected their latest benchmark stay out of tier, every export and the report, with
the reason printed; --include-rejected (include_rejected=True) keeps them."""

from __future__ import annotations

import json

import pytest
import yaml

import slimserve.router as router
from slimserve.bench.store import latest_records
from slimserve.cli import main
from slimserve.errors import UserError
from slimserve.report import report

from .router_demo import INT4_GATES, demo, gated
from .router_helpers import make_catalog, manifest, record, use_records

INT4_LEFT_OUT = (
    "left out: smollm2-int4-g128@cpu: rejected by its gates (run run1-smollm2-int4-g128-cpu: kld 0.302 <= 0.08: "
    "FAILS; top1 0.685 >= 0.83: FAILS); --include-rejected keeps it"
)
NANO_GATES = {"min_top1": 0.9}


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture
def demo_cat(tmp_path):
    cat = demo(tmp_path)
    router.add_external(
        "gpt-4o", input_per_1m=2.5, output_per_1m=10.0, source="https://openai.com/api/pricing", date="2026-11-01",
        model="openai/gpt-4o", catalog=cat,
    )  # fmt: skip
    return cat


@pytest.fixture
def frontier(tmp_path):
    """A rejected int4 that would lead nano (on the front, top1 0.85) next to a passing int8 and the reference."""
    cat = make_catalog(
        tmp_path / "f",
        [manifest("ref", "reference", reference=True), manifest("int8", "small", bits=8), manifest("int4", "nano")],
    )
    use_records(
        cat,
        [
            gated(record("ref", usd_in=0.4, usd_out=1.6, top1=1.0, kld=0.0), None, reference=True),
            gated(record("int8", usd_in=0.2, usd_out=0.8, top1=0.95, kld=0.01), NANO_GATES),
            gated(record("int4", usd_in=0.1, usd_out=0.4, top1=0.85, kld=0.05), NANO_GATES),
        ],
    )
    return cat


def test_tier_leaves_the_rejected_variant_out_and_says_why(demo_cat, capsys):
    rc, out, err = cli(capsys, "catalog", "tier", "--catalog", str(demo_cat.root))
    assert rc == 0 and INT4_LEFT_OUT in err
    assert "smollm2-int4-g128" not in out and "smollm2-int8@cpu" in out  # the passing one is tiered
    rc, out, err = cli(capsys, "catalog", "tier", "--catalog", str(demo_cat.root), "--include-rejected")
    assert rc == 0 and "left out: smollm2-int4-g128" not in err
    assert "note: smollm2-int4-g128@cpu: rejected by its gates" in err and "kept by --include-rejected" in err
    assert "dominated: smollm2-int4-g128@cpu (by smollm2-fp32@cpu) (rejected by its gates, kept" in out


def test_every_export_leaves_it_out(demo_cat, tmp_path, capsys):
    files = {f: router.export(f, tmp_path / f"o.{f}", catalog=demo_cat) for f in router.formats()}
    assert INT4_LEFT_OUT in capsys.readouterr().err
    lite = yaml.safe_load(files["litellm"].read_text())
    ids = {m["model_info"]["slimserve_target"] for m in lite["model_list"]}
    assert ids == {"smollm2-fp32@cpu", "gpt-4o"}  # int8 dominated, onnx below every floor, int4 rejected
    assert "# " + INT4_LEFT_OUT in files["litellm"].read_text()  # said in the file, too
    orr = json.loads(files["openrouter"].read_text())
    assert "smollm2-int4-g128@cpu" not in {d["id"] for d in orr["data"]} and len(orr["data"]) == 4
    doc = json.loads(files["json"].read_text())
    assert "smollm2-int4-g128@cpu" not in {t["id"] for t in doc["targets"]}
    (rej,) = doc["rejected"]
    assert (rej["id"], rej["kept"], rej["gate"]["status"]) == ("smollm2-int4-g128@cpu", False, "rejected")
    assert {t["id"]: t["gate"]["status"] for t in doc["targets"] if t["gate"]}["smollm2-int8@cpu"] == "passed"
    rl = yaml.safe_load(files["routellm"].read_text())
    assert (rl["slimserve"]["weak"]["id"], rl["slimserve"]["strong"]["id"]) == ("smollm2-fp32@cpu", "gpt-4o")


def test_include_rejected_puts_it_back(frontier, tmp_path, capsys):
    cfg = yaml.safe_load(router.export("litellm", tmp_path / "a.yaml", catalog=frontier).read_text())
    assert "int4@cpu" not in {m["model_info"]["slimserve_target"] for m in cfg["model_list"]}
    nano = [m for m in cfg["model_list"] if m["model_name"] == "nano"]
    assert [m["model_info"]["slimserve_target"] for m in nano] == ["int8@cpu"]  # borrowed from small
    assert "top1 0.85 >= 0.9: FAILS" in capsys.readouterr().err
    out = tmp_path / "b.yaml"
    rc, _, err = cli(capsys, "catalog", "export", "--format", "litellm", "-o", str(out), "--catalog",
                     str(frontier.root), "--include-rejected")  # fmt: skip
    assert rc == 0 and "kept by --include-rejected" in err
    nano = [m for m in yaml.safe_load(out.read_text())["model_list"] if m["model_name"] == "nano"]
    assert [m["model_info"]["slimserve_target"] for m in nano] == ["int4@cpu"]  # on the front: it leads nano


def test_report_lists_rejected_targets_with_their_failing_checks(frontier, tmp_path):
    html = report(tmp_path / "r.html", catalog=frontier).read_text()
    section = html[html.index("<h2>Rejected by quality gates</h2>") : html.index("<h2>Left out</h2>")]
    assert "int4@cpu" in section and "top1 0.85 &gt;= 0.9: FAILS" in section and "left out" in section
    assert "run1-int4-cpu" in section
    targets = html[html.index('id="targets"') : html.index('id="details"')]
    assert ">int4@cpu<" not in targets and ">int8@cpu<" in targets
    html = report(tmp_path / "k.html", catalog=frontier, include_rejected=True).read_text()
    targets = html[html.index('id="targets"') : html.index('id="details"')]
    assert ">int4@cpu<" in targets and "rejected by its gates, kept" in targets
    assert "kept (--include-rejected)" in html


def test_records_without_a_verdict_count_as_unchecked(tmp_path, capsys):
    a = router.tier(demo(tmp_path, gates=False))  # records written before gates existed
    assert "smollm2-int4-g128@cpu" in a.status and a.status["smollm2-int4-g128@cpu"]["gate"] is None
    assert "rejected" not in capsys.readouterr().err  # kept, with no note


def test_a_run_without_quality_keeps_the_verdict_on_the_quality_it_reuses(frontier, capsys):
    newer = record("int4", usd_in=0.09, usd_out=0.35, run="2", created="2026-11-30T02:00:00+00:00")
    newer.quality = None  # --no-quality: the store fills quality (and its verdict) from the older run
    use_records(frontier, [gated(newer, NANO_GATES)])
    assert newer.gate["status"] == "unchecked"
    (rec,) = [r for r in latest_records(frontier) if r.variant == "int4"]
    assert rec.quality.top1 == 0.85 and rec.gate["status"] == "rejected" and rec.cost.usd_per_1m_input == 0.09
    a = router.tier(frontier)
    assert "int4@cpu" not in a.status and "rejected by its gates" in capsys.readouterr().err


def test_nothing_left_but_rejected_targets_says_so(tmp_path, capsys):
    cat = make_catalog(tmp_path / "c", [manifest("int4", "nano")])
    use_records(cat, [gated(record("int4", usd_in=0.1, top1=0.7, kld=0.3), INT4_GATES)])
    rc, _, err = cli(capsys, "catalog", "export", "--format", "json", "-o", str(tmp_path / "x.json"), "--catalog",
                     str(cat.root))  # fmt: skip
    assert rc == 2 and "every benchmarked target was rejected by its gates (int4@cpu)" in err
    assert "--include-rejected keeps them" in err and not (tmp_path / "x.json").exists()
    with pytest.raises(UserError, match=r"include_rejected=True keeps them"):  # Python callers see the keyword
        router.export("json", tmp_path / "x.json", catalog=cat)


def test_a_rule_only_a_rejected_target_met_names_it(tmp_path):
    cat = make_catalog(tmp_path / "c", [manifest("int4", "nano"), manifest("tiny", "nano")])
    use_records(
        cat,
        [
            gated(record("int4", usd_in=0.1, top1=0.85, kld=0.05), NANO_GATES),
            gated(record("tiny", usd_in=0.05, top1=0.5, kld=0.9), None),
        ],
    )
    rules = tmp_path / "t.yaml"
    rules.write_text("tiers: [{name: nano, floor: 0.8}]\n")
    with pytest.raises(UserError) as e:
        router.tier(cat, rules)
    msg = str(e.value)
    assert "tier rule 'nano' (top1 >= 0.8, kind any) matches no target" in msg
    assert "closest on the front: tiny@cpu 0.5" in msg
    assert "left out as rejected by their gates: int4@cpu (top1 0.85)" in msg
    assert router.tier(cat, rules, include_rejected=True).tiers[0].leader == "int4@cpu"


def test_stored_tiers_with_rejected_targets_are_not_reused_without_them(frontier, tmp_path, capsys):
    router.tier(frontier, include_rejected=True)
    capsys.readouterr()
    doc = json.loads(router.export("json", tmp_path / "a.json", catalog=frontier, include_rejected=True).read_text())
    assert "recomputed" not in capsys.readouterr().err and doc["tiers"][0]["leader"] == "int4@cpu"
    doc = json.loads(router.export("json", tmp_path / "b.json", catalog=frontier).read_text())
    err = capsys.readouterr().err
    assert "the stored tiers cover every target with rejected variants, this covers every target without" in err
    assert doc["tiers"][0]["leader"] == "int8@cpu" and doc["tiers"][0]["borrowed_from"] == "small"
