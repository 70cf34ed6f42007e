"""`slimserve report`: the catalog as one self-contained HTML page (plots, tiers, sortable table, provenance)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from ..errors import UserError


def report(output: str | Path = "report.html", *, catalog: Any = None, target: str | None = None, rules: Any = None):
    """Write the HTML report to `output` (atomically) and return its path."""
    from ..router.api import collect, current_assignment, open_catalog
    from ..router.formats import write_atomic
    from .html import render

    out = Path(output)
    if not out.parent.is_dir():
        raise UserError(
            f"folder {out.parent} does not exist", field="output", hint="create it first or pick another path"
        )
    cat = open_catalog(catalog)
    targets, skipped = collect(cat, target)
    if not targets:
        raise UserError(
            "nothing to report: the catalog has no benchmarked targets and no external models",
            hint="run `slimserve bench VARIANT` or `slimserve catalog add-external`",
        )
    a = current_assignment(cat, targets, rules)
    order = {tid: i for i, tid in enumerate(tid for tr in a.tiers for tid in tr.members)}
    targets.sort(key=lambda t: (order.get(t.id, len(order)), a.status[t.id]["cost"], t.id))
    html = render(
        targets,
        a,
        skipped=skipped,
        generated=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        catalog=str(getattr(cat, "root", "")),
    )
    return write_atomic(out, html)


__all__ = ["report"]
