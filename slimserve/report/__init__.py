"""`slimserve report`: the catalog as one self-contained HTML page (plots, tiers, sortable table, provenance)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any


def report(
    output: str | Path = "report.html",
    *,
    catalog: Any = None,
    target: str | None = None,
    rules: Any = None,
    include_rejected: bool = False,
):
    """Write the HTML report to `output` (atomically) and return its path. Targets their quality gates rejected are
    left out of the plots and tables unless include_rejected, and listed with their failing checks either way."""
    from ..router.api import routed, sort_targets
    from ..router.formats import write_atomic
    from .html import render
    from .routing import routing_html

    out, cat, c, a = routed(
        output, "report", catalog=catalog, target=target, rules=rules, include_rejected=include_rejected
    )
    html = render(
        sort_targets(c.targets, a),
        a,
        skipped=c.skipped,
        rejected=c.rejected,
        notes=c.notes,
        generated=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        catalog=str(getattr(cat, "root", "")),
        routing=routing_html(cat) if cat is not None else "",
    )
    return write_atomic(out, html)


__all__ = ["report"]
