"""The `export: {format: gguf}` step: the model's float weights -> work_dir/model.gguf (see config.py)."""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import UserError
from ..steps import StepContext
from .config import GgufExportConfig

MODEL_FILE = "model.gguf"


def apply_gguf(model, cfg: GgufExportConfig, ctx: StepContext):
    """Write ctx.work_dir/model.gguf (the build renames the directory into place, so nothing is half-written)."""
    from . import writer
    from .tools import require_tool

    where = dict(field=ctx.field, file=ctx.recipe_file)
    if any(ctx.work_dir.glob("*.gguf")) or ctx.artifact_format != "hf":
        raise UserError(
            f"the GGUF export rounds float weights itself, but an earlier step left a '{ctx.artifact_format}' "
            "artifact; drop that quantize/export step and set the GGUF `type` instead",
            **where,
        )
    writer.check_config(model.config)
    engine = cfg.engine()
    if engine == "llama-quantize":  # before any work: a missing tool fails the build here
        require_tool("llama-quantize", f"GGUF type {cfg.type}", **where)
    t0 = time.perf_counter()
    fields, vocab_from = _tokenizer_fields(ctx)
    n_tokens = next((len(v) for k, v, _, _ in fields if k == "tokenizer.ggml.tokens"), 0)
    if n_tokens != model.config.vocab_size:
        raise UserError(f"the tokenizer has {n_tokens} tokens and the model {model.config.vocab_size} rows", **where)
    state = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
    tensors = list(writer.llama_tensors(state, model.config))
    out = ctx.work_dir / MODEL_FILE
    first = "F32" if engine == "llama-quantize" else cfg.type
    staged = ctx.work_dir / ".f32.gguf" if engine == "llama-quantize" else out
    info = writer.write_gguf(staged, tensors, first, writer.hparams(model.config), fields)
    tool = None
    if engine == "llama-quantize":
        from .tools import llama_quantize

        try:
            tool = llama_quantize(staged, out, cfg.type, cfg.threads)
        finally:
            staged.unlink(missing_ok=True)
        types = writer.read_types(out)
        info = {"tensor_types": _count(types.values()), "deviations": {}}
    for why, names in info["deviations"].items():
        for n in names:
            ctx.note(why, n)
    types = writer.read_types(out)
    for n, t in types.items():
        ctx.layers[n] = {"gguf_type": t}
    ctx.artifact_format = "gguf"
    model.config.save_pretrained(ctx.work_dir)  # describes the architecture; the weights are in the GGUF only
    ctx.records.update(
        {
            "model_file": MODEL_FILE,
            "type": cfg.type,
            "quantizer": engine,
            "llama_quantize": tool,
            "tensor_types": info["tensor_types"],
            "tokenizer_from": vocab_from,
            "export_seconds": round(time.perf_counter() - t0, 2),
        }
    )
    return model


def _tokenizer_fields(ctx: StepContext):
    from .writer import tokenizer_fields_from_gguf, tokenizer_fields_from_hf

    if ctx.base_gguf is not None and Path(ctx.base_gguf).is_file():
        return tokenizer_fields_from_gguf(Path(ctx.base_gguf)), f"copied from {Path(ctx.base_gguf).name}"
    return tokenizer_fields_from_hf(ctx.tokenizer), "built from the Hugging Face tokenizer (gpt2 BPE, pre 'default')"


def _count(values) -> dict[str, int]:  # noqa: ANN001
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return dict(sorted(out.items()))
