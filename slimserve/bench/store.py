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


RUNS = ".runs"  # catalog.RUNS: one JSON file per run beside the index, so the history survives a lost index
_RUN_COLS = ("run_id", "created", "target", "fingerprint_id", "fingerprint", "command", "config")
_RESULT_COLS = ("run_id", "variant", "target", "fingerprint_id", "variant_build", "created", "decode_tok_s", "ppl",
                "kld", "usd_per_1m_input", "usd_per_1m_output", "record")  # fmt: skip


def ensure(cat: Any) -> None:
    """Create the tables, and bring back any run whose file is in `.runs/` but whose rows are not in the index."""
    cat.ensure_schema(SCHEMA)
    runs = cat.root / RUNS
    if not runs.is_dir():
        return
    files = {f.stem: f for f in runs.glob("*.json")}
    if not files:
        return
    with cat.connect() as con:
        have = {r[0] for r in con.execute("SELECT run_id FROM bench_runs")}
    missing = [f for run_id, f in sorted(files.items()) if run_id not in have]
    if not missing:
        return
    with cat.transaction() as con:
        for f in missing:
            try:
                doc = json.loads(f.read_text(encoding="utf-8"))
                _insert(con, doc["run"], doc["results"])
            except (ValueError, KeyError, TypeError) as e:
                import logging

                logging.getLogger("slimserve").warning("skipped unreadable bench run file %s (%s)", f, e)


def _insert(con: Any, run: dict[str, Any], results: list[dict[str, Any]], verb: str = "INSERT OR IGNORE") -> None:
    con.execute(
        f"{verb} INTO bench_runs ({', '.join(_RUN_COLS)}) VALUES ({', '.join('?' * len(_RUN_COLS))})",
        tuple(run[c] for c in _RUN_COLS),
    )
    for row in results:
        con.execute(
            f"{verb} INTO bench_results ({', '.join(_RESULT_COLS)}) VALUES ({', '.join('?' * len(_RESULT_COLS))})",
            tuple(row.get(c) for c in _RESULT_COLS),
        )


def save_run(cat: Any, records: list[BenchRecord], *, config: dict[str, Any], builds: dict[str, str]) -> None:
    """Store one run's records (same run_id/target/fingerprint) atomically; builds: variant -> variant_build_id.

    The run is written as `.runs/<run_id>.json` first (atomically), then into the index."""
    if not records:
        return
    ensure(cat)
    first = records[0]
    fp = first.fingerprint
    run = {
        "run_id": first.run_id,
        "created": first.created,
        "target": first.target,
        "fingerprint_id": fingerprint_id(fp),
        "fingerprint": json.dumps(first.to_dict()["fingerprint"], sort_keys=True),
        "command": fp.command,
        "config": json.dumps(config, sort_keys=True, default=str),
    }
    results = []
    for r in records:
        s, q, c = r.speed, r.quality, r.cost
        results.append(
            {
                "run_id": r.run_id,
                "variant": r.variant,
                "target": r.target,
                "fingerprint_id": fingerprint_id(r.fingerprint),
                "variant_build": builds.get(r.variant),
                "created": r.created,
                "decode_tok_s": s.decode_tok_s.p50 if s and s.decode_tok_s else None,
                "ppl": q.ppl if q else None,
                "kld": q.kld if q else None,
                "usd_per_1m_input": c.usd_per_1m_input if c else None,
                "usd_per_1m_output": c.usd_per_1m_output if c else None,
                "record": record_to_json(r),
            }
        )
    from ..util import atomic_write_text

    (cat.root / RUNS).mkdir(exist_ok=True)
    run_file = cat.root / RUNS / f"{first.run_id}.json"
    atomic_write_text(run_file, json.dumps({"run": run, "results": results}) + "\n")
    try:
        with cat.transaction() as con:
            _insert(con, run, results, verb="INSERT")
    except BaseException:
        run_file.unlink(missing_ok=True)  # a run that was not stored is not recovered later either
        raise


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
