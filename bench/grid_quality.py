"""Which int4/int8 grid is good enough? Held-out KLD / top-1 of SmolLM2-135M against its fp32 self, with the weights
rounded in PyTorch (fake quantization: exactly the values the ONNX export packs) and activations left in float.

    python bench/grid_quality.py rtn-b32-all rtn-b32 head-int4 gptq-g32-search gptq-g128-search-mixed48 ...

Windows: the last 16 x 512 tokens of Pride and Prejudice (stride 256), the ones `slimserve bench` scores; GPTQ and
the mixed-precision probe calibrate on the first ones. `lm_head` / embedding columns say how those two tables are
rounded (`fp32` = untouched; int8 block 32 symmetric reproduces this base's own Q8_0 table exactly). Results are
appended to bench/results/grid_quality.md with the hardware and command.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CTX, STRIDE, WINDOWS = 512, 256, 16


def rtn(bits, block, sym=False):
    return ("rtn", dict(bits=bits, group_size=block, symmetric=sym))


# name -> (body grid, lm_head grid or None, embedding grid or None); a grid is (method, settings)
CONFIGS = {
    "rtn-b32-all": (rtn(4, 32), rtn(4, 32), rtn(4, 32)),
    "rtn-b32-head8": (rtn(4, 32), rtn(8, 32, True), rtn(8, 32, True)),
    "head-int4": (None, rtn(4, 32), None),
    "head-int8": (None, rtn(8, 32, True), None),
    "embedding-int4": (None, None, rtn(4, 32)),
    "rtn-b32": (rtn(4, 32), None, None),
    "rtn-b64": (rtn(4, 64), None, None),
    "rtn-b128": (rtn(4, 128), None, None),
    "rtn-b32-search": (("rtn", dict(bits=4, group_size=32, search=True)), None, None),
    "int8-b32": (rtn(8, 32, True), rtn(8, 32, True), rtn(8, 32, True)),
    "int8-b128": (rtn(8, 128, True), rtn(8, 128, True), rtn(8, 64, True)),
    "gptq-g32": (("gptq", dict(bits=4, group_size=32)), None, None),
    "gptq-g32-search": (("gptq", dict(bits=4, group_size=32, search=True)), None, None),
    "gptq-g64-search": (("gptq", dict(bits=4, group_size=64, search=True)), None, None),
    "gptq-g128-search": (("gptq", dict(bits=4, group_size=128, search=True)), None, None),
    "gptq-g128-search-mixed45": (("gptq", dict(bits=4, group_size=128, search=True, mixed={"budget_bpw": 4.5})), None, None),
    "gptq-g128-search-mixed48": (("gptq", dict(bits=4, group_size=128, search=True, mixed={"budget_bpw": 4.8})), None, None),
}  # fmt: skip


def fake(w: torch.Tensor, bits: int, group_size: int, symmetric: bool = False) -> torch.Tensor:
    from slimserve.onnx.packing import pad_k
    from slimserve.quant.math import compute_qparams, fake_quantize

    wp = pad_k(w.float(), group_size)  # MatMulNBits pads K to whole blocks
    return fake_quantize(wp, compute_qparams(wp, bits, group_size, symmetric))[:, : w.shape[1]]


def quantized(base: Path, tok, body, head, emb):
    from transformers import AutoModelForCausalLM

    from slimserve.quant import gptq
    from slimserve.quant import rtn as rtn_mod
    from slimserve.quant.configs import GPTQConfig, RTNConfig
    from slimserve.steps import StepContext

    m = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
    m.lm_head.weight = nn.Parameter(m.model.embed_tokens.weight.detach().clone(), requires_grad=False)
    if body is not None:
        method, kw = body
        ctx = StepContext(base_dir=base, work_dir=Path("/tmp"), tokenizer=tok, field="body")
        mod, cfg = (gptq, GPTQConfig) if method == "gptq" else (rtn_mod, RTNConfig)
        m = mod.apply(m, cfg(ignore=["lm_head"], **kw), ctx)
    with torch.no_grad():
        if head is not None:
            m.lm_head.weight.copy_(fake(m.lm_head.weight, **head[1]))
        if emb is not None:
            m.model.embed_tokens.weight.copy_(fake(m.model.embed_tokens.weight, **emb[1]))
    return m


@torch.no_grad()
def logits(m, ids: torch.Tensor) -> list[torch.Tensor]:
    start = ids.numel() - ((WINDOWS - 1) * STRIDE + CTX)
    out = []
    for k in range(WINDOWS):
        lg = m(ids[start + k * STRIDE : start + k * STRIDE + CTX][None]).logits[0]
        first = 1 if k == 0 else CTX - STRIDE
        out.append(lg[first - 1 : -1].clone())
    return out


def compare(ref: list[torch.Tensor], got: list[torch.Tensor]) -> tuple[float, float]:
    from slimserve.bench.metrics import kl_divergence, top1_agreement

    kl = torch.cat([kl_divergence(r, g) for r, g in zip(ref, got, strict=True)])
    ag = torch.cat([top1_agreement(r, g) for r, g in zip(ref, got, strict=True)])
    return float(kl.mean()), float(ag.mean())


def main() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from slimserve.bench.fingerprint import fingerprint
    from slimserve.bench.report import fingerprint_lines
    from slimserve.data import read_text
    from slimserve.recipe import BaseSpec
    from slimserve.sources import resolve_base

    names = sys.argv[1:] or list(CONFIGS)
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown config(s) {unknown}; choose from: {', '.join(CONFIGS)}")
    torch.set_num_threads(2)
    base = resolve_base(BaseSpec(source="smollm2-135m")).path
    tok = AutoTokenizer.from_pretrained(base)
    ids = tok(read_text(), add_special_tokens=False, return_tensors="pt").input_ids[0]
    ref = logits(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval(), ids)
    command = "python bench/grid_quality.py " + " ".join(names)
    out = REPO / "bench/results/grid_quality.md"
    lines = [f"\n## Run of `{command}`", "", *fingerprint_lines(fingerprint(hardware_key="local-cpu", device="cpu", threads=2, command=command)), "",
             "| config | body | lm_head | embedding | KLD | top-1 | quantize s |", "|---|---|---|---|---:|---:|---:|"]  # fmt: skip
    for name in names:
        body, head, emb = CONFIGS[name]
        t = time.perf_counter()
        m = quantized(base, tok, body, head, emb)
        dt = time.perf_counter() - t
        kld, top1 = compare(ref, logits(m, ids))

        def say(g):
            return "fp32" if g is None else f"{g[0]} " + ",".join(f"{k}={v}" for k, v in g[1].items())

        lines.append(f"| {name} | {say(body)} | {say(head)} | {say(emb)} | {kld:.4f} | {top1:.4f} | {dt:.0f} |")
        print(lines[-1], flush=True)
    with out.open("a") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
