"""slimserve: build, benchmark and price compressed local LLM variants as routing targets.

The top-level functions import their modules lazily so `import slimserve` stays fast.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["build", "load", "bench"]


def build(recipe, **kwargs):
    from .builder import build as _build

    return _build(recipe, **kwargs)


def load(path, **kwargs):
    from .loaders import load as _load

    return _load(path, **kwargs)


def bench(variants=None, **kwargs):
    from .bench.api import bench as _bench

    return _bench(variants, **kwargs)
