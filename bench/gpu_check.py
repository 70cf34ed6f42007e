"""The steps bench/gpu_check.sh runs, one subcommand each, so the shell can give every step its own time limit and a
step that fails or runs out of time still leaves the others' results (JSON files under --out) for the table.

    python bench/gpu_check.py build --catalog CAT --base DIR --shape smollm2|tiny --variants gpu-int4,gpu-int8
    python bench/gpu_check.py bench --catalog CAT --target cuda --variants ... --out OUT --batches 1,16 --new-tokens 64
    python bench/gpu_check.py vllm --catalog CAT --variant gpu-int4 --out OUT --requests 16 --new-tokens 64
    python bench/gpu_check.py table --out OUT
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "bench" / "recipes" / "gpu_check.yaml"
# SmolLM2-135M's shapes: speed depends on them, not on the weights' values
SMOLLM2_SHAPE = dict(
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    max_position_embeddings=2048,
)
VOCAB = {"smollm2": 49152, "tiny": None}  # None: the tiny tokenizer's own size


def make_base(out: Path, shape: str) -> None:
    """A random Llama saved as a plain HF folder (fp32 safetensors and the tiny test tokenizer)."""
    from slimserve.testing import make_tiny_llama, tiny_llama, tiny_tokenizer

    if (out / "config.json").is_file():
        return
    if shape == "tiny":
        make_tiny_llama(out)
        return
    tok = tiny_tokenizer()
    tiny_llama(0, VOCAB[shape], **SMOLLM2_SHAPE).save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)


def build_variants(catalog: Path, base: Path, shape: str, variants: list[str]) -> None:
    """The random base (made once, in the same process: one torch import less) and the recipe's variants of it."""
    from slimserve.builder import build

    make_base(base, shape)
    rows = build(RECIPE, catalog=catalog, variants=variants, base=str(base))
    print("built", ", ".join(r.name for r in rows))


def _eval_text(work: Path) -> Path:
    from slimserve.testing import FALLBACK_TEXT

    path = work / "eval.txt"
    path.write_text((FALLBACK_TEXT.strip() + "\n") * 60)  # long enough for the prompts of every scenario
    return path


def _speed_row(rec, batch: int) -> dict:
    s = rec.speed
    return {
        "variant": rec.variant,
        "target": rec.target,
        "engine": f"slimserve {s.loop}",
        "tok_s": s.decode_tok_s.p50 if s.decode_tok_s else None,
        "batch": batch,
        "batch_tok_s": s.batch_tok_s.get(batch),
        "itl_p50_ms": s.itl_ms.p50 if s.itl_ms else None,
        "itl_p99_ms": s.itl_ms.p99 if s.itl_ms else None,
        "ttft_ms": s.ttft_s.p50 * 1000 if s.ttft_s else None,
        "peak_mem_mb": s.peak_mem_mb,
        "size_mb": s.size_mb,
        "note": "; ".join(f"batch {b}: {why}" for b, why in s.batch_errors.items()),
    }


def bench_variants(catalog: Path, target: str, variants: list[str], out: Path, a: argparse.Namespace) -> None:
    """slimserve's bench (speed only) on one target; one row per variant into OUT/bench.json."""
    from slimserve.bench.api import bench

    recs = bench(
        variants,
        catalog=catalog,
        target=target,
        quality=False,
        eval_text=_eval_text(catalog.parent),
        rounds=1,
        iters=a.iters,
        min_seconds=a.min_seconds,
        batches=a.batches,
        prompt_lens=[a.prompt_len],
        new_tokens=a.new_tokens,
        out=out / "reports",
        show=False,
        command=f"bench/gpu_check.sh (target {target})",
    )
    rows = [_speed_row(r, max(a.batches)) for r in recs if r.speed]
    (out / "bench.json").write_text(json.dumps(rows, indent=1))
    print(f"benched {len(rows)} variants on {target}")


def serve_vllm(catalog: Path, variant: str, out: Path, requests: int, new_tokens: int, eager: bool) -> None:
    """vLLM's offline engine on the compressed-tensors variant: `requests` prompts generated together (continuous
    batching schedules them at once, as a server would for concurrent requests). Token ids in and out, because the
    test tokenizer is smaller than the model's vocabulary."""
    import torch
    from vllm import LLM, SamplingParams

    path = catalog / variant
    llm = LLM(
        model=str(path),
        dtype="bfloat16",
        skip_tokenizer_init=True,
        max_model_len=1024,
        gpu_memory_utilization=0.5,
        enforce_eager=eager,
        seed=0,
    )
    prompts = [{"prompt_token_ids": [(7 * i + j) % 300 + 3 for j in range(128)]} for i in range(requests)]
    params = SamplingParams(max_tokens=new_tokens, min_tokens=new_tokens, ignore_eos=True, detokenize=False)
    llm.generate(prompts[:1], params)  # warm-up: compiles and captures what the first call needs
    t0 = time.perf_counter()
    outs = llm.generate(prompts, params)
    wall = time.perf_counter() - t0
    free, total = torch.cuda.mem_get_info()  # device-wide: vLLM's engine runs in its own process
    tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    row = _vllm_row(variant, f"vllm {'eager' if eager else 'cuda-graphs'}", tokens, wall, requests, new_tokens)
    row["peak_mem_mb"] = (total - free) / 2**20
    row["note"] = f"{requests} concurrent requests, 128 prompt + {new_tokens} new tokens each; memory: GPU in use"
    _write_vllm(out, row)


def _vllm_row(variant: str, engine: str, tokens: int, wall: float, requests: int, new_tokens: int) -> dict:
    return {
        "variant": variant,
        "target": "cuda",
        "engine": engine,
        "tok_s": tokens / wall / requests,
        "batch": requests,
        "batch_tok_s": tokens / wall,
        "itl_p50_ms": wall / new_tokens * 1000,
        "itl_p99_ms": None,
        "ttft_ms": None,
        "latency_s": wall,
        "size_mb": None,
    }


def _write_vllm(out: Path, row: dict) -> None:
    (out / "vllm.json").write_text(json.dumps(row, indent=1))
    print("vllm:", json.dumps(row))


def vllm_skipped(out: Path, variant: str, reason: str) -> None:
    _write_vllm(out, {"variant": variant, "target": "cuda", "engine": "vllm", "skipped": reason})


def _fmt(v, digits: int = 1) -> str:
    return "" if v is None else f"{v:,.{digits}f}"


def table(out: Path) -> str:
    """One Markdown table from bench.json and vllm.json (whichever exist), with a line per missing part."""
    head = "| variant | target | engine | tok/s (batch 1) | tok/s (batch N) | ITL p50 / p99 ms | TTFT ms | memory MB | note |"
    lines = [head, "|---|---|---|---:|---:|---:|---:|---:|---|"]
    bench = out / "bench.json"
    rows = json.loads(bench.read_text()) if bench.is_file() else []
    vllm = out / "vllm.json"
    if vllm.is_file():
        rows.append(json.loads(vllm.read_text()))
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['variant']} | {r['target']} | {r['engine']} | | | | | | skipped: {r['skipped']} |")
            continue
        batch = f"{_fmt(r['batch_tok_s'])} ({r['batch']})" if r.get("batch_tok_s") else ""
        itl = f"{_fmt(r['itl_p50_ms'], 2)} / {_fmt(r['itl_p99_ms'], 2)}".rstrip(" /")
        note = r.get("note") or ""
        if r.get("latency_s") is not None:
            note = f"all {r['batch']} done in {r['latency_s']:.2f} s; {note}"
        cells = [r["variant"], r["target"], r["engine"], _fmt(r["tok_s"]), batch, itl, _fmt(r.get("ttft_ms"), 1)]
        lines.append("| " + " | ".join(cells + [_fmt(r.get("peak_mem_mb"), 0), note]) + " |")
    if not bench.is_file():
        lines.append("| (bench) | | | | | | | | no results: the bench step failed or ran out of time (see the log) |")
    tests = out / "cuda_tests.txt"
    if tests.is_file():
        lines += ["", tests.read_text().strip()]
    text = "\n".join(lines) + "\n"
    (out / "table.md").write_text(text)
    return text


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench/gpu_check.py", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="step", required=True)
    b = sub.add_parser("build")
    b.add_argument("--catalog", type=Path, required=True)
    b.add_argument("--base", type=Path, required=True)
    b.add_argument("--shape", choices=sorted(VOCAB), default="smollm2")
    b.add_argument("--variants", required=True)
    b = sub.add_parser("bench")
    for flag in ("--catalog", "--out"):
        b.add_argument(flag, type=Path, required=True)
    b.add_argument("--target", required=True)
    b.add_argument("--variants", required=True)
    b.add_argument("--batches", type=lambda v: [int(x) for x in v.split(",")], default=[1, 16])
    b.add_argument("--new-tokens", type=int, default=64)
    b.add_argument("--prompt-len", type=int, default=128)
    b.add_argument("--iters", type=int, default=3)
    b.add_argument("--min-seconds", type=float, default=1.0)
    b = sub.add_parser("vllm")
    for flag in ("--catalog", "--out"):
        b.add_argument(flag, type=Path, required=True)
    b.add_argument("--variant", default="gpu-int4")
    b.add_argument("--requests", type=int, default=16)
    b.add_argument("--new-tokens", type=int, default=64)
    b.add_argument("--eager", action="store_true")
    b.add_argument("--skip", metavar="REASON", help="write the vLLM line as skipped with this reason")
    b = sub.add_parser("table")
    b.add_argument("--out", type=Path, required=True)
    return p


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    if a.step == "build":
        build_variants(a.catalog, a.base, a.shape, a.variants.split(","))
    elif a.step == "bench":
        bench_variants(a.catalog, a.target, a.variants.split(","), a.out, a)
    elif a.step == "vllm" and a.skip:
        vllm_skipped(a.out, a.variant, a.skip)
    elif a.step == "vllm":
        serve_vllm(a.catalog, a.variant, a.out, a.requests, a.new_tokens, a.eager)
    else:
        print(table(a.out), end="")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
