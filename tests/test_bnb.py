"""bitsandbytes int8 / NF4 / FP4 on a tiny random Llama: quantized modules, reload, missing package."""

import importlib.util

import pytest
import torch
from pydantic import ValidationError

from slimserve.errors import DependencyError
from slimserve.quant import bnb

from ._compress_helpers import context, tiny_llama

HAVE_BNB = importlib.util.find_spec("bitsandbytes") is not None


@pytest.mark.skipif(not HAVE_BNB, reason="bitsandbytes is not installed")
@pytest.mark.parametrize("scheme,dq", [("int8", False), ("nf4", True), ("fp4", False)])
def test_bnb_quantizes_and_reloads(tmp_path, scheme, dq):
    from transformers import AutoModelForCausalLM

    model = tiny_llama(hidden=128, inter=256)
    ids = torch.randint(0, 256, (1, 16))
    with torch.no_grad():
        ref = model(ids).logits
    ctx = context(tmp_path)
    q = bnb.apply(model, bnb.BnBConfig(scheme=scheme, double_quant=dq), ctx)
    kinds = {type(m).__name__ for m in q.model.layers.modules()}
    assert ("Linear8bitLt" if scheme == "int8" else "Linear4bit") in kinds
    assert ctx.artifact_format == "bitsandbytes" and ctx.records["quantized_linears"] == 14
    assert "lm_head" in ctx.skipped and type(q.lm_head).__name__ == "Linear"
    with torch.no_grad():
        out = q(ids).logits
    assert torch.isfinite(out).all() and (out - ref).abs().max() < 0.5
    q.save_pretrained(tmp_path / "v")
    # bitsandbytes loads non-quantized tensors in float16 unless told otherwise.
    back = AutoModelForCausalLM.from_pretrained(tmp_path / "v", device_map="cpu", dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(back(ids).logits, out)


def test_missing_bitsandbytes_is_a_dependency_error(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "bitsandbytes" else real(n, *a))
    with pytest.raises(DependencyError, match="pip install bitsandbytes"):
        bnb.apply(tiny_llama(), bnb.BnBConfig(), context(tmp_path))


def test_double_quant_is_for_4bit_only():
    with pytest.raises(ValidationError, match="4-bit"):
        bnb.BnBConfig(scheme="int8", double_quant=True)
