"""The routing gateway: routers over the catalog's tiers, a semantic cache, RouteLLM-style evaluation, and an
OpenAI-compatible server (`slimserve route init|fit|eval|serve|cache-eval`).

It sits above slimserve.router (tiers, prices), slimserve.catalog and slimserve.serve.protocol; nothing below
imports it. Heavy parts (torch, transformers, FastAPI, LiteLLM) load inside the modules that need them.
"""

from __future__ import annotations

from .config import GatewayConfig, load_config

__all__ = ["GatewayConfig", "load_config"]
