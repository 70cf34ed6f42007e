"""Benchmark records: JSON round trip and the catalog index (history, latest, stale builds, atomic writes)."""

import json
import sqlite3

import pytest

from slimserve.bench.serialize import record_from_dict, record_from_json, record_to_json
from slimserve.bench.store import history, latest_records, runs, save_run, summary_columns
from slimserve.catalog import Catalog

from .bench_helpers import fake_record


def test_record_json_round_trip():
    r = fake_record("v")
    back = record_from_json(record_to_json(r))
    assert back == r
    assert set(back.speed.prefill_tok_s) == {128, 512}  # int keys survive JSON
    assert back.speed.batch_errors == {16: "out of memory"}
    d = json.loads(record_to_json(r))
    d["version"] = 99
    with pytest.raises(ValueError, match="newer"):
        record_from_dict(d)


def test_index_round_trip_history_and_latest(tmp_path):
    cat = Catalog.open(tmp_path / "cat")
    save_run(
        cat, [fake_record("a", run_id="r1", tok_s=10), fake_record("b", run_id="r1", tok_s=20)], config={}, builds={}
    )
    save_run(
        cat, [fake_record("a", run_id="r2", created="2026-02-01T00:00:00+00:00", tok_s=12)], config={"x": 1}, builds={}
    )
    assert [r.run_id for r in history(cat, "a")] == ["r1", "r2"]
    latest = {r.variant: r for r in latest_records(cat)}
    assert latest["a"].run_id == "r2" and latest["a"].speed.decode_tok_s.p50 == 12
    assert latest["b"].run_id == "r1"
    assert latest["a"] == fake_record("a", run_id="r2", created="2026-02-01T00:00:00+00:00", tok_s=12)
    assert latest_records(cat, target="cuda") == []
    assert [r["run_id"] for r in runs(cat)] == ["r2", "r1"]
    cols = summary_columns(cat)
    assert cols["a"]["decode_tok_s"] == 12 and cols["a"]["usd_1m_out"] == 2.0 and cols["b"]["ppl"] == 12.0


def test_failed_write_stores_nothing(tmp_path):
    cat = Catalog.open(tmp_path / "cat")
    dup = [fake_record("a", run_id="r1"), fake_record("a", run_id="r1")]  # same (run, variant) twice
    with pytest.raises(sqlite3.IntegrityError):
        save_run(cat, dup, config={}, builds={})
    assert history(cat) == [] and list(runs(cat)) == []


def test_results_of_a_rebuilt_variant_are_stale(tmp_path, tiny_llama_dir):
    import shutil

    from .bench_helpers import write_manifest

    root = tmp_path / "cat"
    root.mkdir()
    shutil.copytree(tiny_llama_dir, root / "v")
    m = write_manifest(root / "v", "v", reference=True)
    cat = Catalog.open(root)
    from slimserve.bench.store import variant_build_id

    save_run(cat, [fake_record("v")], config={}, builds={"v": variant_build_id(m)})
    assert [r.variant for r in latest_records(cat)] == ["v"]
    m["built_at"] = "2027-01-01T00:00:00Z"  # rebuilt since
    (root / "v" / "manifest.json").write_text(json.dumps(m))
    with cat.transaction() as con:
        con.execute("UPDATE variants SET manifest = ? WHERE name = 'v'", (json.dumps(m),))
    assert latest_records(cat) == []
    assert [r.variant for r in latest_records(cat, current_only=False)] == ["v"]
    assert summary_columns(cat) == {}


def test_speed_only_run_keeps_the_last_quality(tmp_path):
    import dataclasses

    cat = Catalog.open(tmp_path / "cat")
    full = fake_record("a", run_id="r1")
    save_run(cat, [full], config={}, builds={})
    newer = dataclasses.replace(
        fake_record("a", run_id="r2", created="2026-03-01T00:00:00+00:00", tok_s=30), quality=None
    )
    save_run(cat, [newer], config={}, builds={})
    (latest,) = latest_records(cat)
    assert latest.run_id == "r2" and latest.speed.decode_tok_s.p50 == 30
    assert latest.quality == full.quality and any("quality from run r1" in n for n in latest.notes)
    assert history(cat, "a")[-1].quality is None  # the stored record itself is unchanged
