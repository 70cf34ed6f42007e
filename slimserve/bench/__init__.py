"""Benchmark harness: targets x scenarios -> BenchRecords in the catalog index.

`slimserve.bench(...)` is both this package and the API call: the package is made callable so
`import slimserve.bench.store` and `slimserve.bench(["v"], target="cpu")` coexist.
"""

from __future__ import annotations

import sys
import types


def bench(variants=None, **kwargs):
    """See slimserve.bench.api.bench."""
    from .api import bench as _bench

    return _bench(variants, **kwargs)


class _CallablePackage(types.ModuleType):
    def __call__(self, variants=None, **kwargs):
        return bench(variants, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
