"""The catalog report as one self-contained HTML page: inline SVG plots, inline CSS/JS, no network."""

from __future__ import annotations

import json
from html import escape
from typing import Any

from ..router import metrics
from ..router.entries import RoutingTarget
from ..router.tiers import Assignment
from .svg import Dot, scatter

CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
.plots{display:flex;flex-wrap:wrap;gap:24px}.tick{font-size:11px;fill:#555}.axis{font-size:12px;fill:#222}
.label{font-size:11px;fill:#222}table{border-collapse:collapse;font-size:13px}
th,td{border:1px solid #ccc;padding:4px 6px;text-align:right}th{background:#f0f0f0;cursor:pointer;user-select:none}
td.l,th.l{text-align:left}td{white-space:nowrap}.dominated td{color:#c0392b}.note{color:#666;font-size:13px}
td.w{white-space:normal;overflow-wrap:break-word;min-width:9em;max-width:18em}#details td.w,#tiers td.w{max-width:48em}
.legend span{display:inline-block;margin-right:14px}.sw{display:inline-block;width:10px;height:10px;
border-radius:5px;margin-right:4px;vertical-align:middle}code{background:#f4f4f4;padding:1px 4px;overflow-wrap:anywhere}
"""

# Sort a table by the clicked column; numbers numerically, blanks last.
JS = """
document.querySelectorAll('table.sortable th').forEach(function(th, i){
  th.addEventListener('click', function(){
    var tb = th.closest('table').tBodies[0], rows = Array.from(tb.rows);
    var asc = th.dataset.dir !== 'asc'; th.dataset.dir = asc ? 'asc' : 'desc';
    rows.sort(function(a, b){
      var x = a.cells[i].dataset.v ?? a.cells[i].textContent, y = b.cells[i].dataset.v ?? b.cells[i].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      if (x === '') return 1; if (y === '') return -1;
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? c : -c;
    });
    rows.forEach(function(r){ tb.appendChild(r); });
  });
});
"""

# The page must fit a 1400 px window: the numbers table holds short cells only (long status text wraps, class "w"),
# and the long text (method, price source) sits in a second table keyed by the same id.
# (header, css class, tooltip naming what the short header means)
COLUMNS = [
    ("id", "l", None),
    ("kind", "l", None),
    ("target", "l", None),
    ("tier", "l", None),
    ("status", "l w", "leader / member of its tiers, dominated (by a target that is cheaper and better), below floor"),
    ("$/1M in", "", "USD per 1M input tokens"),
    ("$/1M out", "", "USD per 1M output tokens"),
    ("blended $/1M", "", "USD per 1M tokens at the report's input/output mix"),
    ("top1", "", "top-1 token agreement with the reference"),
    ("kld", "", "KL divergence from the reference"),
    ("ppl Δ", "", "relative perplexity increase over the reference"),
    ("mc mean", "", "mean multiple-choice accuracy"),
    ("TTFT p50 s", "", "time to first token, median, seconds"),
    ("ITL p50 ms", "", "inter-token latency, median, ms"),
    ("ITL p99 ms", "", "inter-token latency, 99th percentile, ms"),
    ("bits/w", "", "stored bits per weight"),
]
DETAIL_COLUMNS = [("id", "l", None), ("method", "l w", None), ("price source", "l w", None)]


def _num(v: Any, fmt: str = "{:.4g}") -> tuple[str, str]:
    if v is None:
        return "", ""
    return fmt.format(v), repr(float(v))


def _row(t: RoutingTarget, a: Assignment) -> str:
    st = a.status.get(t.id, {})
    tier = ", ".join(st.get("tiers") or []) or ""
    status = st.get("status", "")
    if st.get("dominated_by"):
        status += f" by {st['dominated_by']}"
    if st.get("gate") == "rejected":
        status += " (rejected by its gates, kept)"
    q, lat = t.quality, t.latency
    cells = [
        (t.id, None),
        (t.kind, None),
        (t.target, None),
        (tier, None),
        (status, None),
        _num(t.usd_per_1m_input, "{:.4f}"),
        _num(t.usd_per_1m_output, "{:.4f}"),
        _num(st.get("cost"), "{:.4f}"),
        _num(q.get("top1")),
        _num(q.get("kld")),
        _num(q.get("ppl_delta")),
        _num(q.get("mc_mean")),
        _num(lat.get("ttft_p50_s")),
        _num(lat.get("itl_p50_ms")),
        _num(lat.get("itl_p99_ms")),
        _num(t.bits_per_weight, "{:.3g}"),
    ]
    return _tr(cells, COLUMNS, st.get("status", ""))


def _detail_row(t: RoutingTarget) -> str:
    price = f"{t.price_kind}: {t.price_source}" + (f" ({t.price_date})" if t.price_date else "")
    return _tr([(t.id, None), (t.method, None), (price, None)], DETAIL_COLUMNS, "")


def _tr(cells: list[tuple[str, str | None]], columns: list[tuple[str, str, str | None]], row_class: str) -> str:
    tds = []
    for (text, val), (_, cls, _tip) in zip(cells, columns, strict=True):
        attr = f' data-v="{escape(val)}"' if val is not None else ""
        tds.append(f'<td class="{cls}"{attr}>{escape(str(text))}</td>')
    return f'<tr class="{escape(row_class)}">' + "".join(tds) + "</tr>"


def _head(columns: list[tuple[str, str, str | None]]) -> str:
    return "".join(
        f'<th class="{c}"' + (f' title="{escape(tip)}"' if tip else "") + f">{escape(n)}</th>" for n, c, tip in columns
    )


def _task_plots(targets: list[RoutingTarget], a: Assignment, *, exclude: str, limit: int = 2) -> str:
    """Cost vs each multiple-choice task that two or more targets report (where declared external models show up)."""
    tasks: dict[str, list[RoutingTarget]] = {}
    for t in targets:
        for k in t.quality:
            if k.startswith("mc:") and k != exclude:
                tasks.setdefault(k, []).append(t)
    plots = []
    for k, ts in sorted(tasks.items(), key=lambda kv: -len(kv[1]))[:limit]:
        if len(ts) < 2:
            continue
        dots = [Dot(t.id, a.status[t.id]["cost"], t.quality[k], a.status[t.id]["status"]) for t in ts]
        slug = "".join(c if c.isalnum() else "-" for c in k)
        plots.append(scatter(dots, x_label="blended $ per 1M tokens", y_label=f"{k} accuracy", plot_id=f"cost-{slug}"))
    return "".join(plots)


def _rejected_rows(rejected: list[RoutingTarget], kept: set[str]) -> str:
    """One row per target its gates rejected: the run, each failing check, and whether it was kept."""
    from ..gates import GateResult

    rows = []
    for t in rejected:
        g = GateResult.from_dict(t.gate)
        failing = "; ".join(c.describe() for c in g.checks if not c.ok) or (g.reason or "")
        where = f"{g.eval_text}, {g.tokens} tokens" if g.eval_text else ""
        fate = "kept (--include-rejected)" if t.id in kept else "left out"
        rows.append(
            f"<tr><td class='l'>{escape(t.id)}</td><td class='l'>{escape(str(g.run_id))}</td>"
            f"<td class='l w'>{escape(failing)}</td><td class='l w'>{escape(where)}</td><td class='l'>{fate}</td></tr>"
        )
    return "".join(rows)


def _rejected_html(rejected: list[RoutingTarget], kept: set[str]) -> str:
    if not rejected:
        return "<p class='note'>No target's latest benchmark failed its recipe's quality gates.</p>"
    head = "".join(f"<th class='l'>{h}</th>" for h in ("id", "run", "failing checks", "measured on", ""))
    return (
        "<p class='note'>Targets whose latest benchmark failed their recipe's gates are left out of the tiers, "
        "plots and exports unless <code>--include-rejected</code>.</p>"
        f"<table id='rejected'><thead><tr>{head}</tr></thead><tbody>{_rejected_rows(rejected, kept)}</tbody></table>"
    )


def _tiers_html(a: Assignment, notes: list[str]) -> str:
    rows = "".join(
        f"<tr><td class='l'>{escape(tr.name)}</td><td>{'' if tr.floor is None else tr.floor}</td>"
        f"<td class='l'>{escape(tr.kind)}</td><td class='l'>{escape(tr.leader)}</td>"
        f"<td class='l'>{escape(tr.borrowed_from or '')}</td>"
        f"<td class='l w'>{escape(', '.join(tr.members))}</td></tr>"
        for tr in a.tiers
    )
    head = "".join(
        f"<th class='{c}'>{h}</th>"
        for h, c in (("tier", "l"), ("floor", ""), ("kind", "l"), ("leader", "l"), ("borrowed from", "l"),
                     ("members", "l"))
    )  # fmt: skip
    items = "".join(f"<li>{escape(n)}</li>" for n in [*a.notes, *notes])
    return f"<table id='tiers'><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>" + (
        f"<ul class='note' id='tier-notes'>{items}</ul>" if items else ""
    )


def render(
    targets: list[RoutingTarget],
    a: Assignment,
    *,
    skipped: list[str],
    generated: str,
    catalog: str,
    rejected: list[RoutingTarget] = (),
    notes: list[str] = (),
    routing: str = "",
) -> str:
    m = a.metric
    rated = [t for t in targets if m in t.quality]
    dots = [
        Dot(t.id, a.status[t.id]["cost"], t.quality[m], a.status[t.id]["status"],
            f"{t.id}: ${a.status[t.id]['cost']:.4f}/1M blended, {m}={t.quality[m]:.4g}, {a.status[t.id]['status']}")
        for t in rated
    ]  # fmt: skip
    front = [(a.status[t.id]["cost"], t.quality[m]) for t in rated if a.status[t.id].get("on_front")]
    direction = "higher is better" if metrics.higher_is_better(m) else "lower is better"
    cost_plot = scatter(
        dots,
        x_label=f"blended $ per 1M tokens ({a.blend_input_share:.0%} input)",
        y_label=f"{m} ({direction})",
        front=front if metrics.higher_is_better(m) else None,
        plot_id="cost-quality",
    )
    lat = [t for t in rated if "itl_p50_ms" in t.latency]
    lat_plot = scatter(
        [Dot(t.id, t.latency["itl_p50_ms"], t.quality[m], a.status[t.id]["status"]) for t in lat],
        x_label="inter-token latency p50 (ms)",
        y_label=f"{m} ({direction})",
        plot_id="latency-quality",
    )
    extra_plots = _task_plots(targets, a, exclude=m)
    off_plot = [t.id for t in targets if m not in t.quality]
    tiers = _tiers_html(a, list(notes))
    rejected_html = _rejected_html(list(rejected), {t.id for t in targets})
    fps: dict[str, dict] = {}
    cmds = []
    for t in targets:
        if t.fingerprint:
            key = json.dumps({k: v for k, v in t.fingerprint.items() if k != "command"}, sort_keys=True)
            fps.setdefault(key, {"fp": t.fingerprint, "targets": []})["targets"].append(t.id)
            cmds.append((t.id, t.run_id, t.fingerprint.get("command", "")))
    fp_html = "".join(
        "<li><b>{}</b>: {} ({} cores, {} threads{}), flags {}; versions {}<br><span class='note'>targets: {}</span></li>".format(
            escape(str(f["fp"].get("hardware_key"))),
            escape(str(f["fp"].get("cpu_model"))),
            f["fp"].get("cores"),
            f["fp"].get("threads"),
            escape(f", GPU {f['fp']['gpu_name']}" if f["fp"].get("gpu_name") else ""),
            escape(", ".join(f["fp"].get("cpu_flags") or [])),
            escape(", ".join(f"{k} {v}" for k, v in (f["fp"].get("versions") or {}).items())),
            escape(", ".join(f["targets"])),
        )
        for f in fps.values()
    )
    cmd_html = "".join(
        f"<li><b>{escape(tid)}</b> (run {escape(str(rid))}): <code>{escape(str(c))}</code></li>" for tid, rid, c in cmds
    )
    legend = "".join(
        f'<span><i class="sw" style="background:{c}"></i>{s}</span>'
        for s, c in (("leader", "#1b7f3b"), ("member", "#4f9d69"), ("dominated", "#c0392b"), ("below floor", "#8e8e8e"))
    )
    head, rows = _head(COLUMNS), "".join(_row(t, a) for t in targets)
    details = _head(DETAIL_COLUMNS), "".join(_detail_row(t) for t in targets)
    skipped_html = "".join(f"<li>{escape(s)}</li>" for s in skipped) or "<li>none</li>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>slimserve catalog report</title>
<style>{CSS}</style></head><body>
<h1>slimserve catalog report</h1>
<p class="note">Catalog <code>{escape(catalog)}</code>, generated {escape(generated)}. Quality axis: <b>{escape(m)}</b>
({direction}); cost axis: blended $/1M tokens = {a.blend_input_share:g} × input + {1 - a.blend_input_share:g} × output.
Local prices are measured (benchmarked throughput × hourly price); external prices are list prices. Tiers: {escape(a.source)}.</p>
<h2>Cost vs quality</h2>
<div class="legend">{legend}<span>dashed line: Pareto front</span></div>
<div class="plots">{cost_plot}{lat_plot}{extra_plots}</div>
<p class="note">Not on the {escape(m)} plots (no {escape(m)} value): {escape(", ".join(off_plot) or "none")}.
The latency plot shows local targets with a measured inter-token latency.</p>
<h2>Tiers</h2>
{tiers}
<h2>Routing: call-performance curves</h2>
{routing or "<p class='note'>none</p>"}
<h2>Targets</h2>
<p class="note">Click a column header to sort; hover over it for what it measures.</p>
<table class="sortable" id="targets"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>
<h2>Methods and prices</h2>
<table class="sortable" id="details"><thead><tr>{details[0]}</tr></thead><tbody>{details[1]}</tbody></table>
<h2>Rejected by quality gates</h2>
{rejected_html}
<h2>Left out</h2><ul>{skipped_html}</ul>
<h2>Hardware fingerprints</h2><ul>{fp_html or "<li>none</li>"}</ul>
<h2>Commands behind the numbers</h2><ul>{cmd_html or "<li>none</li>"}</ul>
<script>{JS}</script>
</body></html>
"""
