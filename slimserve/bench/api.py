"""`slimserve bench`: every selected variant x one target -> speed, quality, cost -> BenchRecords in the catalog.

Order of work: (1) speed, one variant loaded at a time so peak memory is that variant's; (2) quality, reference first
(its logits at the scored positions are kept) then each variant against it; (3) cost from the stored speed numbers;
(4) one transaction into the index plus JSON/Markdown reports. Ctrl-C before (4) stores nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json as _json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError, flag
from .config import BenchConfig
from .cost import cost_of, load_prices, resolve_price
from .fingerprint import fingerprint
from .gate_check import record_verdicts, refuse_calibration_overlap
from .phases import BenchPlan, measure, measure_task, progress_of
from .profiles import Profile, get_profile
from .quality import QualityConfig, mc_suites
from .record import BenchRecord, QualityResult, SpeedResult
from .report import to_markdown, write_reports
from .speed import SpeedConfig, prompt_batch, text_token_ids
from .store import save_run, variant_build_id
from .targets import Target, get_target


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
    config: BenchConfig | None = None,
    show: bool = True,
    command: str | None = None,
    log: Callable[[str], None] | None = None,
    **settings: Any,
) -> list[BenchRecord]:
    """Benchmark catalog variants on one target; store the records in the catalog index and write reports.

    settings are BenchConfig's fields (the `slimserve bench` flags: target, catalog, threads, limit, profile,
    rounds, ...), or pass a ready `config`. Progress, with an ETA over the whole run, goes to stderr (a progress bar
    on a terminal; silent with json=True; to `log` if given); with show, the Markdown report (JSON records with
    json=True) is printed to stdout.

    >>> bench(["smollm2-int4-g128"], target="cpu", limit=4)
    """
    if config is None:
        config = BenchConfig.of(variants=variants, **settings)
    elif variants is not None or settings:
        raise UserError("give either config= or the settings as keywords, not both")
    return run(config, show=show, command=command, log=log)


def run(
    cfg: BenchConfig, *, show: bool = True, command: str | None = None, log: Callable[[str], None] | None = None
) -> list[BenchRecord]:
    """One bench run (optimum-benchmark's run(BenchmarkConfig)): every target's plan is prepared (all input checked)
    before any measuring, then each target runs speed -> quality -> records -> store."""
    live = log is None and not cfg.json_output and sys.stderr.isatty()
    if log is None:
        log = (lambda m: print(m, file=sys.stderr, flush=True)) if not cfg.json_output else (lambda m: None)
    plans = [p for c in per_target(cfg) for p in prepare(c, log, command)]
    records: list[BenchRecord] = []
    for p in plans:
        records += _execute(p, show=show and len(plans) == 1, log=log, live=live)
    if len(plans) > 1 and records:
        _combined_report(records, cfg, Path(plans[0].cfg.catalog), show=show, log=log)
    return records


def _execute(p: BenchPlan, *, show: bool, log: Callable[[str], None], live: bool) -> list[BenchRecord]:
    cfg = p.cfg
    p.stamp()
    log(
        f"bench run {p.run_id}: {len(p.rows)} variant(s) on {cfg.target}, profile {cfg.profile}"
        f"{' (--full for published numbers)' if cfg.profile == 'quick' else ''}; load average {p.config['load_avg']}"
    )
    busy = _busy_note(p.config["load_avg"], os.cpu_count() or 1)
    if busy:
        log(busy)
    if cfg.ray:
        speeds, qualities = _measure_on_ray(p, log)
    else:
        with progress_of(p, log=log, live=live) as prog:
            log = prog.log
            speeds, qualities = measure(p, prog)
    records = make_records(p, speeds, qualities, log)
    store(p, records, log)
    if show and cfg.json_output:
        print(_json.dumps([r.to_dict() for r in records], indent=2, default=str))
    elif show:
        print(to_markdown(records, p.config))
    return records


def base_key(row: Any) -> str | None:
    """What identifies a variant's base model: its source hash (variants of one base share a reference)."""
    return (row.manifest.get("base") or {}).get("source_hash")


def prepare(cfg: BenchConfig, log: Callable[[str], None], command: str | None = None) -> list[BenchPlan]:
    """Resolve and check everything a run needs (target, prices, profile, catalog rows, eval text) before any
    measuring: whatever can be wrong with the input fails here, not after minutes of work. One plan per base model
    among the variants: each is scored against its own base's reference (a catalog may hold several bases)."""
    from ..catalog import Catalog
    from ..data import read_text

    tgt = get_target(cfg.target)
    if cfg.loop is not None:
        _set_loop(tgt, cfg.loop)
    if cfg.ray:  # the target must run on some node, not here: check the cluster has the resources it needs
        _ray_executor(cfg).check_feasible(_ray_job(cfg, tgt))
    elif why := tgt.available():
        raise UserError(why if why.startswith(f"{cfg.target}:") else f"{cfg.target}: {why}", field="--target")
    table = load_prices(cfg.prices)
    price = resolve_price(table, cfg.hardware, cfg.price_per_hour, gpu=tgt.device.startswith("cuda"))
    prof = get_profile(cfg.profile)
    given = cfg.profile_overrides()
    scfg = _speed_config(prof, given)
    qcfg = QualityConfig(**{**prof.quality, **({"windows": cfg.limit, "mc_limit": cfg.limit} if cfg.limit else {})})
    cat = Catalog.open(cfg.catalog, create=False)
    rows = _select(cat, cfg.variants, tgt, log)
    text_src = str(cfg.eval_text) if cfg.eval_text else "Pride and Prejudice (guidellm)"
    text = read_text(cfg.eval_text)
    suites = mc_suites(qcfg, cfg.eval_mc) if cfg.quality else {}
    text_sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    _check_text_length(rows, text, text_src, scfg, qcfg, speed=cfg.speed, quality=cfg.quality, text_sha=text_sha)
    from ..artifact.verify import verify_variant

    refs = {base_key(v): v for v in reversed(cat.variants()) if v.manifest.get("reference")}  # first one wins
    groups: dict[str | None, list] = {}
    for r in rows:
        groups.setdefault(base_key(r), []).append(r)
    # Before any measuring: a changed file would give a meaningless number (--no-verify skips the hashes).
    for key, grp in groups.items():
        ref = refs.get(key)
        for r in grp + ([ref] if ref is not None and ref.name not in {r.name for r in grp} else []):
            verify_variant(r.path, r.manifest, verify=cfg.verify)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    fp = fingerprint(
        hardware_key=price[0], device=tgt.device, threads=cfg.threads or torch.get_num_threads(), command=command
    )
    config = {
        "target": cfg.target,
        "profile": prof.name,
        "profile_overrides": [f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in given.items()],
        "speed": scfg.model_dump(),
        "quality": qcfg.model_dump(),
        "slo_ms": cfg.slo_ms,
        "price_per_hour": price[1],
        "price_source": price[2],
        "eval_text": text_src,
        "eval_mc": suites and {k: len(v[0]) for k, v in suites.items()},
        "load_avg": None,  # stamped when the run starts
        "variants": [r.name for r in rows],
    }
    return [
        BenchPlan(
            cfg=cfg, tgt=tgt, scfg=scfg, qcfg=qcfg, root=Path(cat.root), rows=grp, ref=refs.get(key), text=text,
            text_src=text_src, text_sha=text_sha, suites=suites, price=price, fingerprint=fp,
            config={**config, "variants": [r.name for r in grp]}, notes={r.name: [] for r in grp},
        )
        for key, grp in groups.items()
    ]  # fmt: skip


def make_records(
    p: BenchPlan, speeds: dict[str, SpeedResult], qualities: dict[str, QualityResult], log: Callable[[str], None]
) -> list[BenchRecord]:
    """One BenchRecord per variant: the measurements, their cost, notes, and (with quality) the gate verdicts."""
    hw_key, price, price_src = p.price
    records = []
    for row in p.rows:
        s, q = speeds.get(row.name), qualities.get(row.name)
        cost = None
        if s is not None:
            cost, note = cost_of(
                s, hardware_key=hw_key, price_per_hour=price, price_source=price_src, slo_ms=p.cfg.slo_ms
            )
            if note:
                p.notes[row.name].append(note)
        records.append(
            BenchRecord(
                variant=row.name, target=p.cfg.target, run_id=p.run_id, created=p.created,
                fingerprint=p.fingerprints.get(row.name, p.fingerprint), speed=s, quality=q, cost=cost, notes=p.notes[row.name],
            )
        )  # fmt: skip
    _compare_to_reference(records, p.ref.name if p.ref else None)
    if p.cfg.quality:
        record_verdicts(records, {r.name: r.manifest for r in p.rows}, p.text_sha, log)
    return records


def store(p: BenchPlan, records: list[BenchRecord], log: Callable[[str], None]) -> None:
    """One transaction into the catalog index (records and gate statuses), then the JSON/Markdown reports."""
    from ..catalog import Catalog

    cat = Catalog.open(p.root, create=False)
    save_run(cat, records, config=p.config, builds={r.name: variant_build_id(r.manifest) for r in p.rows})
    if p.cfg.quality:
        for r in records:
            cat.set_status(r.variant, r.gate["status"])
    out_dir = Path(p.cfg.out) if p.cfg.out else Path(cat.root) / "bench"
    js, md = write_reports(records, p.config, out_dir)
    log(f"stored run {p.run_id} in {cat.root / 'index.sqlite'}; reports {js} and {md}")


def _ray_executor(cfg: BenchConfig) -> Any:
    from ..executor import RayExecutor

    return RayExecutor(cfg.ray)


def _ray_job(cfg: BenchConfig, tgt: Target, plan: BenchPlan | None = None) -> Any:
    from ..executor import Job

    label = f"bench {plan.rows[0].name} on {tgt.name}" if plan else f"bench on {tgt.name}"
    return Job(measure_task, plan, {"CPU": cfg.threads or 1, **tgt.ray_resources()}, label=label)


def _measure_on_ray(p: BenchPlan, log: Callable[[str], None]) -> tuple[dict, dict]:
    """One Ray task per variant (each scores the reference itself, so no task waits for another); the results
    come back here and are stored by this process in one transaction."""
    ex = _ray_executor(p.cfg)
    jobs = [_ray_job(p.cfg, p.tgt, dataclasses.replace(p, rows=[row], notes={row.name: []}, _ids={})) for row in p.rows]
    log(f"{len(jobs)} Ray task(s) on {p.cfg.ray}, each asking for {jobs[0].resources}")
    speeds, qualities = {}, {}
    for n, (k, out) in enumerate(ex.run(jobs), 1):
        name = p.rows[k].name
        speeds.update(out["speed"])
        qualities.update(out["quality"])
        p.notes[name] = out["notes"][name]
        p.fingerprints[name] = out["fingerprint"]
        log(f"[{n}/{len(jobs)}] {name}: measured on {out['host']}")
    return speeds, qualities


def per_target(cfg: BenchConfig) -> list[BenchConfig]:
    """One config per target: "auto" puts each variant on the first target that runs it here (cpu for PyTorch
    artifacts, onnx-cpu for ONNX graphs, neuron-static for static buckets); "cpu,onnx-cpu" runs each listed target
    on the variants it supports."""
    if cfg.target != "auto" and "," not in cfg.target:
        return [cfg]
    from ..catalog import Catalog
    from .gate_check import natural_target

    cat = Catalog.open(cfg.catalog, create=False)
    rows = [cat.get(v) for v in cfg.variants] if cfg.variants else cat.variants()
    if not rows:
        raise UserError(f"catalog '{cat.root}' has no variants", hint="build some with `slimserve build RECIPE`")
    groups: dict[str, list[str]] = {}
    if cfg.target == "auto":
        for r in rows:
            groups.setdefault(natural_target(r.manifest).name, []).append(r.name)
    else:
        for t in [x.strip() for x in cfg.target.split(",") if x.strip()]:
            tgt = get_target(t)
            groups[t] = [r.name for r in rows if tgt.supports(r.manifest) is None]
    return [cfg.with_(variants=names, target=t, catalog=cat.root) for t, names in groups.items() if names]


def _combined_report(records: list[BenchRecord], cfg: BenchConfig, root: Path, *, show: bool, log) -> None:
    """One report over the per-target runs (rows named variant@target), beside each run's own."""
    from ..catalog import Catalog
    from .store import run_config

    cat = Catalog.open(root, create=False)
    config = {**run_config(cat, records[0].run_id), "runs": sorted({r.run_id for r in records})}
    out_dir = Path(cfg.out) if cfg.out else Path(cat.root) / "bench"
    js, md = write_reports(records, config, out_dir, stem=f"combined-{records[0].run_id}")
    log(f"combined report {md}")
    if show and cfg.json_output:
        print(_json.dumps([r.to_dict() for r in records], indent=2, default=str))
    elif show:
        print(to_markdown(records, config))


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
