"""Rebuild BenchRecords from their to_dict()/JSON form (JSON turns int dict keys into strings; this undoes it)."""

from __future__ import annotations

import json
from typing import Any

from .record import (
    RECORD_VERSION,
    BenchRecord,
    CostResult,
    Fingerprint,
    LatencyStats,
    QualityResult,
    SpeedResult,
)


def _stats(d: dict[str, Any] | None) -> LatencyStats | None:
    return None if d is None else LatencyStats(**d)


def _int_keys(d: dict[Any, Any] | None, conv=lambda v: v) -> dict[int, Any]:  # noqa: ANN001
    return {int(k): conv(v) for k, v in (d or {}).items()}


def speed_from_dict(d: dict[str, Any] | None) -> SpeedResult | None:
    if d is None:
        return None
    return SpeedResult(
        loop=d["loop"],
        load_s=d.get("load_s"),
        ttft_s=_stats(d.get("ttft_s")),
        prefill_tok_s=_int_keys(d.get("prefill_tok_s"), _stats),
        decode_tok_s=_stats(d.get("decode_tok_s")),
        itl_ms=_stats(d.get("itl_ms")),
        batch_tok_s=_int_keys(d.get("batch_tok_s"), float),
        batch_itl_p99_ms=_int_keys(d.get("batch_itl_p99_ms"), float),
        batch_errors=_int_keys(d.get("batch_errors"), str),
        peak_mem_mb=d.get("peak_mem_mb"),
        size_mb=d.get("size_mb"),
        rounds=int(d.get("rounds", 1)),
        round_p50={str(k): [float(x) for x in v] for k, v in (d.get("round_p50") or {}).items()},
    )


def quality_from_dict(d: dict[str, Any] | None) -> QualityResult | None:
    return (
        None
        if d is None
        else QualityResult(
            **{**d, "mc_accuracy": dict(d.get("mc_accuracy") or {}), "mc_counts": dict(d.get("mc_counts") or {})}
        )
    )


def record_from_dict(d: dict[str, Any]) -> BenchRecord:
    """Inverse of BenchRecord.to_dict(); ValueError for a record written by a newer format version."""
    version = int(d.get("version", RECORD_VERSION))
    if version > RECORD_VERSION:
        raise ValueError(f"bench record version {version} is newer than this slimserve understands ({RECORD_VERSION})")
    return BenchRecord(
        variant=d["variant"],
        target=d["target"],
        run_id=d["run_id"],
        created=d["created"],
        fingerprint=Fingerprint(**d["fingerprint"]),
        speed=speed_from_dict(d.get("speed")),
        quality=quality_from_dict(d.get("quality")),
        cost=None if d.get("cost") is None else CostResult(**d["cost"]),
        notes=list(d.get("notes") or []),
        gate=d.get("gate"),
        version=version,
    )


def record_to_json(rec: BenchRecord) -> str:
    return json.dumps(rec.to_dict(), sort_keys=True)


def record_from_json(text: str) -> BenchRecord:
    return record_from_dict(json.loads(text))
