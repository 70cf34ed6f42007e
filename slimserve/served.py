"""Where the catalog's variants are being served: `served` records (endpoint, variant, target, pid) in its index.

`slimserve serve` adds one record per variant when it is ready and removes them on shutdown. A record whose process
is gone (killed without a shutdown) is ignored and pruned on the next write, so exports never point at a dead server.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from typing import Any

from .util import pid_alive

SCHEMA = """
CREATE TABLE IF NOT EXISTS served (
    endpoint TEXT NOT NULL,
    variant TEXT NOT NULL,
    target TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    PRIMARY KEY (endpoint, variant)
);
"""


@dataclass(frozen=True)
class Served:
    endpoint: str  # the OpenAI-compatible base URL, ending in /v1
    variant: str
    target: str
    pid: int
    started_at: str


def add(cat: Any, endpoint: str, rows: list[tuple[str, str]], pid: int | None = None) -> None:
    """Record that (variant, target) pairs are served at endpoint by pid (default: this process)."""
    cat.ensure_schema(SCHEMA)
    pid = os.getpid() if pid is None else pid
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    with cat.transaction() as con:
        _prune(con)
        for variant, target in rows:
            con.execute(
                "INSERT OR REPLACE INTO served (endpoint, variant, target, pid, started_at) VALUES (?, ?, ?, ?, ?)",
                (endpoint, variant, target, pid, now),
            )


def remove(cat: Any, pid: int | None = None) -> None:
    """Drop the records of pid (default: this process)."""
    cat.ensure_schema(SCHEMA)
    with cat.transaction() as con:
        con.execute("DELETE FROM served WHERE pid = ?", (os.getpid() if pid is None else pid,))


def live(cat: Any) -> list[Served]:
    """Records whose serving process is still running, newest first."""
    cat.ensure_schema(SCHEMA)
    with cat.connect() as con:
        rows = con.execute("SELECT * FROM served ORDER BY started_at DESC, endpoint").fetchall()
    return [Served(**dict(r)) for r in rows if pid_alive(int(r["pid"]))]


def live_endpoint(cat: Any) -> str | None:
    """The endpoint of the most recently started live server, if any."""
    rows = live(cat)
    return rows[0].endpoint if rows else None


def _prune(con) -> None:
    for r in con.execute("SELECT DISTINCT pid FROM served").fetchall():
        if not pid_alive(int(r[0])):
            con.execute("DELETE FROM served WHERE pid = ?", (int(r[0]),))
