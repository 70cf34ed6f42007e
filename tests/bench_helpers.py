"""Tiny catalogs for the benchmark tests: a random tiny Llama as reference plus perturbed copies, offline, seconds."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch

from slimserve.bench.record import (
    BenchRecord,
    CostResult,
    Fingerprint,
    LatencyStats,
    QualityResult,
    SpeedResult,
)


def write_manifest(path: Path, name: str, *, reference: bool, fmt: str = "hf") -> dict:
    files = {
        p.name: {"bytes": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
        for p in sorted(path.iterdir())
        if p.is_file() and p.name != "manifest.json"
    }
    manifest = {
        "name": name,
        "tier": "reference" if reference else "small",
        "reference": reference,
        "format": fmt,
        "steps": [],
        "skipped_layers": [],
        "params": None,
        "bits_per_weight": 32.0,
        "size_bytes": sum(f["bytes"] for f in files.values()),
        "files": files,
        "base": {"source": "tiny", "source_hash": "0", "config": {}},
        "recipe": {"name": "t", "file": "t", "hash": "0"},
        "versions": {},
        "built_at": "2026-01-01T00:00:00Z",
        "method": "test",
    }
    (path / "manifest.json").write_text(json.dumps(manifest))
    return manifest


def make_catalog(root: Path, base: Path, noise: dict[str, float] | None = None) -> Path:
    """Catalog with 'tiny-fp32' (reference, a copy of base) and one variant per noise entry (weights + N(0, std))."""
    from transformers import AutoModelForCausalLM

    root.mkdir(parents=True, exist_ok=True)
    ref = root / "tiny-fp32"
    shutil.copytree(base, ref)
    write_manifest(ref, "tiny-fp32", reference=True)
    for name, std in (noise or {}).items():
        out = root / name
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g) * std)
        model.save_pretrained(out, safe_serialization=True)
        for f in base.iterdir():
            if f.name.startswith(("tokenizer", "special_tokens")):
                shutil.copy(f, out / f.name)
        write_manifest(out, name, reference=False)
    return root


def long_text(words: int = 6000) -> str:
    """Real-ish English (repeated and shuffled deterministically) long enough for windows and prompts."""
    from slimserve.testing import FALLBACK_TEXT

    sents = [s.strip() + "." for s in FALLBACK_TEXT.split(".") if s.strip()]
    out, i = [], 0
    while sum(len(s.split()) for s in out) < words:
        out.append(sents[(i * 7) % len(sents)])
        i += 1
    return " ".join(out)


def fake_record(
    variant: str,
    *,
    run_id: str = "r1",
    created: str = "2026-01-01T00:00:00+00:00",
    tok_s: float = 10.0,
    target: str = "cpu",
) -> BenchRecord:
    st = LatencyStats(count=3, mean=tok_s, stdev=0.1, p50=tok_s, p90=tok_s, p99=tok_s, min=tok_s, max=tok_s)
    fp = Fingerprint(
        hardware_key="local-cpu",
        cpu_model="x",
        cpu_flags=["avx2"],
        cores=2,
        threads=2,
        gpu_name=None,
        gpu_memory_gb=None,
        versions={"torch": "2"},
        command="slimserve bench",
        hostname_hash="abc",
    )
    speed = SpeedResult(
        loop="torch-static-kv",
        load_s=0.1,
        ttft_s=st,
        prefill_tok_s={128: st, 512: st},
        decode_tok_s=st,
        itl_ms=st,
        batch_tok_s={1: tok_s, 4: 3 * tok_s},
        batch_itl_p99_ms={1: 50.0, 4: 80.0},
        batch_errors={16: "out of memory"},
        peak_mem_mb=100.0,
        size_mb=1.0,
    )
    q = QualityResult(
        eval_text="t",
        tokens=10,
        ppl=12.0,
        ref_ppl=11.0,
        ppl_delta=12 / 11 - 1,
        kld=0.01,
        kld_p99=0.1,
        top1=0.9,
        mc_accuracy={"arc_easy": 0.5},
        mc_counts={"arc_easy": 4},
    )
    c = CostResult(
        hardware_key="local-cpu",
        price_per_hour=0.1,
        price_source="t",
        usd_per_1m_input=1.0,
        usd_per_1m_output=2.0,
        batch=4,
        slo_ms=100.0,
        input_tok_s=tok_s,
        output_tok_s=3 * tok_s,
    )
    return BenchRecord(
        variant=variant, target=target, run_id=run_id, created=created, fingerprint=fp, speed=speed, quality=q, cost=c
    )
