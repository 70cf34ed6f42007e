"""bitsandbytes quantization: LLM.int8 (int8) and 4-bit NF4/FP4 (optionally double-quantized).

transformers quantizes while loading, so the incoming model (the base, or the output of earlier steps
such as pruning) is saved to a temporary folder and reloaded with a BitsAndBytesConfig. The variant
is saved with ``save_pretrained`` and reloads with plain transformers + bitsandbytes.

```yaml
- quantize:
    method: bitsandbytes
    scheme: nf4              # int8 | nf4 | fp4
    double_quant: true       # 4-bit only: quantize the block scales too
    compute_dtype: float32   # float32 | bfloat16 | float16 (4-bit matmul dtype)
```
"""

from __future__ import annotations

import importlib.util
import re
import tempfile
import time

import torch

from ..errors import DependencyError, UserError
from ..steps import StepContext
from .configs import BnBConfig


def require_bitsandbytes() -> None:
    if importlib.util.find_spec("bitsandbytes") is None:
        raise DependencyError(
            "bitsandbytes", "bitsandbytes quantization (int8, nf4, fp4)", install="pip install bitsandbytes"
        )


def bnb_quantization_config(cfg: BnBConfig, skip_modules: list[str]):
    from transformers import BitsAndBytesConfig

    if cfg.scheme == "int8":
        return BitsAndBytesConfig(
            load_in_8bit=True, llm_int8_threshold=cfg.int8_threshold, llm_int8_skip_modules=skip_modules or None
        )
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=cfg.scheme,
        bnb_4bit_use_double_quant=cfg.double_quant,
        bnb_4bit_compute_dtype=getattr(torch, cfg.compute_dtype),
        llm_int8_skip_modules=skip_modules or None,
    )


def apply(model, cfg: BnBConfig, ctx: StepContext):
    require_bitsandbytes()
    from transformers import AutoModelForCausalLM

    from .base import get_qparams, iter_linears

    if any(get_qparams(m) is not None for _, m in iter_linears(model)):
        raise UserError(
            "bitsandbytes cannot follow another weight quantizer in the same variant",
            field=ctx.field,
            hint="Use bitsandbytes on the float model (after pruning steps only)",
        )
    started = time.perf_counter()
    skip = [n for n, _ in iter_linears(model) if any(re.fullmatch(p, n) for p in cfg.ignore)]
    for n in skip:
        ctx.skip(n, "in ignore list (kept in float)")
    # transformers matches llm_int8_skip_modules by name component; pass the short names too.
    skip_names = sorted({n.split(".")[-1] for n in skip} | set(skip))
    qcfg = bnb_quantization_config(cfg, skip_names)
    with tempfile.TemporaryDirectory(prefix="slimserve-bnb-") as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        qmodel = AutoModelForCausalLM.from_pretrained(
            tmp, quantization_config=qcfg, device_map="cpu", dtype=torch.float32
        )
    qmodel.eval()
    n_quant = sum(1 for _, m in qmodel.named_modules() if type(m).__module__.startswith("bitsandbytes"))
    ctx.records["quantized_linears"] = n_quant
    ctx.records["seconds"] = round(time.perf_counter() - started, 1)
    for name, mod in qmodel.named_modules():
        if type(mod).__module__.startswith("bitsandbytes"):
            ctx.layers[name] = {"scheme": cfg.scheme, "double_quant": cfg.double_quant}
    ctx.artifact_format = "bitsandbytes"
    return qmodel
