"""RowBatch: rows of different lengths joining and leaving a running batch decode exactly as each alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from slimserve.onnx.batch import RowBatch  # noqa: E402
from slimserve.onnx.export import export_fused  # noqa: E402
from slimserve.onnx.graph import float_plan  # noqa: E402
from slimserve.onnx.runtime import OrtRunner  # noqa: E402

from ._onnx_helpers import tiny_model  # noqa: E402


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    d = tmp_path_factory.mktemp("batch")
    return OrtRunner(export_fused(tiny_model(), d, float_plan), None, threads=1)


def _alone(runner, ids: list[int], n: int) -> list[int]:
    return runner.generate(torch.tensor([ids]), n).tokens[0].tolist()


def test_joining_and_leaving_rows_match_single_decodes(runner):
    rng = np.random.default_rng(0)
    prompts = [rng.integers(3, 250, size=k).tolist() for k in (5, 17, 9, 30)]
    want = {i: _alone(runner, p, 12) for i, p in enumerate(prompts)}
    batch = RowBatch(runner, slots=3, capacity=64)
    got: dict[int, list[int]] = {}
    row_of: dict[int, int] = {}  # request -> row

    def join(i):
        r, logits = batch.add(prompts[i])
        row_of[i] = r
        got[i] = [int(logits.argmax())]

    join(0)
    join(1)
    for step in range(30):
        if step == 3:
            join(2)  # joins mid-flight with its own length
        if step >= 6 and 3 not in got and len(row_of) < 3:
            join(3)  # takes the first row freed
        live = sorted(row_of, key=row_of.get)
        toks = np.array([got[i][-1] for i in live])
        logits = batch.step(toks)
        for i, lg in zip(live, logits, strict=True):
            got[i].append(int(lg.argmax()))
        for i in live:
            if len(got[i]) == 12:  # leave; the last row moves into the freed one
                r = row_of.pop(i)
                moved = batch.remove(r)
                for j, rj in row_of.items():
                    if rj == moved:
                        row_of[j] = r
        if not row_of and 3 in got:
            break
    assert got == want
    assert batch.n == 0
