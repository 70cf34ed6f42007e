"""`slimserve bench`: every selected variant x one target -> speed, quality, cost -> BenchRecords in the catalog.

Order of work: (1) speed, one variant loaded at a time so peak memory is that variant's; (2) quality, reference first
(its logits at the scored positions are kept) then each variant against it; (3) cost from the stored speed numbers;
(4) one transaction into the index plus JSON/Markdown reports. Ctrl-C before (4) stores nothing.
"""

from __future__ import annotations

import ctypes
import gc
import hashlib
import json as _json
import os
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError, flag
from .cost import DEFAULT_SLO_MS, cost_of, load_prices, resolve_price
from .fingerprint import fingerprint
from .gate_check import record_verdicts, refuse_calibration_overlap
from .profiles import DEFAULT_PROFILE, Profile, get_profile
from .progress import BenchProgress, plan
from .quality import QualityConfig, RefLogits, mc_suites, run_mc, run_perplexity
from .record import BenchRecord, QualityResult, SpeedResult
from .report import to_markdown, write_reports
from .rounds import RoundSamples, summarize
from .runner import reset_rss_peak
from .speed import SpeedConfig, prompt_batch, scenarios, text_token_ids
from .speed import measure_round as run_round
from .store import save_run, variant_build_id
from .targets import Target, get_target

CPU_DEQUANT_NOTE = (
    "the PyTorch target runs this compressed-tensors variant as dequantized fp32 weights (decompressed at load): "
    "torch's CPU weight-only int4/int8 kernels (_weight_int4pack_mm_for_cpu, _weight_int8pack_mm) measured slower "
    "than fp32 matmul for this model's shapes, so its speed here is fp32 speed; packed-weight speed is measured on "
    "the ONNX Runtime targets"
)


def _release_memory() -> None:
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


def _load_avg() -> str | None:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return None


def _busy_note(load_avg: str | None, cores: int) -> str | None:
    """A warning when the machine was already busy at the start: timings will be slow and noisy."""
    try:
        one_min = float((load_avg or "").split()[0])
    except (IndexError, ValueError):
        return None
    if one_min < cores:
        return None
    return (
        f"note: load average {one_min:.1f} on {cores} cores: other work shares the CPU, so this run is slower and its "
        "numbers noisier than on a quiet machine; compare runs only at similar load (--threads 1 often finishes "
        "sooner on a busy machine: threads that wait for each other lose most when cores are shared)"
    )


def _set_loop(tgt: Target, loop: str) -> None:
    from .torch_runner import LOOPS

    if not hasattr(tgt, "loop") or tgt.device not in ("cpu", "cuda"):
        raise UserError(
            (f"target '{tgt.name}' has one decode loop; ", flag("--loop"), " applies to the PyTorch targets"),
            field="--loop",
        )
    if loop not in LOOPS:
        raise UserError(f"unknown decode loop '{loop}'", field="--loop", allowed=LOOPS)
    tgt.loop = loop


def _select(cat: Any, variants: list[str] | None, tgt: Target, log: Callable[[str], None]) -> list[Any]:
    """Catalog rows to run; a named variant the target cannot run is an error, an implied one is skipped loudly."""
    if variants:
        rows = [cat.get(v) for v in variants]
        for r in rows:
            why = tgt.supports(r.manifest)
            if why:
                raise UserError(f"target '{tgt.name}' cannot run variant '{r.name}': {why}", field="--target")
        return rows
    rows = cat.variants()
    if not rows:
        raise UserError(f"catalog '{cat.root}' has no variants", hint="build some with `slimserve build RECIPE`")
    keep = []
    for r in rows:
        why = tgt.supports(r.manifest)
        if why:
            log(f"skip {r.name}: {why}")
        else:
            keep.append(r)
    if not keep:
        raise UserError(f"no variant in catalog '{cat.root}' runs on target '{tgt.name}'")
    return keep


def bench(
    variants: list[str] | None = None,
    *,
    target: str = "auto",
    catalog: str | Path | None = None,
    threads: int | None = None,
    hardware: str | None = None,
    price_per_hour: float | None = None,
    prices: str | Path | None = None,
    eval_text: str | Path | None = None,
    eval_mc: str | Path | None = None,
    limit: int | None = None,
    slo_ms: float = DEFAULT_SLO_MS,
    speed: bool = True,
    quality: bool = True,
    profile: str = DEFAULT_PROFILE,
    rounds: int | None = None,
    iters: int | None = None,
    min_seconds: float | None = None,
    new_tokens: int | None = None,
    batches: list[int] | None = None,
    prompt_lens: list[int] | None = None,
    loop: str | None = None,
    out: str | Path | None = None,
    json: bool = False,
    show: bool = True,
    command: str | None = None,
    log: Callable[[str], None] | None = None,
) -> list[BenchRecord]:
    """Benchmark catalog variants on one target; store the records in the catalog index and write reports.

    profile: "quick" (a few minutes) or "full" (the rigour of published tables, see profiles.py); rounds, iters,
    min_seconds, new_tokens, batches, prompt_lens and limit override the profile's values. Progress, with an ETA
    over the whole run, goes to stderr (a progress bar on a terminal; silent with json=True; to `log` if given);
    with show, the Markdown report (JSON records with json=True) is printed to stdout.

    >>> bench(["smollm2-int4-g128"], target="cpu", limit=4)
    """
    if target == "auto" or "," in target:
        return _bench_targets(variants, target, catalog, locals_of_bench(locals()))
    from ..catalog import Catalog
    from ..data import read_text

    live = log is None and not json and sys.stderr.isatty()
    if log is None:
        log = (lambda m: print(m, file=sys.stderr, flush=True)) if not json else (lambda m: None)
    if limit is not None and limit < 1:
        raise UserError(f"must be at least 1, got {limit}", field="--limit")
    if not speed and not quality:
        raise UserError("nothing to do: both speed and quality are turned off")
    tgt = get_target(target)
    if loop is not None:
        _set_loop(tgt, loop)
    why = tgt.available()
    if why:
        raise UserError(why if why.startswith(f"{target}:") else f"{target}: {why}", field="--target")

    # Everything that can be wrong with the input fails here, before minutes of measuring.
    table = load_prices(prices)
    hw_key, price, price_src = resolve_price(table, hardware, price_per_hour, gpu=tgt.device.startswith("cuda"))
    prof = get_profile(profile)
    given = dict(rounds=rounds, iters=iters, min_seconds=min_seconds, new_tokens=new_tokens, limit=limit)
    given.update(batches=tuple(batches) if batches else None, prompt_lens=tuple(prompt_lens) if prompt_lens else None)
    given = {k: v for k, v in given.items() if v is not None}
    scfg = _speed_config(prof, given)
    qcfg = QualityConfig(**{**prof.quality, **({"windows": limit, "mc_limit": limit} if limit else {})})
    cat = Catalog.open(catalog, create=False)
    rows = _select(cat, variants, tgt, log)
    text_src = str(eval_text) if eval_text else "Pride and Prejudice (guidellm)"
    text = read_text(eval_text)
    suites = mc_suites(qcfg, eval_mc) if quality else {}
    text_sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    _check_text_length(rows, text, text_src, scfg, qcfg, speed=speed, quality=quality, text_sha=text_sha)

    ref_rows = [v for v in cat.variants() if v.manifest.get("reference")]
    ref = ref_rows[0] if ref_rows else None
    if threads:
        torch.set_num_threads(int(threads))
    run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    fp = fingerprint(
        hardware_key=hw_key, device=tgt.device, threads=threads or torch.get_num_threads(), command=command
    )
    config = {
        "target": target,
        "profile": prof.name,
        "profile_overrides": [f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in given.items()],
        "speed": scfg.model_dump(),
        "quality": qcfg.model_dump(),
        "slo_ms": slo_ms,
        "price_per_hour": price,
        "price_source": price_src,
        "eval_text": text_src,
        "eval_mc": suites and {k: len(v[0]) for k, v in suites.items()},
        "load_avg": _load_avg(),
        "variants": [r.name for r in rows],
    }
    log(
        f"bench run {run_id}: {len(rows)} variant(s) on {target}, profile {prof.name}"
        f"{' (--full for published numbers)' if prof.name == 'quick' else ''}; load average {config['load_avg']}"
    )
    busy = _busy_note(config["load_avg"], os.cpu_count() or 1)
    if busy:
        log(busy)

    speeds: dict[str, SpeedResult] = {}
    notes: dict[str, list[str]] = {r.name: [] for r in rows}
    ids_cache: dict[str, torch.Tensor] = {}

    def tokens_for(runner: Any) -> torch.Tensor:
        key = type(runner.tokenizer).__name__ + str(getattr(runner.tokenizer, "name_or_path", ""))
        if key not in ids_cache:
            ids_cache[key] = text_token_ids(runner.tokenizer, text, max_chars=None)  # windows read its end
        return ids_cache[key]

    qualities: dict[str, QualityResult] = {}
    with _progress(rows, ref, scfg, qcfg, suites, speed=speed, quality=quality, log=log, live=live) as prog:
        log = prog.log
        if speed:
            speeds = _speed_phase(rows, tgt, threads, scfg, tokens_for, prog)
            for row in rows:
                for b, err in speeds[row.name].batch_errors.items():
                    log(f"{row.name}: batch {b} did not run: {err}")
                if tgt.device == "cpu" and row.manifest.get("format") == "compressed-tensors":
                    notes[row.name].append(CPU_DEQUANT_NOTE)
        if quality:
            qualities = _quality_phase(
                rows, ref, tgt, threads, text, text_src, qcfg, suites, tokens_for, notes, log, step=prog.step
            )
            _release_memory()
        prog.finish()

    records = []
    for row in rows:
        s, q = speeds.get(row.name), qualities.get(row.name)
        cost = None
        if s is not None:
            cost, note = cost_of(s, hardware_key=hw_key, price_per_hour=price, price_source=price_src, slo_ms=slo_ms)
            if note:
                notes[row.name].append(note)
        records.append(
            BenchRecord(
                variant=row.name,
                target=target,
                run_id=run_id,
                created=created,
                fingerprint=fp,
                speed=s,
                quality=q,
                cost=cost,
                notes=notes[row.name],
            )
        )
    _compare_to_reference(records, ref.name if ref else None)
    if quality:
        record_verdicts(records, {r.name: r.manifest for r in rows}, text_sha, log)

    save_run(cat, records, config=config, builds={r.name: variant_build_id(r.manifest) for r in rows})
    if quality:
        for r in records:
            cat.set_status(r.variant, r.gate["status"])
    out_dir = Path(out) if out else Path(cat.root) / "bench"
    js, md = write_reports(records, config, out_dir)
    log(f"stored run {run_id} in {cat.root / 'index.sqlite'}; reports {js} and {md}")
    if show and json:
        print(_json.dumps([r.to_dict() for r in records], indent=2, default=str))
    elif show:
        print(to_markdown(records, config))
    return records


def locals_of_bench(given: dict[str, Any]) -> dict[str, Any]:
    """bench()'s keyword arguments as given, for the per-target runs of target="auto" or "a,b"."""
    return {k: v for k, v in given.items() if k not in ("variants", "target", "catalog")}


def _bench_targets(variants, target: str, catalog, kwargs: dict[str, Any]) -> list[BenchRecord]:  # noqa: ANN001
    """One run per target: "auto" puts each variant on the first target that runs it here (cpu for PyTorch
    artifacts, onnx-cpu for ONNX graphs, neuron-static for static buckets); "cpu,onnx-cpu" runs each listed target
    on the variants it supports."""
    from ..catalog import Catalog
    from .gate_check import natural_target

    cat = Catalog.open(catalog, create=False)
    rows = [cat.get(v) for v in variants] if variants else cat.variants()
    if not rows:
        raise UserError(f"catalog '{cat.root}' has no variants", hint="build some with `slimserve build RECIPE`")
    groups: dict[str, list[str]] = {}
    if target == "auto":
        for r in rows:
            groups.setdefault(natural_target(r.manifest).name, []).append(r.name)
    else:
        for t in [x.strip() for x in target.split(",") if x.strip()]:
            tgt = get_target(t)
            groups[t] = [r.name for r in rows if tgt.supports(r.manifest) is None]
    live = {t: names for t, names in groups.items() if names}
    one = len(live) == 1
    records: list[BenchRecord] = []
    for t, names in live.items():
        records += bench(names, target=t, catalog=cat.root, **{**kwargs, "show": kwargs["show"] and one})
    if not one and records:
        _combined_report(cat, records, kwargs)
    return records


def _combined_report(cat, records: list[BenchRecord], kwargs: dict[str, Any]) -> None:  # noqa: ANN001
    """One report over the per-target runs (rows named variant@target), beside each run's own."""
    from .store import run_config

    config = {**run_config(cat, records[0].run_id), "runs": sorted({r.run_id for r in records})}
    out_dir = Path(kwargs["out"]) if kwargs.get("out") else Path(cat.root) / "bench"
    js, md = write_reports(records, config, out_dir, stem=f"combined-{records[0].run_id}")
    if not kwargs.get("json"):
        (kwargs.get("log") or (lambda m: print(m, file=sys.stderr, flush=True)))(f"combined report {md}")
    if kwargs["show"] and kwargs.get("json"):
        print(_json.dumps([r.to_dict() for r in records], indent=2, default=str))
    elif kwargs["show"]:
        print(to_markdown(records, config))


def _progress(rows, ref, scfg, qcfg, suites, *, speed, quality, log, live) -> BenchProgress:  # noqa: ANN001
    """The run's plan (speed rounds x variants, then the quality passes, reference first) and its display."""
    passes = ([ref.name] if ref else []) + [r.name for r in rows if ref is None or r.name != ref.name]
    steps = plan([r.name for r in rows] if speed else [], scfg.rounds, scenarios(scfg), passes if quality else [])
    mc_tokens = 40 * sum(len(it.choices) for items, _ in suites.values() for it in items)  # rough; replaced once timed
    return BenchProgress(steps, log=log, live=live, quality_tokens=qcfg.windows * qcfg.ctx + mc_tokens)


_FLAGS = {"min_iters": "--iters", "min_seconds": "--min-seconds"}


def _speed_config(profile: Profile, given: dict[str, Any]) -> SpeedConfig:
    """The profile's SpeedConfig with the settings given explicitly (bench() keywords) on top; a bad value names
    its flag."""
    from pydantic import ValidationError

    fields = {("min_iters" if k == "iters" else k): v for k, v in given.items() if k != "limit"}
    try:
        return SpeedConfig(**{**profile.speed, **fields})
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0])
        flag = _FLAGS.get(name, "--" + name.replace("_", "-"))
        raise UserError(f"{err['msg'].lower()}, got {err.get('input')!r}", field=flag) from None


def _speed_phase(rows, tgt, threads, scfg, tokens_for, progress: BenchProgress):  # noqa: ANN001, ANN202
    """scfg.rounds rounds; each round loads every variant afresh in turn (A B A B ...), so drift of a shared
    machine hits all variants alike and lands in the spread. One variant is in memory at a time."""
    samples: dict[str, list[RoundSamples]] = {r.name: [] for r in rows}
    failed: dict[str, dict[int, str]] = {r.name: {} for r in rows}
    loops: dict[str, str] = {}
    log = progress.log
    for k in range(scfg.rounds):
        for i, row in enumerate(rows, 1):
            progress.step(f"[round {k + 1}/{scfg.rounds}] [{i}/{len(rows)}] {row.name}: speed")
            _release_memory()
            _reset_peak(tgt.device)
            t0 = time.perf_counter()
            runner = tgt.load(row.path, row.manifest, threads)
            load_s = time.perf_counter() - t0
            progress.tick("load")
            try:
                ids = tokens_for(runner)
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
    return {r.name: summarize(samples[r.name], loop=loops[r.name], size_mb=_size_mb(r)) for r in rows}


def _check_text_length(
    rows: list[Any], text: str, source: str, scfg: SpeedConfig, qcfg: QualityConfig, *, speed: bool, quality: bool,
    text_sha: str,
) -> None:  # fmt: skip
    """Fail before measuring when the eval text cannot fill the prompts or one perplexity window, or when the
    perplexity windows would read text a variant was calibrated on."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(rows[0].path)
    except (OSError, ValueError):  # no tokenizer files in this artifact: the checks run later, after loading
        return
    ids = text_token_ids(tok, text, max_chars=None if quality else 8 * (max(scfg.prompt_lens) + 16))
    if quality:
        refuse_calibration_overlap(rows, ids.numel(), text_sha, qcfg, source)
    if speed:
        for n in (*scfg.prompt_lens, scfg.batch_prompt_len):
            prompt_batch(ids, n, max(scfg.batches) if n == scfg.batch_prompt_len else 1, source=source)


def _quality_phase(rows, ref, tgt, threads, text, text_src, qcfg, suites, tokens_for, notes, log, step=None):  # noqa: ANN001, ANN202
    """Reference first (kept logits), then every other variant scored against it. step(msg) announces each pass
    (the progress display counts them); default: log."""
    step = step or log
    out: dict[str, QualityResult] = {}
    ref_logits: RefLogits | None = None
    ref_ppl: float | None = None
    if ref is None:
        for r in rows:
            notes[r.name].append("the catalog has no reference variant: KLD and top-1 agreement not measured")
    else:
        ref_tgt = tgt if tgt.supports(ref.manifest) is None else get_target("cpu")
        if ref_tgt is not tgt:
            for r in rows:
                notes[r.name].append(
                    f"KLD and top-1 are against {ref.name} run on 'cpu': target '{tgt.name}' cannot run the"
                    f" reference's {ref.manifest.get('format', 'hf')!r} artifact (expected for a PyTorch reference)"
                )
        step(f"quality: reference {ref.name}")
        runner = ref_tgt.load(ref.path, ref.manifest, threads)
        try:
            q, ref_logits = run_perplexity(runner, tokens_for(runner), qcfg, source=text_src, ref=None, keep=True)
            ref_ppl = q.ppl
            if any(r.name == ref.name for r in rows):
                # the reference against itself: KL(p || p) = 0 and every argmax agrees, by definition
                q.ref_ppl, q.ppl_delta, q.kld, q.kld_p99, q.top1 = q.ppl, 0.0, 0.0, 0.0, 1.0
                run_mc(runner, suites, q)
                out[ref.name] = q
        finally:
            runner.close()
    for row in (r for r in rows if ref is None or r.name != ref.name):
        step(f"quality: {row.name}")
        _release_memory()
        runner = tgt.load(row.path, row.manifest, threads)
        try:
            q, _ = run_perplexity(runner, tokens_for(runner), qcfg, source=text_src, ref=ref_logits, keep=False)
            if ref_ppl is not None:
                q.ref_ppl, q.ppl_delta = ref_ppl, q.ppl / ref_ppl - 1.0
            run_mc(runner, suites, q)
            out[row.name] = q
        finally:
            runner.close()
    return out


def _compare_to_reference(records: list[BenchRecord], ref_name: str | None) -> None:
    """Add a note where a variant's output tokens cost more than the reference's on the same target and run."""
    ref = next((r for r in records if r.variant == ref_name and r.cost), None)
    if ref is None:
        return
    for r in records:
        if r is ref or r.cost is None:
            continue
        ratio = r.cost.usd_per_1m_output / ref.cost.usd_per_1m_output
        if ratio >= 1.0:
            r.notes.append(
                f"output tokens cost {ratio:.2f}x the reference's on {r.target} "
                f"(${r.cost.usd_per_1m_output:.4f} vs ${ref.cost.usd_per_1m_output:.4f} per 1M; "
                f"{r.cost.output_tok_s:.2f} vs {ref.cost.output_tok_s:.2f} tok/s at batch {r.cost.batch}/{ref.cost.batch})"
            )
