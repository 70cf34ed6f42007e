"""Terminal tables that never cut a name: drop low-priority columns to fit the width instead of truncating cells."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass

# Columns of `catalog list`, most important first; columns not named here come last, in first-seen order.
PRIORITY = (
    "name",
    "tier",
    "status",
    "format",
    "bits",
    "size_mb",
    "decode_tok_s",
    "usd_1m_out",
    "kld",
    "ppl",
    "usd_1m_in",
    "bench_target",
    "method",
    "params",
)
TEXT_COLUMNS = frozenset({"name", "tier", "status", "format", "method", "bench_target"})
GAP = 2  # spaces between columns in the plain layout


@dataclass(frozen=True)
class Layout:
    """Which columns to show, which were dropped to fit `width` (None: no limit), and the cell text."""

    columns: list[str]
    dropped: list[str]
    cells: list[list[str]]
    width: int | None


def fmt(v) -> str:
    """One cell: '-' for missing, 4 significant digits for floats, millions for large counts."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int) and not isinstance(v, bool) and v > 10**6:
        return f"{v / 1e6:.1f}M"
    return str(v)


def ordered_columns(rows: Sequence[dict], priority: Sequence[str] = PRIORITY) -> list[str]:
    """Every key present in rows, in priority order, unknown keys last."""
    present = list(dict.fromkeys(k for r in rows for k in r))
    rank = {c: i for i, c in enumerate(priority)}
    return sorted(present, key=lambda c: (rank.get(c, len(rank)), present.index(c)))


def plain_width(widths: Sequence[int]) -> int:
    return sum(widths) + GAP * max(len(widths) - 1, 0)


def fit(columns: Sequence[str], widths: dict[str, int], width: int | None) -> list[str]:
    """The longest priority prefix of columns whose total width fits; the first column is always kept."""
    if width is None:
        return list(columns)
    kept = list(columns)
    while len(kept) > 1 and plain_width([widths[c] for c in kept]) > width:
        kept.pop()
    return kept


def layout(rows: Sequence[dict], *, width: int | None, wide: bool = False) -> Layout:
    """Columns to show for `rows` at `width` (wide: all of them)."""
    columns = ordered_columns(rows)
    text = {c: [fmt(r.get(c)) for r in rows] for c in columns}
    widths = {c: max(len(c), *(len(t) for t in text[c])) for c in columns}
    kept = list(columns) if wide else fit(columns, widths, width)
    cells = [[text[c][i] for c in kept] for i in range(len(rows))]
    return Layout(kept, [c for c in columns if c not in kept], cells, None if wide else width)


def render_plain(lay: Layout) -> list[str]:
    """Aligned text, two spaces between columns: text left, numbers right. No box drawing, no colour."""
    widths = [max(len(c), *(len(r[i]) for r in lay.cells)) for i, c in enumerate(lay.columns)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            t.ljust(w) if c in TEXT_COLUMNS else t.rjust(w) for t, w, c in zip(cells, widths, lay.columns, strict=True)
        ]
        return (" " * GAP).join(parts).rstrip()

    return [line(lay.columns), *(line(r) for r in lay.cells)]


def footer(lay: Layout) -> str | None:
    """One line naming the dropped columns (as many as fit the width, then '+N more'), or None if none were."""
    if not lay.dropped:
        return None
    tail = "; --wide shows them"
    names = list(lay.dropped)
    for n in range(len(names), 0, -1):
        more = f", +{len(names) - n} more" if n < len(names) else ""
        text = f"hidden columns: {', '.join(names[:n])}{more}{tail}"
        if lay.width is None or len(text) <= lay.width or n == 1:
            return text
    return None  # unreachable: n == 1 always returns


def output_width(stream=None) -> int | None:
    """$COLUMNS if set, else the terminal's width; None (no limit) when writing to a pipe or file, like `ps`."""
    stream = stream or sys.stdout
    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    if stream.isatty():
        return shutil.get_terminal_size().columns
    return None


def print_table(rows: Sequence[dict], *, wide: bool = False, stream=None) -> Layout:
    """Print rows as aligned columns that fit the output width; a bold header on a terminal, plain text otherwise."""
    stream = stream or sys.stdout
    lay = layout(rows, width=output_width(stream), wide=wide)
    lines = render_plain(lay)
    note = footer(lay)
    if not stream.isatty():
        stream.write("\n".join([*lines, *([note] if note else [])]) + "\n")
        return lay
    from rich.console import Console
    from rich.text import Text

    # soft_wrap: rich never folds or crops a line (a --wide table scrolls in the terminal instead); styles honour
    # NO_COLOR and dumb terminals
    con = Console(file=stream, soft_wrap=True, highlight=False)
    con.print(Text(lines[0], style="bold"))
    for line in lines[1:]:
        con.print(Text(line))
    if note:
        con.print(Text(note, style="dim"))
    return lay
