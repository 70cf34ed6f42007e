"""The report's routing section: the call-performance curves `slimserve route eval` stored in the catalog index.

It reads the `route_evals` rows as data (JSON written by the gateway's eval); it imports nothing from the gateway,
which sits above the report in the layers.
"""

from __future__ import annotations

import json
import sqlite3
from html import escape
from typing import Any

from .svg import lines


def stored_route_evals(cat: Any) -> list[dict]:
    """The newest eval per (config, dataset, split), oldest first; none when no eval was ever stored."""
    try:
        with cat.connect() as con:
            rows = con.execute("SELECT report FROM route_evals ORDER BY id").fetchall()
    except sqlite3.OperationalError:  # no such table: nothing was evaluated in this catalog
        return []
    latest: dict[tuple, dict] = {}
    for (text,) in rows:
        r = json.loads(text)
        latest[(r.get("config"), r.get("dataset"), r.get("split"))] = r
    return list(latest.values())


def _num(v, fmt="{:.3f}") -> str:
    return "-" if v is None else fmt.format(v)


def _share(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _one(i: int, r: dict) -> str:
    series = [(x["router"], [(p["share"], p["accuracy"]) for p in x.get("points", [])]) for x in r["routers"]]
    w, s = r["weak"], r["strong"]
    shares = [0.0, 1.0]
    series.append(("weak / strong alone", [(0.0, w["accuracy"]), (1.0, s["accuracy"])]))
    series.append(("oracle", [(x, r["oracle_accuracy"]) for x in shares]))
    plot = lines(series, x_label="share of calls to the strong tier", y_label=f"accuracy on {r['dataset']}",
                 plot_id=f"route-curve-{i}", dashed=("random", "weak / strong alone", "oracle"))  # fmt: skip
    rows = "".join(
        f"<tr><td>{escape(x['router'])}</td><td>{escape(x['kind'])}</td><td>{_num(x['apgr'])}</td>"
        f"<td>{_share(x['cpt50'])}</td><td>{_share(x['cpt80'])}</td><td>{_num(x['usd_per_1m_at_cpt50'], '{:.4f}')}</td>"
        f"<td>{escape(x.get('note') or '')}</td></tr>"
        for x in r["routers"]
    )
    head = (f"<p class='note'><b>{escape(r['dataset'])}</b>, {escape(r['split'])} split n={r['n_test']} (fit on "
            f"n={r.get('n_train') or '-'}); weak {escape(str(w['tier']))} accuracy {w['accuracy']:.3f}, strong "
            f"{escape(str(s['tier']))} accuracy {s['accuracy']:.3f}, oracle {r['oracle_accuracy']:.3f}. "
            f"Command: <code>{escape(str(r.get('command') or '-'))}</code> ({escape(str(r.get('created')))})</p>")  # fmt: skip
    table = ("<table><thead><tr><th>router</th><th>kind</th><th>APGR</th><th>CPT(50%)</th><th>CPT(80%)</th>"
             f"<th>$/1M at CPT(50%)</th><th>note</th></tr></thead><tbody>{rows}</tbody></table>")  # fmt: skip
    return head + f'<div class="plots">{plot}</div>' + table


def routing_html(cat: Any) -> str:
    evals = stored_route_evals(cat)
    if not evals:
        return "<p class='note'>No routing evaluation stored yet: <code>slimserve route eval ROUTER.yaml</code>.</p>"
    return "".join(_one(i, r) for i, r in enumerate(evals))
