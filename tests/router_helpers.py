"""Hand-made catalogs and benchmark records for the router tests (no model is built or run)."""

from __future__ import annotations

import json
from pathlib import Path

from slimserve.bench.record import BenchRecord, CostResult, Fingerprint, LatencyStats, QualityResult, SpeedResult
from slimserve.catalog import Catalog


def manifest(name: str, tier: str, *, reference: bool = False, bits: float = 16.0, method: str = "rtn") -> dict:
    steps = (
        []
        if reference
        else [{"kind": "quantize", "method": method, "settings": {"bits": int(bits), "group_size": 128}}]
    )
    return {
        "name": name,
        "tier": tier,
        "reference": reference,
        "format": "hf" if reference else "compressed-tensors",
        "steps": steps,
        "skipped_layers": [],
        "params": 1000,
        "bits_per_weight": bits,
        "size_bytes": int(1000 * bits / 8),
        "files": {},
        "base": {"source": "tiny/llama", "source_hash": "abc", "config": {"max_position_embeddings": 2048}},
        "recipe": {"name": "test", "file": "test.yaml", "hash": "h"},
        "versions": {},
        "built_at": "2026-11-30T00:00:00+00:00",
    }


def make_catalog(root: Path, manifests: list[dict]) -> Catalog:
    root.mkdir(parents=True, exist_ok=True)
    for m in manifests:
        d = root / m["name"]
        d.mkdir()
        (d / "manifest.json").write_text(json.dumps(m))
    return Catalog.open(root)


def _stats(v: float) -> LatencyStats:
    return LatencyStats(count=5, mean=v, stdev=0.0, p50=v, p90=v * 1.1, p99=v * 1.2, min=v * 0.9, max=v * 1.3)


def record(
    variant: str,
    target: str = "cpu",
    *,
    usd_in: float | None,
    usd_out: float | None = None,
    top1: float | None = None,
    kld: float | None = None,
    ppl_delta: float | None = None,
    mc: dict[str, float] | None = None,
    itl_ms: float = 20.0,
    run: str = "1",
    created: str = "2026-11-30T01:00:00+00:00",
) -> BenchRecord:
    fp = Fingerprint(
        hardware_key="local-cpu",
        cpu_model="Test CPU",
        cpu_flags=["avx2"],
        cores=2,
        threads=2,
        gpu_name=None,
        gpu_memory_gb=None,
        versions={"torch": "2.13.0"},
        command=f"slimserve bench {variant} --target {target}",
        hostname_hash="h0",
    )
    cost = None
    if usd_in is not None:
        cost = CostResult(
            hardware_key="local-cpu",
            price_per_hour=0.17,
            price_source="test table 2026-11-01",
            usd_per_1m_input=usd_in,
            usd_per_1m_output=usd_out if usd_out is not None else usd_in * 4,
            batch=4,
            slo_ms=200.0,
            input_tok_s=1000.0,
            output_tok_s=100.0,
        )
    q = QualityResult(eval_text="test", tokens=100, top1=top1, kld=kld, ppl_delta=ppl_delta, mc_accuracy=mc or {})
    speed = SpeedResult(loop="torch-lean-kv", ttft_s=_stats(0.05), itl_ms=_stats(itl_ms), decode_tok_s=_stats(50.0))
    return BenchRecord(
        variant=variant,
        target=target,
        run_id=f"run{run}-{variant}-{target}",
        created=created,
        fingerprint=fp,
        speed=speed,
        quality=q,
        cost=cost,
    )


def use_records(cat: Catalog, records: list[BenchRecord]) -> None:
    """Store these records through the benchmark store, one run each, as `slimserve bench` would."""
    from slimserve.bench.store import save_run, variant_build_id

    manifests = {v.name: v.manifest for v in cat.variants()}
    for r in records:
        builds = {r.variant: variant_build_id(manifests[r.variant])} if r.variant in manifests else {}
        save_run(cat, [r], config={"test": True}, builds=builds)


def standard(tmp_path: Path, *, external: bool = True) -> Catalog:
    """A reference, int8, two int4 variants (one dominated), one unbenchmarked variant, and gpt-4o."""
    cat = make_catalog(
        tmp_path / "catalog",
        [
            manifest("ref", "base", reference=True, bits=32),
            manifest("int8", "small", bits=8),
            manifest("int4-g128", "nano", bits=4.25),
            manifest("int4-bad", "nano", bits=4.25, method="hqq"),
            manifest("pruned", "nano", bits=16),
        ],
    )
    use_records(
        cat,
        [
            record("ref", usd_in=0.40, usd_out=1.60, kld=None, ppl_delta=None, mc={"arc_easy": 0.45}, itl_ms=40),
            record("int8", usd_in=0.21, usd_out=0.83, top1=0.985, kld=0.01, ppl_delta=0.004, mc={"arc_easy": 0.44}),
            record("int4-g128", usd_in=0.12, usd_out=0.47, top1=0.93, kld=0.08, ppl_delta=0.05, itl_ms=12),
            # costs more and agrees less than int4-g128: dominated
            record("int4-bad", usd_in=0.13, usd_out=0.52, top1=0.90, kld=0.12, ppl_delta=0.09, itl_ms=13),
        ],
    )
    if external:
        from slimserve.router import add_external

        add_external(
            "gpt-4o",
            input_per_1m=2.50,
            output_per_1m=10.00,
            quality={"mc:arc_easy": 0.96},
            source="https://openai.com/api/pricing",
            date="2026-11-01",
            model="openai/gpt-4o",
            context_length=128000,
            catalog=cat,
        )
    return cat
