"""`slimserve build`: recipe -> variants in the catalog. Orchestration only; methods live in their modules."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from .artifact.manifest import MANIFEST_VERSION, Manifest, file_table, now_iso, versions, weight_bytes
from .artifact.writers import WRITERS
from .catalog import Catalog, VariantRow, check_name
from .errors import GateRejected, UserError, flag
from .executor import Job, executor_for
from .recipe import Recipe, load_recipe, steps_of
from .sources import ResolvedBase, resolve_base, sha256_file
from .steps import DISCRIMINATOR, STEPS, StepContext

log = logging.getLogger("slimserve")
console = Console(stderr=True, soft_wrap=True)


def build(
    recipe: str | Path,
    *,
    catalog: str | Path | None = None,
    variants: list[str] | None = None,
    force: bool = False,
    base: str | None = None,
    ray: str | None = None,
) -> list[VariantRow]:
    """Build every variant of a recipe (or the named subset) into the catalog.

    `base` replaces the recipe's base.source (same recipe, another model). `ray` (an address: HOST:PORT, auto,
    local) builds the variants as Ray tasks; the catalog and the base cache must be on a path every node shares
    (see executor.py), and this process commits each finished variant.

    >>> slimserve.build("recipes/llama-int4.yaml", catalog="catalog")
    """
    recipe_file = str(recipe)
    r = load_recipe(recipe_file)
    if base is not None:
        r = r.model_copy(update={"base": r.base.model_copy(update={"source": base})})
    chosen = _choose(r, variants, recipe_file)
    chosen_names = {v.name for v in chosen}
    for i, v in enumerate(r.variants):
        if v.name in chosen_names:
            check_name(v.name, field=f"variants[{i}].name", file=recipe_file)
    ex = executor_for(ray)  # an address that does not answer fails here, before the catalog is touched
    cat = Catalog.open(catalog)
    base = resolve_base(r.base, file=recipe_file)
    done = {} if force else _up_to_date(cat, chosen, r, base, recipe_file)
    recipe_info = {
        "name": r.name,
        "file": recipe_file,
        "hash": r.content_hash(),
        "file_sha256": sha256_file(Path(recipe_file)),
    }
    rows, rejected = [], {}
    todo = [v for v in chosen if v.name not in done]
    checker = _gate_checker(todo, base)
    for i, v in enumerate(chosen, 1):
        if v.name in done:
            console.print(
                f"[bold]\\[{i}/{len(chosen)}][/bold] {v.name}: up to date (same recipe and base; --force rebuilds)"
            )
            rows.append(done[v.name])
    jobs = [(v, BuildJob(r, v, base, recipe_info, recipe_file, Path(), checker)) for v in todo]
    _no_space(lambda: _run_builds(cat, ex, jobs, len(chosen), force, rows, rejected), base)
    order = {v.name: i for i, v in enumerate(chosen)}
    rows.sort(key=lambda row: order[row.name])
    if rejected:
        raise GateRejected(rejected, rows)
    return rows


def _run_builds(cat: Catalog, ex, jobs: list, n_chosen: int, force: bool, rows: list, rejected: dict) -> None:
    """Run the build jobs on the executor; commit each finished variant here, the catalog's one writer."""
    todo = [v for v, _ in jobs]
    with contextlib.ExitStack() as stack:  # staging folders made (and cleaned up) by this process
        tasks = [
            Job(_build_into, replace(job, staged=stack.enter_context(cat.staging(v.name))), resources={"CPU": 1},
                label=f"build {v.name}")
            for v, job in jobs
        ]  # fmt: skip
        if ex.name != "local" and tasks:
            console.print(f"building {len(tasks)} variant(s) as Ray tasks on {ex.address}")
        for k, result in _announced(ex.run(tasks), todo, n_chosen, local=ex.name == "local"):
            v = todo[k]
            if isinstance(result, str):
                rejected[v.name] = result
                console.print(f"  [red]rejected[/red] {v.name} by its gates: {result}; nothing was written")
                continue
            row = cat.commit(tasks[k].arg.staged, result, force=force)
            rows.append(row)
            gate = row.manifest.get("gate_check")
            console.print(
                f"  -> {row.path}  {row.format}  {row.size_bytes / 1e6:.1f} MB  "
                f"{row.manifest['bits_per_weight']:.2f} bits/weight  {row.manifest['build_seconds']:.1f}s"
                + (f"  gates {gate['status']} ({gate['target']})" if gate else "")
            )


def _announced(results, todo, n_chosen: int, *, local: bool):
    """Print "[i/n] building NAME" before a local build starts (Ray tasks run at once: announced when done)."""
    first = n_chosen - len(todo)
    it = iter(results)
    for k, v in enumerate(todo):
        if local:
            console.print(f"[bold]\\[{first + k + 1}/{n_chosen}][/bold] building {v.name} ({v.tier})")
        k2, result = next(it)
        if not local:
            console.print(f"[bold]\\[{first + k + 1}/{n_chosen}][/bold] built {todo[k2].name} ({todo[k2].tier})")
        yield k2, result


def _up_to_date(cat: Catalog, chosen, r: Recipe, base: ResolvedBase, recipe_file: str) -> dict:
    """Catalog rows (by name) of the variants already built from this very recipe content and base (a rerun skips
    them); any other existing variant of the same name is an error unless forced."""
    existing = {v.name: cat.get(v.name) for v in chosen if cat.exists(v.name)}
    same = {
        n: row for n, row in existing.items()
        if row.manifest.get("recipe", {}).get("hash") == r.content_hash()
        and row.manifest.get("base", {}).get("source_hash") == base.source_hash
    }  # fmt: skip
    stale = [n for n in existing if n not in same]
    if stale:
        raise UserError(
            f"variant(s) {', '.join(stale)} already exist in catalog '{cat.root}', built from another version of the "
            "recipe or another base",
            file=recipe_file,
            field="variants[].name",
            hint=("Use ", flag("--force", "force=True"), " to rebuild them, or pick other names"),
        )
    return same


def _no_space(fn, base: ResolvedBase):
    """fn(), with a full disk reported as one line (which file, about how much room a variant needs). The staging
    folder is gone by then: nothing is left behind."""
    import errno
    import shutil

    try:
        return fn()
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        need = sum(f.stat().st_size for f in Path(base.path).glob("*.safetensors"))
        where = Path(e.filename).parent if e.filename else Path(".")
        free = shutil.disk_usage(where if where.exists() else ".").free
        raise UserError(
            f"no space left on the device (ENOSPC) while writing {e.filename or 'a variant file'}: a variant of this "
            f"base needs up to about {need / 1e6:.0f} MB, {free / 1e6:.0f} MB are free; nothing was kept",
            hint="free some space, or point --catalog at another disk",
        ) from None


def _gate_checker(chosen, base: ResolvedBase):
    """One reference for every variant of this build that asks for a build-time gate check (None if none does)."""
    if not any(v.gates is not None and v.gates.check == "build" for v in chosen):
        return None
    from .bench.gate_check import GateChecker

    return GateChecker(base.path)


def _choose(r: Recipe, names: list[str] | None, file: str):
    if not names:
        return list(r.variants)
    known = {v.name: v for v in r.variants}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UserError(f"recipe has no variant {', '.join(unknown)}", file=file, field="variants", allowed=list(known))
    return [known[n] for n in names]


def load_base_model(base: ResolvedBase, trust_remote_code: bool = False):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        base.path, dtype=torch.float32, trust_remote_code=trust_remote_code
    ).eval()


def count_params(model) -> int:
    """Dense-equivalent parameter count (packed bitsandbytes weights count their logical shape)."""
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        qs = getattr(p, "quant_state", None)
        total += qs.shape.numel() if qs is not None and hasattr(qs, "shape") else p.numel()
    return total


@dataclass
class BuildJob:
    """One variant to build into `staged` (a staging folder the committing process made, on the shared path)."""

    recipe: Recipe
    variant: Any
    base: ResolvedBase
    recipe_info: dict
    recipe_file: str
    staged: Path
    checker: Any = None  # GateChecker (lazy: the reference is scored on first use, in the process that builds)


def _build_into(job: BuildJob) -> Manifest | str:
    """Build one variant's artifact into job.staged; its manifest, or the reason its build-time gates rejected it.
    Runs in this process or in a Ray worker: it never opens the catalog."""
    from transformers import AutoTokenizer

    from . import methods  # noqa: F401  (a fresh Ray worker has not registered the recipe's methods yet)

    r, v, base, recipe_info, recipe_file, tmp, checker = (job.recipe, job.variant, job.base, job.recipe_info,
                                                         job.recipe_file, job.staged, job.checker)  # fmt: skip
    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(base.path, trust_remote_code=r.base.trust_remote_code)
    model = load_base_model(base, r.base.trust_remote_code)
    steps_record = []
    ctx = StepContext(
        base_dir=base.path, work_dir=tmp, tokenizer=tokenizer, field="", recipe_file=recipe_file, base_gguf=base.gguf
    )
    for j, (kind, cfg) in enumerate(steps_of(v)):
        method = getattr(cfg, DISCRIMINATOR[kind])
        idx = r.variants.index(v)
        ctx.field = f"variants[{idx}].steps[{j}].{kind}"
        ctx.records = {}
        spec = STEPS[kind].get(method, field=ctx.field, file=recipe_file)
        ts = time.perf_counter()
        model = spec.apply(model, cfg, ctx)
        for msg, layers in ctx.records.get("notes", {}).items():
            console.print(f"  note: {len(layers)} layer(s): {msg}")
        steps_record.append(
            {
                "kind": kind,
                DISCRIMINATOR[kind]: method,
                "settings": cfg.model_dump(mode="json"),
                "summary": cfg.summary(),
                "seconds": round(time.perf_counter() - ts, 2),
                "records": ctx.records,
            }
        )
    by_reason: dict[str, list[str]] = {}
    for layer, why in ctx.skipped.items():
        by_reason.setdefault(why, []).append(layer)
    for why, layers in by_reason.items():
        console.print(
            f"  skipped {len(layers)} layer(s) ({why}): {', '.join(layers[:4])}{' ...' if len(layers) > 4 else ''}"
        )
    params = count_params(model)
    extra = WRITERS.get(ctx.artifact_format)(model, tmp, ctx)
    if not (tmp / "tokenizer_config.json").is_file():
        tokenizer.save_pretrained(tmp)
    files = file_table(tmp)
    wbytes = weight_bytes(files)
    manifest = Manifest(
        manifest_version=MANIFEST_VERSION,
        name=v.name,
        tier=v.tier,
        reference=v.reference,
        description=v.description,
        format=ctx.artifact_format,
        method=" + ".join(s["summary"] for s in steps_record) or "reference (fp32)",
        steps=steps_record,
        gates=v.gates.model_dump(mode="json") if v.gates else None,
        skipped_layers=ctx.skipped,
        quantized_layers=ctx.layers,
        params=params,
        bits_per_weight=8 * wbytes / params if params else None,
        size_bytes=wbytes,
        files=files,
        base={
            "source": base.source,
            "kind": base.kind,
            "source_hash": base.source_hash,
            "trust_remote_code": r.base.trust_remote_code,
            "config": _config_summary(model),
        },
        recipe=recipe_info,
        versions=versions(),
        built_at=now_iso(),
        build_seconds=round(time.perf_counter() - t0, 2),
        **extra,
    )
    if checker is not None and v.gates is not None and v.gates.check == "build":
        verdict = _check_gates(checker, tmp, manifest)
        if verdict.status == "rejected":
            return verdict.reason
        manifest.gate_check = verdict.to_dict()
    return manifest


def _check_gates(checker, staged: Path, manifest: Manifest):
    """Score the staged artifact (it needs its manifest on disk to load) against the base on held-out text."""
    manifest.write(staged)
    with console.status(f"checking the gates of {manifest.name} on held-out text"):
        verdict = checker.check(staged, manifest.to_dict())
    console.print(f"  gates: {verdict.summary()}")
    return verdict


def _config_summary(model) -> dict:
    c = model.config
    keys = (
        "model_type",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "intermediate_size",
        "vocab_size",
        "max_position_embeddings",
        "tie_word_embeddings",
    )
    return {k: getattr(c, k, None) for k in keys}
