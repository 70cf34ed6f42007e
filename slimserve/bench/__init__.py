"""Benchmark harness: targets x scenarios (speed, quality) -> BenchRecords, priced per token and stored in the catalog.

`slimserve.bench(...)` and `slimserve.bench.bench(...)` are the same call (see api.bench); heavy modules load lazily.
"""

from __future__ import annotations

import sys
import types
from typing import Any


def bench(*args: Any, **kwargs: Any) -> Any:
    """Run api.bench (imported on first use so `import slimserve` stays fast)."""
    from .api import bench as _bench

    return _bench(*args, **kwargs)


class _CallablePackage(types.ModuleType):
    """Lets the package itself be called: slimserve.bench(["smollm2-int4-g128"], target="cpu")."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return bench(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
