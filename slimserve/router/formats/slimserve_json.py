"""slimserve's own catalog JSON: every target with its tier, prices, quality, latency and provenance.

Versioned (`version`) and described by the published JSON Schema slimserve/router/schema/catalog.schema.json.
"""

from __future__ import annotations

import json
from pathlib import Path

from . import CATALOG_FORMAT_VERSION, EXPORTERS, ExportContext

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schema" / "catalog.schema.json"
SCHEMA_ID = "urn:slimserve:schema:catalog:1"  # the $id in SCHEMA_PATH


@EXPORTERS.register("json")
def render(ctx: ExportContext) -> str:
    a = ctx.assignment
    kept = {t.id for t in ctx.targets}
    targets = []
    for t in ctx.targets:
        d = t.to_dict()
        st = a.status.get(t.id, {})
        d.update(
            tier=ctx.tier(t),
            tiers=st.get("tiers", []),
            status=st.get("status"),
            dominated_by=st.get("dominated_by"),
            blended_usd_per_1m=st.get("cost"),
            endpoint=ctx.endpoint(t),
        )
        targets.append(d)
    doc = {
        "$schema": SCHEMA_ID,
        "format": "slimserve-catalog",
        "version": CATALOG_FORMAT_VERSION,
        "generated": ctx.generated,
        "catalog": ctx.catalog_root,
        "quality_metric": a.metric,
        "blend_input_share": a.blend_input_share,
        "tier_source": a.source,
        "tiers": [
            {
                "name": tr.name,
                "floor": tr.floor,
                "kind": tr.kind,
                "leader": tr.leader,
                "members": tr.members,
                "borrowed_from": tr.borrowed_from,
            }
            for tr in a.tiers
        ],  # fmt: skip
        "routellm": a.routellm,
        "targets": targets,
        "skipped": ctx.skipped,
        "rejected": [{"id": t.id, "kept": t.id in kept, "gate": t.gate} for t in ctx.rejected],
        "notes": ctx.all_notes(),
    }
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"
