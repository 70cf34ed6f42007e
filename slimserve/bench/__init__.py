"""Benchmark harness: targets x scenarios (speed, quality) -> BenchRecords, priced per token and stored in the catalog.

Heavy modules load lazily; `from slimserve.bench import bench` is the entry point.
"""

from __future__ import annotations

from typing import Any


def bench(*args: Any, **kwargs: Any):  # noqa: ANN201 - re-exported lazily to keep `import slimserve` fast
    from .api import bench as _bench

    return _bench(*args, **kwargs)
