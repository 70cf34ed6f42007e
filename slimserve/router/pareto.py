"""Pareto front of cost vs quality: pure functions on (id, cost, quality) points.

A point dominates another when it costs no more and is no worse, and is strictly better on at least one axis.
Exact ties (same cost, same quality) dominate neither way, so both stay on the front.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Point:
    id: str
    cost: float  # lower is better
    quality: float  # higher is better (callers orient lower-is-better metrics first)


def dominates(a: Point, b: Point) -> bool:
    return a.cost <= b.cost and a.quality >= b.quality and (a.cost < b.cost or a.quality > b.quality)


def dominated_by(points: list[Point]) -> dict[str, str | None]:
    """id -> id of the cheapest point that dominates it (None when it is on the front)."""
    out: dict[str, str | None] = {}
    ordered = sorted(points, key=lambda p: (p.cost, -p.quality, p.id))
    for p in points:
        out[p.id] = next((q.id for q in ordered if dominates(q, p)), None)
    return out


def front(points: list[Point]) -> list[Point]:
    """Non-dominated points, cheapest first (ties by higher quality, then id)."""
    dom = dominated_by(points)
    return sorted((p for p in points if dom[p.id] is None), key=lambda p: (p.cost, -p.quality, p.id))
