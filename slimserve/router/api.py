"""Router catalog API: tier the benchmarked targets, declare external models, export to routers.

import slimserve.router as router
router.add_external("gpt-4o", input_per_1m=2.50, output_per_1m=10.00, quality={"mc:arc_easy": 0.96},
                    source="https://openai.com/api/pricing", date="2026-11-01")
router.tier()                                    # Pareto front + tiers.yaml -> stored assignment
router.export("litellm", "router.yaml", api_base="http://localhost:8000/v1")
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import UserError
from . import external as ext
from . import targets as tg
from .formats import EXPORTERS, ExportContext, check_api_base, load_all, write_atomic
from .tiers import DEFAULT_RULES, Assignment, assign, assign_from_recipe, load_rules

DEFAULT_API_BASE = "http://localhost:8000/v1"

TIERS_SCHEMA = """
CREATE TABLE IF NOT EXISTS router_tiers (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    rules TEXT NOT NULL,  -- JSON {rules: path, from_recipe: bool}
    inputs TEXT NOT NULL,
    assignment TEXT NOT NULL,
    created TEXT NOT NULL
)
"""


def _say(msg: str) -> None:
    print(msg, file=sys.stderr)


def open_catalog(catalog: Any = None, *, create: bool = False) -> Any:
    """A Catalog object as is, or open one from a path (None: $SLIMSERVE_CATALOG or ./catalog).
    Reading commands never create a catalog folder as a side effect."""
    if catalog is None or isinstance(catalog, (str, Path)):
        from ..catalog import Catalog

        return Catalog.open(catalog, create=create)
    return catalog


def collect(cat: Any, target: str | None = None, *, quiet: bool = False) -> tuple[list[tg.RoutingTarget], list[str]]:
    """Local targets from the latest benchmark records plus declared external models; prints what is left out."""
    variants = cat.variants()
    records = tg.load_records(cat, target=target) if variants else []
    targets, skipped = tg.build_targets(variants, records)
    targets += [ext.to_target(r) for r in ext.list_external(cat)]
    if not quiet:
        for s in skipped:
            _say(f"left out: {s}")
    return targets, skipped


def _inputs_key(targets: list[tg.RoutingTarget]) -> str:
    rows = sorted(
        (t.id, t.run_id or t.created, t.usd_per_1m_input, t.usd_per_1m_output, sorted(t.quality.items()))
        for t in targets
    )
    return hashlib.sha256(json.dumps(rows, default=str).encode()).hexdigest()[:16]


def _compute(targets: list[tg.RoutingTarget], rules: Any, from_recipe: bool) -> tuple[Assignment, str]:
    path = Path(rules).resolve() if rules else DEFAULT_RULES  # stored: must not depend on the cwd of `tier`
    r = load_rules(path)
    if from_recipe:
        return assign_from_recipe(targets, r), str(path)
    return assign(targets, r, source=f"rules:{path}"), str(path)  # (assignment, rules path to store)


def _stored(cat: Any) -> dict[str, Any] | None:
    cat.ensure_schema(TIERS_SCHEMA)
    with cat.connect() as con:
        row = con.execute("SELECT rules, inputs, assignment FROM router_tiers WHERE id = 1").fetchone()
    return None if row is None else {"rules": row[0], "inputs": row[1], "assignment": json.loads(row[2])}


def tier(
    catalog: Any = None,
    rules: str | Path | None = None,
    *,
    from_recipe: bool = False,
    target: str | None = None,
) -> Assignment:
    """Assign tiers from the cost/quality front (rules: a tiers.yaml; default the packaged one), or keep the
    recipe labels (from_recipe=True). The assignment is stored in the catalog index and used by `export`."""
    cat = open_catalog(catalog)
    targets, _ = collect(cat, target)
    a, rules_ref = _compute(targets, rules, from_recipe)
    cat.ensure_schema(TIERS_SCHEMA)
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    with cat.connect() as con:
        con.execute(
            "INSERT OR REPLACE INTO router_tiers VALUES (1, ?, ?, ?, ?)",
            (
                json.dumps({"rules": rules_ref, "from_recipe": from_recipe}),
                _inputs_key(targets),
                json.dumps(a.to_dict()),
                now,
            ),
        )
        con.commit()
    return a


def current_assignment(cat: Any, targets: list[tg.RoutingTarget], rules: Any = None) -> Assignment:
    """The stored assignment when it was made from exactly these measurements, else a fresh one (said on stderr)."""
    stored = None if rules else _stored(cat)
    if stored and stored["inputs"] == _inputs_key(targets):
        return Assignment.from_dict(stored["assignment"])
    if stored:
        _say("note: measurements changed since `slimserve catalog tier`; tiers recomputed with the same rules")
        try:
            how = json.loads(stored["rules"])
        except ValueError:  # a row written before the JSON form: fall back to the packaged rules
            how = {"rules": None, "from_recipe": False}
        return _compute(targets, how.get("rules"), bool(how.get("from_recipe")))[0]
    return _compute(targets, rules, False)[0]


def export(
    format: str,
    output: str | Path,
    *,
    catalog: Any = None,
    api_base: str = DEFAULT_API_BASE,
    target: str | None = None,
    rules: str | Path | None = None,
) -> Path:
    """Write the catalog's routing targets in `format` (litellm, openrouter, routellm, json) to `output`, atomically.

    api_base is the OpenAI-compatible endpoint serving local variants; it may contain {variant}, {target}, {id}.
    target keeps only one benchmark target (e.g. "cpu"). Returns the written path.
    """
    load_all()
    render = EXPORTERS.get(format, field="format")
    check_api_base(api_base)
    out = Path(output)
    if not out.parent.is_dir():
        raise UserError(
            f"folder {out.parent} does not exist", field="output", hint="create it first or pick another path"
        )
    cat = open_catalog(catalog)
    targets, skipped = collect(cat, target)
    if not targets:
        raise UserError(
            "nothing to export: the catalog has no benchmarked targets and no external models",
            hint="run `slimserve bench VARIANT` or `slimserve catalog add-external`"
            + (f"; left out: {'; '.join(skipped)}" if skipped else ""),
        )
    a = current_assignment(cat, targets, rules)
    for n in a.notes:
        _say(f"note: {n}")
    order = {tid: i for i, tid in enumerate(tid for tr in a.tiers for tid in tr.members)}
    targets.sort(key=lambda t: (order.get(t.id, len(order)), a.status[t.id]["cost"], t.id))
    ctx = ExportContext(
        targets=targets,
        assignment=a,
        api_base=api_base,
        generated=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        catalog_root=str(getattr(cat, "root", "")),
        skipped=skipped,
    )
    return write_atomic(out, render(ctx))


def add_external(
    name: str,
    *,
    input_per_1m: float,
    output_per_1m: float,
    quality: Any = None,
    source: str,
    date: str | None = None,
    model: str | None = None,
    context_length: int | None = None,
    api_base: str | None = None,
    catalog: Any = None,
) -> dict[str, Any]:
    """Declare an external model with its list prices (USD per 1M tokens, with source and date) and declared quality
    ({metric: value}, e.g. {"mc:arc_easy": 0.96}). `model` is the name a router sends (default: name)."""
    cat = open_catalog(catalog, create=True)
    return ext.add_external(
        cat,
        name,
        input_per_1m=input_per_1m,
        output_per_1m=output_per_1m,
        quality=quality,
        source=source,
        date=date,
        model=model,
        context_length=context_length,
        api_base=api_base,
    )


def formats() -> list[str]:
    load_all()
    return EXPORTERS.names()
