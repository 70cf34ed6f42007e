"""`slimserve catalog list` fits the width by hiding low-priority columns; a name is never cut or wrapped."""

from __future__ import annotations

import io
import json
import os

import pytest

from slimserve.cli import main
from slimserve.cli.catalog import list_rows
from slimserve.cli.table import layout, print_table

from .helpers import run_cli
from .router_helpers import make_catalog, manifest, record, use_records

LONG = "smollm2-int4-g32-awq-pruned-2of4-lora"
NO_TIERS = "tiers: run 'slimserve catalog tier' to assign tiers from measurements"
NAMES = ["smollm2-fp32", "smollm2-int8", "smollm2-int4-g128", LONG]


@pytest.fixture
def cat(tmp_path):
    """Four variants, three benchmarked (so the bench columns exist), one with a 37-character name."""
    c = make_catalog(tmp_path / "catalog", [manifest(n, "nano", bits=4.25) for n in NAMES])
    use_records(c, [record(n, usd_in=0.12, usd_out=0.47, top1=0.93, kld=0.08, ppl_delta=0.05) for n in NAMES[:3]])
    return str(c.root)


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    return {**env, **extra}


def _rows(out: str) -> tuple[list[str], list[str]]:
    lines = out.splitlines()
    return lines[0].split(), lines[1:]


def test_names_intact_at_80_columns_with_a_footer(cat):
    r = run_cli("catalog", "list", "--catalog", cat, env=_env(COLUMNS="80"))
    assert r.returncode == 0, r.stderr
    header, body = _rows(r.stdout)
    assert header[:3] == ["name", "tier", "status"] and "kld" not in header
    assert all(len(line) <= 80 for line in r.stdout.splitlines())
    assert sorted(line.split()[0] for line in body[:4]) == sorted(NAMES)  # whole names, one line each
    assert "…" not in r.stdout and len(body) == 6
    assert body[-2].startswith("hidden columns: ") and "--wide shows them" in body[-2]
    assert "size_mb" in body[-2] or "decode_tok_s" in body[-2]
    assert body[-1] == NO_TIERS  # nothing tiered yet: no tier shown, and the footer says how to get one


def test_wide_shows_every_column(cat):
    r = run_cli("catalog", "list", "--catalog", cat, "--wide", env=_env(COLUMNS="80"))
    header, body = _rows(r.stdout)
    assert header == [
        "name", "tier", "status", "format", "bits", "size_mb", "decode_tok_s", "usd_1m_out", "kld", "ppl",
        "usd_1m_in", "bench_target", "method", "params", "label",
    ]  # fmt: skip
    assert len(body) == 5 and "hidden" not in r.stdout and body[-1] == NO_TIERS


def test_piped_output_is_plain_and_unlimited(cat):
    r = run_cli("catalog", "list", "--catalog", cat, env=_env())  # stdout is a pipe and COLUMNS is unset
    assert "\x1b[" not in r.stdout  # no colour
    assert not set(r.stdout) & set("─│┃┏┓━╇┡")  # no box drawing
    header, body = _rows(r.stdout)
    assert len(header) == 15 and len(body) == 5  # nothing hidden: a file or pipe has no width
    assert max(len(line) for line in r.stdout.splitlines()) > 120


@pytest.mark.parametrize("width", [60, 100, 140])
def test_columns_follow_the_width(cat, width):
    r = run_cli("catalog", "list", "--catalog", cat, env=_env(COLUMNS=str(width)))
    lines = r.stdout.splitlines()
    assert all(len(line) <= width for line in lines)
    assert LONG in r.stdout


def test_json_rows(cat, capsys):
    assert main(["catalog", "list", "--catalog", cat, "--json"]) == 0
    out = capsys.readouterr()
    rows = json.loads(out.out)  # the footer goes to stderr: stdout stays JSON
    assert [r["name"] for r in rows] == sorted(NAMES) and rows[0]["kld"] == 0.08
    assert all(r["label"] == "nano" and r["tier"] is None and r["status"] == "built" for r in rows)
    assert out.err.strip() == NO_TIERS


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_output_keeps_names_when_narrower_than_a_name(monkeypatch):
    monkeypatch.setenv("COLUMNS", "20")
    out = _Tty()
    lay = print_table([{"name": LONG, "tier": "nano", "bits": 4.25}], stream=out)
    assert lay.columns == ["name"] and lay.dropped == ["tier", "bits"]
    assert LONG in out.getvalue() and "…" not in out.getvalue()


def test_layout_keeps_priority_order():
    rows = [{"params": 2_000_000, "kld": 0.01, "name": "a", "custom": 1, "tier": "nano"}]
    assert layout(rows, width=None).columns == ["name", "tier", "kld", "params", "custom"]
    lay = layout(rows, width=len("name  nano  0.01"))  # a column is as wide as its header or widest cell
    assert lay.columns == ["name", "tier", "kld"] and lay.dropped == ["params", "custom"]
    assert lay.cells == [["a", "nano", "0.01"]]


def test_tier_column_is_the_stored_catalog_tier(tmp_path, capsys):
    """`catalog tier` decides the tiers; `catalog list` shows them, the recipe's label apart, and the gate status."""
    import slimserve.router as router

    from .router_demo import demo, gated

    c = demo(tmp_path)
    router.tier(c)
    rows = {r["name"]: r for r in list_rows(str(c.root))}
    got = {n: (r["tier"], r["tier_status"], r["status"], r["label"]) for n, r in rows.items()}
    assert got == {
        "smollm2-fp32": ("base", "leader", "reference", "reference"),  # leads nano and small too: its own is base
        "smollm2-int8": (None, "dominated", "passed", "small"),
        "smollm2-int4-g128": (None, "rejected", "rejected", "nano"),  # the recipe said nano; its gates said no
        "smollm2-onnx-int4-b32": (None, "below_floor", "passed", "nano"),
    }
    capsys.readouterr()
    assert main(["catalog", "list", "--catalog", str(c.root)]) == 0
    out = capsys.readouterr()
    lines = {line.split()[0]: line for line in out.out.splitlines()}
    assert lines["smollm2-int4-g128"].split()[1:4] == ["-", "(rejected)", "rejected"]
    assert lines["smollm2-fp32"].split()[1:3] == ["base", "reference"] and "tiers:" not in out.out
    # a newer measurement makes the stored tiering stale: no tier is shown from it, and the footer says so
    newer = record("smollm2-int8", usd_in=0.01, usd_out=0.04, top1=0.969, kld=0.0025, run="2",
                   created="2026-11-30T02:00:00+00:00")  # fmt: skip
    use_records(c, [gated(newer, {"max_kld": 0.01})])
    assert main(["catalog", "list", "--catalog", str(c.root)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith("tiers: measurements changed since the stored tiering; run 'slimserve")
    assert {r["name"]: r["tier"] for r in list_rows(str(c.root))}["smollm2-fp32"] is None
    router.tier(c, include_rejected=True)  # the stored scope is checked with the same include_rejected
    rows = {r["name"]: r for r in list_rows(str(c.root))}
    assert rows["smollm2-int8"]["tier"] == "small" and rows["smollm2-int4-g128"]["tier_status"] == "dominated"


def test_status_falls_back_to_the_build_check_then_built(tmp_path):
    from slimserve.gates import PASSED, GateResult

    checked = {**manifest("checked", "nano"), "gate_check": GateResult(PASSED, run_id="build").to_dict()}
    c = make_catalog(tmp_path / "c", [checked, manifest("plain", "nano")])
    rows = {r["name"]: r for r in list_rows(str(c.root))}
    assert (rows["checked"]["status"], rows["plain"]["status"]) == ("passed", "built")
    assert rows["checked"]["tier"] is None and rows["checked"]["tier_status"] == "no_bench"
    r = run_cli("catalog", "list", "--catalog", str(c.root), env=_env())
    assert r.stdout.splitlines()[-1].startswith("tiers: bench the variants ('slimserve bench'), then run")


def test_variant_status_per_target():
    from slimserve.router.listing import variant_status

    recs = [record("v", "cpu", usd_in=0.1), record("v", "onnx-cpu", usd_in=0.1)]
    recs[0].gate, recs[1].gate = {"status": "passed"}, {"status": "rejected"}
    assert variant_status({}, recs, "built") == "passed@cpu,rejected@onnx-cpu"
    recs[1].gate = {"status": "passed"}
    assert variant_status({}, recs, "built") == "passed"
    assert variant_status({}, [record("v", usd_in=0.1)], "built") == "built"  # measured before gates existed
