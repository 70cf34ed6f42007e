"""Tiny random Llama models for the ONNX tests (in memory, seconds)."""

from __future__ import annotations

import torch


def tiny_model(seed: int = 0, **overrides):
    """slimserve.testing's tiny Llama with initializer_range 0.2, so greedy decoding does not collapse."""
    from slimserve.testing import tiny_llama

    return tiny_llama(seed, **{"max_position_embeddings": 256, "initializer_range": 0.2, **overrides})


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def hf_greedy(model, ids: torch.Tensor, n: int) -> torch.Tensor:
    out = model.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=2
    )
    return out[:, ids.shape[1] :]


def batch_vs_alone(runner, prompts: list[list[int]], n: int = 12, slots: int = 3, capacity: int = 64):
    """Decode each prompt alone, then all of them through one RowBatch whose rows join mid-flight and leave when
    done (the last row moving into the freed one); returns (batch tokens, alone tokens, the batch) per prompt.

    prompts[2] joins at step 3 with its own length; prompts[3] takes the first row freed after step 6.
    """
    import numpy as np

    from slimserve.onnx.batch import RowBatch

    want = {i: runner.generate(torch.tensor([p]), n).tokens[0].tolist() for i, p in enumerate(prompts)}
    batch = RowBatch(runner, slots=slots, capacity=capacity)
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
        if step >= 6 and 3 not in got and len(row_of) < slots:
            join(3)  # takes the first row freed
        live = sorted(row_of, key=row_of.get)
        logits = batch.step(np.array([got[i][-1] for i in live]))
        for i, lg in zip(live, logits, strict=True):
            got[i].append(int(lg.argmax()))
        for i in live:
            if len(got[i]) == n:  # leave; the last row moves into the freed one
                r = row_of.pop(i)
                moved = batch.remove(r)
                for j, rj in row_of.items():
                    if rj == moved:
                        row_of[j] = r
        if not row_of and 3 in got:
            break
    return got, want, batch
