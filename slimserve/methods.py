"""Registers every recipe method: its config class and its ``apply``. Add new methods to ``METHODS``.

The step registries (slimserve.steps.STEPS) import this module on their first lookup. Config classes are imported
then and must live in torch-free modules (validating a recipe imports no torch, transformers or onnx); ``apply`` is
imported on its first call.
"""

from __future__ import annotations

from .steps import register_step, resolve

# (step kind, method name, "module:ConfigClass", "module:apply")
METHODS = (
    ("quantize", "rtn", "slimserve.quant.configs:RTNConfig", "slimserve.quant.rtn:apply"),
    ("quantize", "gptq", "slimserve.quant.configs:GPTQConfig", "slimserve.quant.gptq:apply"),
    ("quantize", "awq", "slimserve.quant.configs:AWQConfig", "slimserve.quant.awq:apply"),
    ("quantize", "bitsandbytes", "slimserve.quant.configs:BnBConfig", "slimserve.quant.bnb:apply"),
    ("quantize", "smoothquant", "slimserve.quant.configs:SmoothQuantConfig", "slimserve.quant.smooth:apply"),
    ("prune", "structured", "slimserve.prune.configs:StructuredConfig", "slimserve.prune.structured:apply"),
    ("prune", "wanda", "slimserve.prune.configs:WandaConfig", "slimserve.prune.wanda:apply"),
    ("export", "onnx", "slimserve.onnx.steps:OnnxExportConfig", "slimserve.onnx.steps:apply_onnx"),
    ("export", "neuron-static", "slimserve.onnx.steps:StaticExportConfig", "slimserve.onnx.steps:apply_static"),
    ("export", "gguf", "slimserve.llamacpp.config:GgufExportConfig", "slimserve.llamacpp.steps:apply_gguf"),
)


for _kind, _method, _config_ref, _apply_ref in METHODS:
    register_step(_kind, _method, resolve(_config_ref), _apply_ref)
