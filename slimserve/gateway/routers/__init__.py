"""Routers, one module per kind, registered in ROUTERS by kind; `build_router(spec, ctx)` makes one."""

from __future__ import annotations

from . import cascade, random, rules, semantic, threshold  # noqa: F401  (each registers its kind)
from .base import ROUTERS, Decision, FitData, Request, Router, RouterContext


def build_router(spec, ctx: RouterContext) -> Router:
    return ROUTERS.get(spec.kind, field="kind")(spec, ctx)


__all__ = ["ROUTERS", "Decision", "FitData", "Request", "Router", "RouterContext", "build_router"]
