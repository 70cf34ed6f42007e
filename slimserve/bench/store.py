"""Benchmark results in the catalog's SQLite index: one row per run, one per variant x run, with full history.

A run's rows are written in one transaction at the end, so an interrupted benchmark stores nothing. Each result row
carries the variant's build id (hash of its manifest files), so results of a variant rebuilt since are recognised as
stale and left out of the latest view.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from .fingerprint import fingerprint_id
from .record import BenchRecord
from .serialize import record_from_json, record_to_json

SCHEMA = """
CREATE TABLE IF NOT EXISTS bench_runs (
    run_id TEXT PRIMARY KEY,
    created TEXT NOT NULL,
    target TEXT NOT NULL,
    fingerprint_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    command TEXT NOT NULL,
    config TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS bench_results (
    run_id TEXT NOT NULL REFERENCES bench_runs(run_id),
    variant TEXT NOT NULL,
    target TEXT NOT NULL,
    fingerprint_id TEXT NOT NULL,
    variant_build TEXT,
    created TEXT NOT NULL,
    decode_tok_s REAL,
    ppl REAL,
    kld REAL,
    usd_per_1m_input REAL,
    usd_per_1m_output REAL,
    record TEXT NOT NULL,
    PRIMARY KEY (run_id, variant)
);
CREATE INDEX IF NOT EXISTS bench_results_latest ON bench_results (variant, target, created);
"""

# Columns `slimserve catalog list` shows, from the latest result of each variant.
SUMMARY_COLUMNS = ("bench_target", "decode_tok_s", "ppl", "kld", "usd_1m_in", "usd_1m_out")


def variant_build_id(manifest: dict[str, Any]) -> str:
    """Identity of a variant's built files: a rebuild (new hashes or build time) gives a new id."""
    files = manifest.get("files") or {}
    key = json.dumps(
        {"files": {k: (v or {}).get("sha256") for k, v in files.items()}, "built_at": manifest.get("built_at")},
        sort_keys=True,
    )
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def ensure(cat: Any) -> None:
    cat.ensure_schema(SCHEMA)


def save_run(cat: Any, records: list[BenchRecord], *, config: dict[str, Any], builds: dict[str, str]) -> None:
    """Store one run's records (same run_id/target/fingerprint) atomically; builds: variant -> variant_build_id."""
    if not records:
        return
    ensure(cat)
    first = records[0]
    fp = first.fingerprint
    fid = fingerprint_id(fp)
    with cat.transaction() as con:
        con.execute(
            "INSERT INTO bench_runs (run_id, created, target, fingerprint_id, fingerprint, command, config)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                first.run_id,
                first.created,
                first.target,
                fid,
                json.dumps(first.to_dict()["fingerprint"], sort_keys=True),
                fp.command,
                json.dumps(config, sort_keys=True, default=str),
            ),
        )
        for r in records:
            s, q, c = r.speed, r.quality, r.cost
            con.execute(
                "INSERT INTO bench_results (run_id, variant, target, fingerprint_id, variant_build, created,"
                " decode_tok_s, ppl, kld, usd_per_1m_input, usd_per_1m_output, record)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    r.run_id,
                    r.variant,
                    r.target,
                    fingerprint_id(r.fingerprint),
                    builds.get(r.variant),
                    r.created,
                    s.decode_tok_s.p50 if s and s.decode_tok_s else None,
                    q.ppl if q else None,
                    q.kld if q else None,
                    c.usd_per_1m_input if c else None,
                    c.usd_per_1m_output if c else None,
                    record_to_json(r),
                ),
            )


def _current_builds(cat: Any) -> dict[str, str]:
    return {v.name: variant_build_id(v.manifest) for v in cat.variants()}


def history(cat: Any, variant: str | None = None, target: str | None = None) -> list[BenchRecord]:
    """Every stored record, oldest first, optionally for one variant and/or target."""
    ensure(cat)
    sql, args = "SELECT record FROM bench_results WHERE 1=1", []
    if variant is not None:
        sql, args = sql + " AND variant = ?", [*args, variant]
    if target is not None:
        sql, args = sql + " AND target = ?", [*args, target]
    with cat.connect() as con:
        rows = con.execute(sql + " ORDER BY created, run_id", args).fetchall()
    return [record_from_json(r[0]) for r in rows]


def latest_records(cat: Any, target: str | None = None, *, current_only: bool = True) -> list[BenchRecord]:
    """The newest record per (variant, target). A run with --no-quality or --no-speed leaves parts out; those are
    filled from the newest earlier record of the same variant, target and build that has them (with a note naming
    the run). current_only drops records of variants rebuilt since they were measured; records of variants no longer
    in the catalog are kept (callers report them)."""
    ensure(cat)
    sql, args = "SELECT record, variant, target, variant_build FROM bench_results", []
    if target is not None:
        sql, args = sql + " WHERE target = ?", [target]
    with cat.connect() as con:
        rows = con.execute(sql + " ORDER BY created DESC, rowid DESC", args).fetchall()
    builds = _current_builds(cat) if current_only else {}
    newest: dict[tuple[str, str], tuple[BenchRecord, str | None]] = {}
    for rec_json, variant, tgt, build in rows:
        if current_only and variant in builds and build is not None and builds[variant] != build:
            continue
        key = (variant, tgt)
        if key not in newest:
            newest[key] = (record_from_json(rec_json), build)
            continue
        rec, first_build = newest[key]
        if build != first_build:
            continue
        older = record_from_json(rec_json)
        if rec.quality is None and older.quality is not None:
            rec.quality = older.quality
            rec.gate = older.gate if older.gate is not None else rec.gate  # the verdict on that quality
            rec.notes.append(f"quality from run {older.run_id} ({older.created})")
        if rec.speed is None and older.speed is not None:
            rec.speed, rec.cost = older.speed, older.cost
            rec.notes.append(f"speed and cost from run {older.run_id} ({older.created})")
    return [newest[k][0] for k in sorted(newest)]


def summary_columns(cat: Any) -> dict[str, dict[str, Any]]:
    """variant -> {bench_target, decode_tok_s, ppl, kld, usd_1m_in, usd_1m_out} from its latest current results;
    with several targets, the one with the cheapest output tokens."""
    best: dict[str, BenchRecord] = {}
    for r in latest_records(cat):
        cur = best.get(r.variant)
        if cur is None or _out_cost(r) < _out_cost(cur):
            best[r.variant] = r
    return {name: summary_of(r) for name, r in best.items()}


def _out_cost(r: BenchRecord) -> float:
    return r.cost.usd_per_1m_output if r.cost else float("inf")


def summary_of(r: BenchRecord) -> dict[str, Any]:
    s, q, c = r.speed, r.quality, r.cost
    return {
        "bench_target": r.target,
        "decode_tok_s": round(s.decode_tok_s.p50, 2) if s and s.decode_tok_s else None,
        "ppl": round(q.ppl, 3) if q and q.ppl is not None else None,
        "kld": round(q.kld, 5) if q and q.kld is not None else None,
        "usd_1m_in": round(c.usd_per_1m_input, 4) if c else None,
        "usd_1m_out": round(c.usd_per_1m_output, 4) if c else None,
    }


def runs(cat: Any) -> Iterable[dict[str, Any]]:
    """Stored runs, newest first: run_id, created, target, command."""
    ensure(cat)
    with cat.connect() as con:
        rows = con.execute("SELECT run_id, created, target, command FROM bench_runs ORDER BY created DESC").fetchall()
    return [dict(r) for r in rows]


def run_records(cat: Any, run_id: str) -> list[BenchRecord]:
    """The records of one stored run, in the order they were stored."""
    ensure(cat)
    with cat.connect() as con:
        rows = con.execute("SELECT record FROM bench_results WHERE run_id = ? ORDER BY rowid", (run_id,)).fetchall()
    return [record_from_json(r[0]) for r in rows]


def run_config(cat: Any, run_id: str) -> dict[str, Any]:
    """The config a stored run was made with ({} if the run is unknown)."""
    ensure(cat)
    with cat.connect() as con:
        row = con.execute("SELECT config FROM bench_runs WHERE run_id = ?", (run_id,)).fetchone()
    return json.loads(row[0]) if row else {}
