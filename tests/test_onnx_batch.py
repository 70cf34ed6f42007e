"""RowBatch: rows of different lengths joining and leaving a running batch decode exactly as each alone."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from slimserve.onnx.export import export_fused  # noqa: E402
from slimserve.onnx.graph import float_plan  # noqa: E402
from slimserve.onnx.runtime import OrtRunner  # noqa: E402

from ._onnx_helpers import batch_vs_alone, tiny_model  # noqa: E402


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    d = tmp_path_factory.mktemp("batch")
    return OrtRunner(export_fused(tiny_model(), d, float_plan), None, threads=1)


def test_joining_and_leaving_rows_match_single_decodes(runner):
    rng = np.random.default_rng(0)
    prompts = [rng.integers(3, 250, size=k).tolist() for k in (5, 17, 9, 30)]
    got, want, batch = batch_vs_alone(runner, prompts, 12)
    assert got == want
    assert batch.n == 0
