"""Router catalog API: tier the benchmarked targets, declare external models, export to routers.

import slimserve.router as router
router.add_external("gpt-4o", input_per_1m=2.50, output_per_1m=10.00, quality={"mc:arc_easy": 0.96},
                    source="https://openai.com/api/pricing", date="2026-11-01")
router.tier()                                    # Pareto front + tiers.yaml -> stored assignment
router.tier(include_rejected=True)               # also route variants their quality gates rejected
router.export("litellm", "router.yaml", api_base="http://localhost:8000/v1")
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError, flag
from . import entries as tg
from . import external as ext
from .formats import EXPORTERS, ExportContext, check_api_base, write_atomic
from .tiers import DEFAULT_RULES, Assignment, assign, assign_from_recipe, load_rules

DEFAULT_API_BASE = "http://localhost:8000/v1"
INCLUDE_REJECTED = flag("--include-rejected", "include_rejected=True")

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


@dataclass
class Collected:
    """What `collect` found: the targets to route, and what was left out or kept against its gates."""

    targets: list[tg.RoutingTarget]
    skipped: list[str]  # left out, each with its reason (rejected targets among them unless kept)
    rejected: list[tg.RoutingTarget] = field(default_factory=list)  # rejected by their gates, kept or not
    notes: list[str] = field(default_factory=list)  # rejected targets kept by include_rejected


def collect(cat: Any, target: str | None = None, *, include_rejected: bool = False, quiet: bool = False) -> Collected:
    """Local targets from the latest benchmark records plus declared external models; targets their gates rejected
    are left out unless include_rejected. Prints what is left out (and what is kept against its gates)."""
    variants = cat.variants()
    records = tg.load_records(cat, target=target) if variants else []
    targets, skipped = tg.build_targets(variants, records)
    targets, rejected, lines = tg.split_rejected(targets, include_rejected=include_rejected)
    notes = lines if include_rejected else []
    skipped += [] if include_rejected else lines
    targets += [ext.to_target(r) for r in ext.list_external(cat)]
    if not quiet:
        for s in skipped:
            _say(f"left out: {s}")
        for n in notes:
            _say(f"note: {n}")
    return Collected(targets, skipped, rejected, notes)


def _inputs_key(targets: list[tg.RoutingTarget]) -> str:
    rows = sorted(
        (t.id, t.run_id or t.created, t.usd_per_1m_input, t.usd_per_1m_output, sorted(t.quality.items()))
        for t in targets
    )
    return hashlib.sha256(json.dumps(rows, default=str).encode()).hexdigest()[:16]


def _compute(
    targets: list[tg.RoutingTarget], rules: Any, from_recipe: bool, rejected: list[tg.RoutingTarget] = ()
) -> tuple[Assignment, str]:
    path = Path(rules).resolve() if rules else DEFAULT_RULES  # stored: must not depend on the cwd of `tier`
    r = load_rules(path)
    try:
        if from_recipe:
            return assign_from_recipe(targets, r), str(path)
        return assign(targets, r, source=f"rules:{path}"), str(path)  # (assignment, rules path to store)
    except UserError as e:
        if not rejected:
            raise
        gone = ", ".join(f"{t.id} ({r.metric} {t.quality.get(r.metric)})" for t in rejected)
        hint = [e.hint or "", f"; left out as rejected by their gates: {gone} (", INCLUDE_REJECTED, " keeps them)"]
        raise UserError(e.text, file=e.file, field=e.field, allowed=e.allowed, hint=hint) from None


def _stored(cat: Any) -> dict[str, Any] | None:
    cat.ensure_schema(TIERS_SCHEMA)
    with cat.connect() as con:
        row = con.execute("SELECT rules, inputs, assignment FROM router_tiers WHERE id = 1").fetchone()
    return None if row is None else {"rules": row[0], "inputs": row[1], "assignment": json.loads(row[2])}


def _how(stored: dict[str, Any]) -> dict[str, Any]:
    """How the stored tiers were made: rules, from_recipe and (rows written since gates) target, include_rejected."""
    try:
        how = json.loads(stored["rules"])
    except ValueError:  # a row written before the JSON form: fall back to the packaged rules
        how = {}
    return {
        "rules": how.get("rules"),
        "from_recipe": bool(how.get("from_recipe")),
        "scope": (how.get("target"), bool(how.get("include_rejected"))) if "target" in how else None,
    }


def _scope_text(scope: tuple[str | None, bool]) -> str:
    target, include_rejected = scope
    where = f"target {target}" if target else "every target"
    return where + (" with" if include_rejected else " without") + " rejected variants"


def tier(
    catalog: Any = None,
    rules: str | Path | None = None,
    *,
    from_recipe: bool = False,
    target: str | None = None,
    include_rejected: bool = False,
) -> Assignment:
    """Assign tiers from the cost/quality front (rules: a tiers.yaml; default the packaged one), or keep the
    recipe labels (from_recipe=True). Targets their gates rejected are left out unless include_rejected.
    The assignment is stored in the catalog index and used by `export`, `report` and `catalog list`."""
    cat = open_catalog(catalog)
    c = collect(cat, target, include_rejected=include_rejected)
    a, rules_ref = _compute(c.targets, rules, from_recipe, c.rejected)
    how = {"rules": rules_ref, "from_recipe": from_recipe, "target": target, "include_rejected": include_rejected}
    cat.ensure_schema(TIERS_SCHEMA)
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    with cat.connect() as con:
        con.execute(
            "INSERT OR REPLACE INTO router_tiers VALUES (1, ?, ?, ?, ?)",
            (json.dumps(how), _inputs_key(c.targets), json.dumps(a.to_dict()), now),
        )
        con.commit()
    return a


def current_assignment(
    cat: Any,
    targets: list[tg.RoutingTarget],
    rules: Any = None,
    *,
    target: str | None = None,
    include_rejected: bool = False,
    rejected: list[tg.RoutingTarget] = (),
) -> Assignment:
    """The stored assignment when it was made from exactly these measurements (same target and include_rejected),
    else a fresh one with the stored rules (said on stderr)."""
    stored = None if rules else _stored(cat)
    if not stored:
        return _compute(targets, rules, False, rejected)[0]
    how = _how(stored)
    scope = (target, include_rejected)
    if how["scope"] not in (None, scope):
        _say(
            f"note: the stored tiers cover {_scope_text(how['scope'])}, this covers {_scope_text(scope)}; "
            "tiers recomputed with the same rules"
        )
    elif stored["inputs"] == _inputs_key(targets):
        return Assignment.from_dict(stored["assignment"])
    else:
        _say("note: measurements changed since `slimserve catalog tier`; tiers recomputed with the same rules")
    return _compute(targets, how["rules"], how["from_recipe"], rejected)[0]


def stored_assignment(cat: Any) -> tuple[Assignment | None, str]:
    """The stored `catalog tier` assignment while it matches the measurements: (assignment, "") or (None, why not:
    "none" when nothing is stored, "stale" when the measurements changed since)."""
    stored = _stored(cat)
    if stored is None:
        return None, "none"
    target, include_rejected = _how(stored)["scope"] or (None, False)
    c = collect(cat, target, include_rejected=include_rejected, quiet=True)
    if stored["inputs"] != _inputs_key(c.targets):
        return None, "stale"
    return Assignment.from_dict(stored["assignment"]), ""


def export(
    format: str,
    output: str | Path,
    *,
    catalog: Any = None,
    api_base: str | None = None,
    target: str | None = None,
    rules: str | Path | None = None,
    include_rejected: bool = False,
) -> Path:
    """Write the catalog's routing targets in `format` (litellm, openrouter, routellm, json) to `output`, atomically.

    api_base is the OpenAI-compatible endpoint serving local variants; it may contain {variant}, {target}, {id}.
    None: the endpoint of a live `slimserve serve` recorded in the catalog, else DEFAULT_API_BASE.
    target keeps only one benchmark target (e.g. "cpu"). Targets their gates rejected are left out unless
    include_rejected. Returns the written path.
    """
    render = EXPORTERS.get(format, field="format")
    if api_base is not None:
        check_api_base(api_base)
    out, cat, c, a = routed(
        output, "export", catalog=catalog, target=target, rules=rules, include_rejected=include_rejected
    )
    if api_base is None:
        api_base = _live_api_base(cat)
    for n in a.notes:
        _say(f"note: {n}")
    ctx = ExportContext(
        targets=sort_targets(c.targets, a),
        assignment=a,
        api_base=api_base,
        generated=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        catalog_root=str(getattr(cat, "root", "")),
        skipped=c.skipped,
        rejected=c.rejected,
        notes=c.notes,
    )
    return write_atomic(out, render(ctx))


def routed(
    output: str | Path, what: str, *, catalog: Any, target: str | None, rules: Any, include_rejected: bool
) -> tuple[Path, Any, Collected, Assignment]:
    """What export() and report() start from: (output path, checked; catalog; its targets; their tiers)."""
    out = Path(output)
    if not out.parent.is_dir():
        raise UserError(
            f"folder {out.parent} does not exist", field="output", hint="create it first or pick another path"
        )
    cat = open_catalog(catalog)
    c = collect(cat, target, include_rejected=include_rejected)
    if not c.targets:
        raise nothing_error(what, c)
    a = current_assignment(cat, c.targets, rules, target=target, include_rejected=include_rejected, rejected=c.rejected)
    return out, cat, c, a


def _live_api_base(cat: Any) -> str:
    """The endpoint a live `slimserve serve` recorded for this catalog (said), else DEFAULT_API_BASE."""
    from ..served import live_endpoint

    live = live_endpoint(cat)
    if live:
        _say(f"note: api_base {live}: the live `slimserve serve` recorded in the catalog")
    return live or DEFAULT_API_BASE


def sort_targets(targets: list[tg.RoutingTarget], a: Assignment) -> list[tg.RoutingTarget]:
    """Tier leaders and members first (in tier order), then the rest by cost."""
    order = {tid: i for i, tid in enumerate(tid for tr in a.tiers for tid in tr.members)}
    return sorted(targets, key=lambda t: (order.get(t.id, len(order)), a.status[t.id]["cost"], t.id))


def nothing_error(what: str, c: Collected) -> UserError:
    """No target to export or report: say whether the gates rejected them all or nothing was measured."""
    if c.rejected:
        return UserError(
            f"nothing to {what}: every benchmarked target was rejected by its gates "
            f"({', '.join(t.id for t in c.rejected)})",
            hint=["see the reasons above; ", INCLUDE_REJECTED, " keeps them"],
        )
    return UserError(
        f"nothing to {what}: the catalog has no benchmarked targets and no external models",
        hint="run `slimserve bench VARIANT` or `slimserve catalog add-external`"
        + (f"; left out: {'; '.join(c.skipped)}" if c.skipped else ""),
    )


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
    return EXPORTERS.names()
