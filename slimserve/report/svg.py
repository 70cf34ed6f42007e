"""Tiny inline-SVG scatter plots (no plotting library, no network): pure functions from points to SVG text."""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

COLORS = {
    "leader": "#1b7f3b",
    "member": "#4f9d69",
    "dominated": "#c0392b",
    "below_floor": "#8e8e8e",
    "unrated": "#8e8e8e",
}


@dataclass
class Dot:
    label: str
    x: float
    y: float
    status: str
    title: str = ""


def _ticks(lo: float, hi: float, log: bool, n: int = 5) -> list[float]:
    if log:
        a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
        return [10.0**e for e in range(a, b + 1)]
    if hi == lo:
        return [lo]
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for m in (1, 2, 5, 10):
        if (hi - lo) / (step * m) <= n:
            step *= m
            break
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) < 0.01:
        return f"{v:.2g}"
    return f"{v:.3g}"


def _frame(xs, ys, *, log: bool, x_label: str, y_label: str, plot_id: str, width: int, height: int, y_pad=0.1):
    """The plot's box, grid, ticks and axis labels; (svg parts, x->px, y->px)."""
    ml, mr, mt, mb = 70, 20, 20, 50
    x0, x1 = min(xs), max(xs)
    if log:
        x0, x1 = x0 / 1.5, x1 * 1.5
    else:
        pad = (x1 - x0) * 0.08 or abs(x0) * 0.1 or 1.0
        x0, x1 = max(0.0, x0 - pad), x1 + pad
    y0, y1 = min(ys), max(ys)
    pad = (y1 - y0) * y_pad or abs(y0) * 0.05 or 0.05
    y0, y1 = y0 - pad, y1 + pad

    def px(x: float) -> float:
        t = (math.log10(x) - math.log10(x0)) / (math.log10(x1) - math.log10(x0)) if log else (x - x0) / (x1 - x0)
        return ml + t * (width - ml - mr)

    def py(y: float) -> float:
        return height - mb - (y - y0) / (y1 - y0) * (height - mt - mb)

    out = [
        f'<svg id="{plot_id}" class="plot" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(y_label)} vs {escape(x_label)}">',
        f'<rect x="{ml}" y="{mt}" width="{width - ml - mr}" height="{height - mt - mb}" fill="#fafafa" stroke="#999"/>',
    ]
    for t in _ticks(max(x0, 1e-12) if log else x0, x1, log):
        if x0 <= t <= x1:
            out.append(f'<line x1="{px(t):.1f}" y1="{mt}" x2="{px(t):.1f}" y2="{height - mb}" stroke="#e3e3e3"/>')
            out.append(
                f'<text x="{px(t):.1f}" y="{height - mb + 16}" text-anchor="middle" class="tick">{_fmt(t)}</text>'
            )
    for t in _ticks(y0, y1, False):
        out.append(f'<line x1="{ml}" y1="{py(t):.1f}" x2="{width - mr}" y2="{py(t):.1f}" stroke="#e3e3e3"/>')
        out.append(f'<text x="{ml - 6}" y="{py(t) + 4:.1f}" text-anchor="end" class="tick">{_fmt(t)}</text>')
    out.append(
        f'<text x="{(ml + width - mr) / 2}" y="{height - 12}" text-anchor="middle" class="axis">'
        f"{escape(x_label)}{' (log scale)' if log else ''}</text>"
    )
    out.append(
        f'<text x="16" y="{(mt + height - mb) / 2}" text-anchor="middle" class="axis" '
        f'transform="rotate(-90 16 {(mt + height - mb) / 2})">{escape(y_label)}</text>'
    )
    return out, px, py


LINE_COLORS = ("#2c6fbb", "#1b7f3b", "#c0392b", "#8e44ad", "#d35400", "#16a085", "#7f8c8d")


def lines(
    series: list[tuple[str, list[tuple[float, float]]]],
    *,
    x_label: str,
    y_label: str,
    plot_id: str,
    dashed: tuple[str, ...] = (),
    width: int = 640,
    height: int = 400,
) -> str:
    """SVG line plot, one polyline per (name, points) with a legend; names in `dashed` are drawn dashed."""
    pts = [p for _, ps in series for p in ps]
    if not pts:
        return f'<p class="empty" id="{plot_id}">nothing to plot</p>'
    out, px, py = _frame([p[0] for p in pts], [p[1] for p in pts], log=False, x_label=x_label, y_label=y_label,
                         plot_id=plot_id, width=width, height=height)  # fmt: skip
    for i, (name, ps) in enumerate(series):
        c = LINE_COLORS[i % len(LINE_COLORS)]
        d = "".join(f"{'M' if j == 0 else 'L'}{px(x):.1f},{py(y):.1f}" for j, (x, y) in enumerate(ps))
        dash = ' stroke-dasharray="6 3"' if name in dashed else ""
        out.append(f'<g class="series"><title>{escape(name)}</title><path d="{d}" fill="none" stroke="{c}" '
                   f'stroke-width="2"{dash}/></g>')  # fmt: skip
        out.append(f'<text x="{80}" y="{34 + 14 * i}" class="label" fill="{c}">{escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def scatter(
    dots: list[Dot],
    *,
    x_label: str,
    y_label: str,
    front: list[tuple[float, float]] | None = None,
    plot_id: str,
    width: int = 640,
    height: int = 400,
) -> str:
    """SVG scatter; x goes log-scale when its values span more than 20x. `front` is drawn as a step line."""
    if not dots:
        return f'<p class="empty" id="{plot_id}">nothing to plot</p>'
    xs = [d.x for d in dots]
    log = min(xs) > 0 and max(xs) / min(xs) > 20
    out, px, py = _frame(xs, [d.y for d in dots], log=log, x_label=x_label, y_label=y_label, plot_id=plot_id,
                         width=width, height=height)  # fmt: skip
    ml, mr = 70, 20
    if front and len(front) >= 1:
        pts = sorted(front)
        path = [f"M{px(pts[0][0]):.1f},{py(pts[0][1]):.1f}"]
        for b in pts[1:]:
            path.append(f"H{px(b[0]):.1f}V{py(b[1]):.1f}")
        out.append(f'<path class="front" d="{"".join(path)}" fill="none" stroke="#1b7f3b" stroke-width="2" '
                   f'stroke-dasharray="6 3"/>')  # fmt: skip
    for d in dots:
        c = COLORS.get(d.status, "#2c6fbb")
        tip = escape(d.title or d.label)
        right = px(d.x) > ml + 0.6 * (width - ml - mr)  # label on the left near the right edge, so it is not cut
        lx, anchor = (px(d.x) - 8, "end") if right else (px(d.x) + 8, "start")
        out.append(
            f'<g class="dot {escape(d.status)}"><title>{tip}</title>'
            f'<circle cx="{px(d.x):.1f}" cy="{py(d.y):.1f}" r="6" fill="{c}" stroke="#222" stroke-width="0.8"/>'
            f'<text x="{lx:.1f}" y="{py(d.y) - 8:.1f}" text-anchor="{anchor}" class="label">{escape(d.label)}</text></g>'
        )
    out.append("</svg>")
    return "\n".join(out)
