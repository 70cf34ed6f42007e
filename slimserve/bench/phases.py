"""The two measuring phases of a bench run, on a resolved BenchPlan: speed (rounds interleaved across variants) and
quality (the reference first, its logits kept, then every variant against it).

api.prepare() builds the plan (every input checked); api.run() calls the phases and stores what they return. A Ray
task (ray_exec.py) runs the same phases on a plan of one variant.
"""

from __future__ import annotations

import ctypes
import gc
import os
import secrets
import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from .config import BenchConfig
from .progress import BenchProgress, plan
from .quality import QualityConfig, RefLogits, run_mc, run_perplexity
from .record import Fingerprint, QualityResult, SpeedResult
from .rounds import RoundSamples, summarize
from .runner import reset_rss_peak
from .speed import SpeedConfig, scenarios, text_token_ids
from .speed import measure_round as run_round
from .targets import Target, get_target

CPU_DEQUANT_NOTE = (
    "the PyTorch target runs this compressed-tensors variant as dequantized fp32 weights (decompressed at load): "
    "torch's CPU weight-only int4/int8 kernels (_weight_int4pack_mm_for_cpu, _weight_int8pack_mm) measured slower "
    "than fp32 matmul for this model's shapes, so its speed here is fp32 speed; packed-weight speed is measured on "
    "the ONNX Runtime targets"
)


@dataclass
class BenchPlan:
    """One target's run, resolved and checked: what to load, how much to measure, how to price and record it."""

    cfg: BenchConfig
    tgt: Target
    scfg: SpeedConfig
    qcfg: QualityConfig
    root: Path  # the catalog
    rows: list[Any]  # catalog VariantRows to run
    ref: Any | None  # the catalog's reference VariantRow
    text: str
    text_src: str
    text_sha: str
    suites: dict[str, Any]
    price: tuple[str, float, str]  # hardware key, $/hour, where the price comes from
    fingerprint: Fingerprint
    config: dict[str, Any]  # the run config as stored and printed
    notes: dict[str, list[str]] = field(default_factory=dict)
    fingerprints: dict[str, Fingerprint] = field(default_factory=dict)  # per variant, where a Ray node measured it
    run_id: str = ""
    created: str = ""
    _ids: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def stamp(self) -> None:
        """Name the run and note the machine's load when it starts (plans of later targets wait their turn)."""
        now = datetime.now(timezone.utc)
        self.run_id = now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)
        self.created = now.isoformat(timespec="seconds")
        self.config["load_avg"] = load_avg()

    def tokens_for(self, runner: Any) -> torch.Tensor:
        """The eval text's token ids for this runner's tokenizer (once per tokenizer; windows read its end)."""
        key = type(runner.tokenizer).__name__ + str(getattr(runner.tokenizer, "name_or_path", ""))
        if key not in self._ids:
            self._ids[key] = text_token_ids(runner.tokenizer, self.text, max_chars=None)
        return self._ids[key]


def load_avg() -> str | None:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return None


def release_memory() -> None:
    """Give freed model memory back to the OS so the next variant's peak RSS starts from the baseline."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak(device: str) -> None:
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    else:
        reset_rss_peak()


def _size_mb(row: Any) -> float | None:
    size = row.manifest.get("size_bytes") or row.size_bytes
    if not size:
        size = sum(p.stat().st_size for p in Path(row.path).rglob("*") if p.is_file())
    return size / 2**20 if size else None


def progress_of(p: BenchPlan, *, log: Callable[[str], None], live: bool) -> BenchProgress:
    """The run's plan (speed rounds x variants, then the quality passes, reference first) and its display."""
    rows, ref, scfg, qcfg, suites = p.rows, p.ref, p.scfg, p.qcfg, p.suites
    passes = ([ref.name] if ref else []) + [r.name for r in rows if ref is None or r.name != ref.name]
    steps = plan([r.name for r in rows] if p.cfg.speed else [], scfg.rounds, scenarios(scfg),
                 passes if p.cfg.quality else [])  # fmt: skip
    mc_tokens = 40 * sum(len(it.choices) for items, _ in suites.values() for it in items)  # rough; replaced once timed
    return BenchProgress(steps, log=log, live=live, quality_tokens=qcfg.windows * qcfg.ctx + mc_tokens)


def measure(p: BenchPlan, progress: BenchProgress) -> tuple[dict[str, SpeedResult], dict[str, QualityResult]]:
    """Both phases, as the config asks."""
    speeds = speed_phase(p, progress) if p.cfg.speed else {}
    qualities = quality_phase(p, progress) if p.cfg.quality else {}
    progress.finish()
    return speeds, qualities


def measure_task(p: BenchPlan) -> dict[str, Any]:
    """One variant's measurements in a Ray worker (a plan of one row): the target is checked where it runs, and
    the fingerprint is this node's. Prints progress lines (Ray forwards them to the driver)."""
    from .fingerprint import fingerprint

    why = p.tgt.available()
    host = socket.gethostname()
    if why:
        raise UserError(f"on Ray node {host}: {why}", field="--target")
    if p.cfg.threads:
        torch.set_num_threads(p.cfg.threads)
    speeds, qualities = measure(p, progress_of(p, log=print, live=False))
    (row,) = p.rows
    p.notes[row.name].append(
        f"measured in its own Ray task on node {host}: rounds are not interleaved with other variants"
    )
    fp = fingerprint(hardware_key=p.price[0], device=p.tgt.device, threads=p.cfg.threads or torch.get_num_threads(),
                     command=p.fingerprint.command)  # fmt: skip
    return {"speed": speeds, "quality": qualities, "notes": p.notes, "fingerprint": fp, "host": host}


def speed_phase(p: BenchPlan, progress: BenchProgress) -> dict[str, SpeedResult]:
    """scfg.rounds rounds; each round loads every variant afresh in turn (A B A B ...), so drift of a shared
    machine hits all variants alike and lands in the spread. One variant is in memory at a time."""
    rows, tgt, scfg, threads = p.rows, p.tgt, p.scfg, p.cfg.threads
    samples: dict[str, list[RoundSamples]] = {r.name: [] for r in rows}
    failed: dict[str, dict[int, str]] = {r.name: {} for r in rows}
    loops: dict[str, str] = {}
    log = progress.log
    for k in range(scfg.rounds):
        for i, row in enumerate(rows, 1):
            progress.step(f"[round {k + 1}/{scfg.rounds}] [{i}/{len(rows)}] {row.name}: speed")
            release_memory()
            _reset_peak(tgt.device)
            t0 = time.perf_counter()
            runner = tgt.load(row.path, row.manifest, threads)
            load_s = time.perf_counter() - t0
            progress.tick("load")
            try:
                ids = p.tokens_for(runner)
                rs = run_round(
                    runner, ids, scfg, load_s=load_s, skip_batches=failed[row.name], log=log, tick=progress.tick
                )
                rs.peak_mem_mb = runner.peak_memory_mb()
                loops[row.name] = runner.loop
            finally:
                runner.close()
                del runner
            failed[row.name].update(rs.batch_errors)
            samples[row.name].append(rs)
            log(f"  load {load_s:.1f} s, peak {rs.peak_mem_mb or 0:.0f} MB")
            progress.prefill_speed(max((statistics.median(v) for v in rs.prefill_tok_s.values() if v), default=0.0))
    out = {r.name: summarize(samples[r.name], loop=loops[r.name], size_mb=_size_mb(r)) for r in rows}
    for row in rows:
        for b, err in out[row.name].batch_errors.items():
            log(f"{row.name}: batch {b} did not run: {err}")
        if tgt.device == "cpu" and row.manifest.get("format") == "compressed-tensors":
            p.notes[row.name].append(CPU_DEQUANT_NOTE)
    return out


def quality_phase(p: BenchPlan, progress: BenchProgress) -> dict[str, QualityResult]:
    """Reference first (kept logits), then every other variant scored against it; each pass is a progress step."""
    rows, ref, tgt, threads, qcfg = p.rows, p.ref, p.tgt, p.cfg.threads, p.qcfg
    step = progress.step
    out: dict[str, QualityResult] = {}
    ref_logits: RefLogits | None = None
    ref_ppl: float | None = None
    if ref is None:
        for r in rows:
            p.notes[r.name].append("the catalog has no reference variant: KLD and top-1 agreement not measured")
    else:
        ref_tgt = tgt if tgt.supports(ref.manifest) is None else get_target("cpu")
        if ref_tgt is not tgt:
            for r in rows:
                p.notes[r.name].append(
                    f"KLD and top-1 are against {ref.name} run on 'cpu': target '{tgt.name}' cannot run the"
                    f" reference's {ref.manifest.get('format', 'hf')!r} artifact (expected for a PyTorch reference)"
                )
        step(f"quality: reference {ref.name}")
        runner = ref_tgt.load(ref.path, ref.manifest, threads)
        try:
            q, ref_logits = run_perplexity(runner, p.tokens_for(runner), qcfg, source=p.text_src, ref=None, keep=True)
            ref_ppl = q.ppl
            if any(r.name == ref.name for r in rows):
                # the reference against itself: KL(p || p) = 0 and every argmax agrees, by definition
                q.ref_ppl, q.ppl_delta, q.kld, q.kld_p99, q.top1 = q.ppl, 0.0, 0.0, 0.0, 1.0
                run_mc(runner, p.suites, q)
                out[ref.name] = q
        finally:
            runner.close()
    for row in (r for r in rows if ref is None or r.name != ref.name):
        step(f"quality: {row.name}")
        release_memory()
        runner = tgt.load(row.path, row.manifest, threads)
        try:
            q, _ = run_perplexity(runner, p.tokens_for(runner), qcfg, source=p.text_src, ref=ref_logits, keep=False)
            if ref_ppl is not None:
                q.ref_ppl, q.ppl_delta = ref_ppl, q.ppl / ref_ppl - 1.0
            run_mc(runner, p.suites, q)
            out[row.name] = q
        finally:
            runner.close()
    release_memory()
    return out
