"""External (cloud) models declared in the catalog, so users route between local tiers and premium APIs.

Their prices are list prices with a source and a date, never measurements; their quality values are declared.
Stored in the catalog index (table router_external).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from typing import Any

from ..errors import UserError
from .entries import RoutingTarget
from .metrics import check_metric

SCHEMA = """
CREATE TABLE IF NOT EXISTS router_external (
    name TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    input_per_1m REAL NOT NULL,
    output_per_1m REAL NOT NULL,
    quality TEXT NOT NULL,
    source TEXT NOT NULL,
    date TEXT NOT NULL,
    context_length INTEGER,
    api_base TEXT,
    added TEXT NOT NULL
)
"""


def parse_quality(items: Any, default_metric: str = "top1") -> dict[str, float]:
    """Accept {metric: value}, a bare number (the default metric), or CLI strings "metric=value" / "0.9"."""
    if items is None:
        return {}
    if isinstance(items, (int, float)):
        items = {default_metric: items}
    if isinstance(items, str):
        items = [items]
    if isinstance(items, (list, tuple)):
        parsed: dict[str, Any] = {}
        for it in items:
            key, sep, val = str(it).partition("=")
            parsed[key.strip() if sep else default_metric] = val if sep else key
        items = parsed
    out = {}
    for k, v in dict(items).items():
        check_metric(k, field="quality")
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            raise UserError(f"quality value '{v}' for {k} is not a number", field="quality") from None
    return out


def _price(value: Any, field: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise UserError(f"price '{value}' is not a number", field=field) from None
    if not math.isfinite(x) or x < 0:
        raise UserError(f"price must be a non-negative number of USD per 1M tokens, got {value}", field=field)
    return x


def add_external(
    cat: Any,
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
) -> dict[str, Any]:
    """Declare (or replace) an external model. Prices are USD per 1M tokens from a public price list."""
    if not name or not name.strip():
        raise UserError("an external model needs a name", field="name")
    row = {
        "name": name.strip(),
        "model": (model or name).strip(),
        "input_per_1m": _price(input_per_1m, "input_per_1m"),
        "output_per_1m": _price(output_per_1m, "output_per_1m"),
        "quality": parse_quality(quality),
        "source": (source or "").strip(),
        "date": date or _dt.date.today().isoformat(),
        "context_length": int(context_length) if context_length else None,
        "api_base": api_base,
        "added": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if not row["source"]:
        raise UserError("a list price needs its source (URL or document)", field="source")
    try:
        _dt.date.fromisoformat(row["date"])
    except ValueError:
        raise UserError(f"date '{row['date']}' is not YYYY-MM-DD", field="date") from None
    cat.ensure_schema(SCHEMA)
    with cat.connect() as con:
        con.execute(
            "INSERT OR REPLACE INTO router_external VALUES (?,?,?,?,?,?,?,?,?,?)",
            (row["name"], row["model"], row["input_per_1m"], row["output_per_1m"], json.dumps(row["quality"]),
             row["source"], row["date"], row["context_length"], row["api_base"], row["added"]),
        )  # fmt: skip
        con.commit()
    return row


def list_external(cat: Any) -> list[dict[str, Any]]:
    cat.ensure_schema(SCHEMA)
    with cat.connect() as con:
        cur = con.execute("SELECT * FROM router_external ORDER BY name")
        cols = [d[0] for d in cur.description]
        rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    for r in rows:
        r["quality"] = json.loads(r["quality"])
    return rows


def to_target(row: dict[str, Any]) -> RoutingTarget:
    return RoutingTarget(
        id=row["name"],
        kind="external",
        variant=row["name"],
        target="external",
        base_model=row["model"],
        method="external API",
        recipe_tier=None,
        context_length=row.get("context_length"),
        usd_per_1m_input=float(row["input_per_1m"]),
        usd_per_1m_output=float(row["output_per_1m"]),
        price_kind="list",
        price_source=f"list price: {row['source']}",
        price_date=row["date"],
        quality=dict(row["quality"]),
        quality_kind="declared",
        model=row["model"],
        api_base=row.get("api_base"),
        created=row.get("added"),
    )
