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
    # What the artifact must preserve: the stored codes, scales and quant state, bit for bit ...
    saved, loaded = q.state_dict(), back.state_dict()
    assert saved.keys() == loaded.keys()
    for k, v in saved.items():
        assert v.dtype == loaded[k].dtype and torch.equal(v, loaded[k]), k
    # ... and a reloaded model that computes with exactly those weights. bitsandbytes' CPU kernels change between
    # releases (LLM.int8 quantizes activations; 0.50 runs 4-bit matmuls in reduced precision, and the first forward
    # after quantizing takes another path), so logits are compared with a dense model of the dequantized weights.
    with torch.no_grad():
        got = back(ids).logits
        want = _densified(AutoModelForCausalLM.from_pretrained(tmp_path / "v", device_map="cpu", dtype=torch.float32))(
            ids
        ).logits
    assert (got - want).abs().max() <= 1e-2 * want.abs().max()


def _densified(model):
    """The model with every bitsandbytes Linear replaced (in place) by a float Linear of its dequantized weight."""
    import bitsandbytes.functional as F
    from torch import nn

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not type(child).__module__.startswith("bitsandbytes"):
                continue
            w = child.weight
            if getattr(w, "quant_state", None) is not None:
                wf = F.dequantize_4bit(w.data, w.quant_state).float()
            else:  # LLM.int8: int8 rows with one absmax scale each
                scb = w.SCB if getattr(w, "SCB", None) is not None else child.state.SCB
                wf = w.data.float() * (scb.float()[:, None] / 127.0)
            lin = nn.Linear(child.in_features, child.out_features, bias=child.bias is not None)
            lin.weight.data = wf
            if child.bias is not None:
                lin.bias.data = child.bias.data.float()
            setattr(parent, name, lin)
    return model


def test_missing_bitsandbytes_is_a_dependency_error(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "bitsandbytes" else real(n, *a))
    with pytest.raises(DependencyError, match="pip install bitsandbytes"):
        bnb.apply(tiny_llama(), bnb.BnBConfig(), context(tmp_path))


def test_double_quant_is_for_4bit_only():
    with pytest.raises(ValidationError, match="4-bit"):
        bnb.BnBConfig(scheme="int8", double_quant=True)
