"""`slimserve catalog list` fits the width by hiding low-priority columns; a name is never cut or wrapped."""

from __future__ import annotations

import io
import json
import os

import pytest

from slimserve.cli import main
from slimserve.cli.table import layout, print_table

from .helpers import run_cli
from .router_helpers import make_catalog, manifest, record, use_records

LONG = "smollm2-int4-g32-awq-pruned-2of4-lora"
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
    assert "…" not in r.stdout and len(body) == 5
    assert body[-1].startswith("hidden columns: ") and "--wide shows them" in body[-1]
    assert "size_mb" in body[-1] or "decode_tok_s" in body[-1]


def test_wide_shows_every_column(cat):
    r = run_cli("catalog", "list", "--catalog", cat, "--wide", env=_env(COLUMNS="80"))
    header, body = _rows(r.stdout)
    assert header == [
        "name", "tier", "status", "format", "bits", "size_mb", "decode_tok_s", "usd_1m_out", "kld", "ppl",
        "usd_1m_in", "bench_target", "method", "params",
    ]  # fmt: skip
    assert len(body) == 4 and "hidden" not in r.stdout


def test_piped_output_is_plain_and_unlimited(cat):
    r = run_cli("catalog", "list", "--catalog", cat, env=_env())  # stdout is a pipe and COLUMNS is unset
    assert "\x1b[" not in r.stdout  # no colour
    assert not set(r.stdout) & set("─│┃┏┓━╇┡")  # no box drawing
    header, body = _rows(r.stdout)
    assert len(header) == 14 and len(body) == 4  # nothing hidden: a file or pipe has no width
    assert max(len(line) for line in r.stdout.splitlines()) > 120


@pytest.mark.parametrize("width", [60, 100, 140])
def test_columns_follow_the_width(cat, width):
    r = run_cli("catalog", "list", "--catalog", cat, env=_env(COLUMNS=str(width)))
    lines = r.stdout.splitlines()
    assert all(len(line) <= width for line in lines)
    assert LONG in r.stdout


def test_json_is_unchanged(cat, capsys):
    assert main(["catalog", "list", "--catalog", cat, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == sorted(NAMES) and rows[0]["kld"] == 0.08


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
