"""slimserve: build, benchmark and price compressed local LLM variants as routing targets.

The top-level functions import their modules lazily so `import slimserve` stays fast.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["build", "load", "bench", "generate"]


def build(recipe, **kwargs):
    from .builder import build as _build

    return _build(recipe, **kwargs)


def load(path, **kwargs):
    from .artifact.loaders import load as _load

    return _load(path, **kwargs)


def __getattr__(name):
    if name in ("bench", "generate"):  # callable modules: slimserve.bench(variants, ...), slimserve.generate(v, p)
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'slimserve' has no attribute {name!r}")
