"""A synthetic catalog shaped like the shipped demo (no model is built or run), with gate verdicts on its records.

fp32 is measured cheaper than int8 (on the PyTorch cpu target their speeds are noise), so fp32 is on the front and
int8 is dominated; int4-g128 fails its gates; the ONNX int4 target is cheap but below every floor.
"""

from __future__ import annotations

from pathlib import Path

from slimserve.bench.record import QualityResult
from slimserve.catalog import Catalog
from slimserve.gates import evaluate

from .router_helpers import make_catalog, manifest, record, use_records

INT4_GATES = {"max_kld": 0.08, "min_top1": 0.83}


def verdict(gates: dict | None, rec, *, reference: bool = False) -> dict:
    """The gate dict `slimserve bench` stores with a record: the gates evaluated on that record's quality."""
    return evaluate(gates, rec.quality, reference=reference, target=rec.target, run_id=rec.run_id).to_dict()


def gated(rec, gates: dict | None, *, reference: bool = False):
    rec.gate = verdict(gates, rec, reference=reference)
    return rec


def demo(tmp_path: Path, *, gates: bool = True) -> Catalog:
    """smollm2-fp32 (reference), -int8 (passes), -int4-g128 (rejected), -onnx-int4-b32 (passes, top1 0.652)."""
    cat = make_catalog(
        tmp_path / "demo",
        [
            manifest("smollm2-fp32", "reference", reference=True, bits=32),
            manifest("smollm2-int8", "small", bits=8),
            manifest("smollm2-int4-g128", "nano", bits=4.25),
            manifest("smollm2-onnx-int4-b32", "nano", bits=4.25, method="onnx"),
        ],
    )
    recs = [
        (record("smollm2-fp32", usd_in=0.048, usd_out=1.50, top1=1.0, kld=0.0, ppl_delta=0.0), None, True),
        (record("smollm2-int8", usd_in=0.050, usd_out=1.55, top1=0.969, kld=0.0025, ppl_delta=0.002), {"max_kld": 0.01}, False),
        (record("smollm2-int4-g128", usd_in=0.053, usd_out=1.62, top1=0.685, kld=0.302, ppl_delta=0.27), INT4_GATES, False),
        (record("smollm2-onnx-int4-b32", "onnx-cpu", usd_in=0.042, usd_out=0.089, top1=0.652, kld=0.333, ppl_delta=0.30,
                itl_ms=12), {"max_kld": 0.35}, False),
    ]  # fmt: skip
    use_records(cat, [gated(r, g, reference=ref) if gates else r for r, g, ref in recs])
    return cat


def quality(top1: float, kld: float) -> QualityResult:
    return QualityResult(eval_text="test", tokens=100, top1=top1, kld=kld)
