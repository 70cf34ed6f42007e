"""The tiered catalog against its peers, side by side in one run: quality gates, decode speed vs llama.cpp and vs
PyTorch fp32, and the blended cost of each tier's leader vs fp32@cpu.

    python bench/tiers_vs_peers.py --catalog /tmp/tiers_cat --rounds 5

Steps (one process, one machine state):
1. `slimserve build recipes/llama-tiers.yaml` into --catalog unless it is there (its build-time gates run then);
2. `slimserve.bench(target="auto")`: quality vs the fp32 reference on Pride and Prejudice's *last* windows (the
   calibration read its first ones), gates, speed and $/1M tokens of every variant on its own target;
3. decode speed measured the way llama-bench does (tg128: 128 tokens after a 1-token prompt), in interleaved rounds
   (llama.cpp, each ONNX variant, PyTorch fp32, then again), so drift of a shared machine hits all engines alike:
   llama.cpp's Q4_0 (requantized from the shipped Q4_1 file with llama-quantize; token_embd/output stay Q8_0, as in
   our nano) with `llama-bench -t THREADS`; PyTorch fp32 decodes 32 tokens (it is slow enough that 128 would
   dominate the run);
4. `slimserve catalog tier`: which variant leads each tier, and its blended cost vs fp32@cpu.

With --genai-python PATH (the interpreter of a separate venv holding onnxruntime-genai and transformers 5; see
bench/genai_peer.py), onnxruntime-genai's int4 model builder joins as a peer: its model is built from the same fp32
base before the rounds (once, into --genai-model), and each round runs bench/genai_peer.py for one tg128.

llama.cpp comes from ../shared/tools/build-llamacpp.sh (or --llama-bench PATH). Results: bench/results/tiers_vs_peers.*
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

GENAI = "onnxruntime-genai int4"
DEFAULT_LLAMA_BENCH = Path.home() / ".cache/llamacpp-peer/build/bin/llama-bench"
TARGETS = {  # done-when of issue 11: (max KLD, min top-1, decode ratio, against what)
    "nano": (0.08, 0.83, 1.0, "llama.cpp Q4_0"),
    "small": (0.003, 0.97, 4.0, "PyTorch fp32"),
}


def sh(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def q4_0_gguf(llama_bench: Path, out: Path) -> Path:
    """llama.cpp's Q4_0 of the shipped SmolLM2 file (made once with llama-quantize next to llama-bench)."""
    from slimserve.sources import builtin_gguf

    if not out.is_file():
        quantize = llama_bench.with_name("llama-quantize")
        res = sh([str(quantize), "--allow-requantize", str(builtin_gguf("smollm2-135m")), str(out), "Q4_0", "2"])
        if res.returncode:
            raise SystemExit(f"llama-quantize failed: {res.stderr[-500:]}")
    return out


def llama_tg(llama_bench: Path, gguf: Path, threads: int) -> float:
    res = sh([str(llama_bench), "-m", str(gguf), "-t", str(threads), "-p", "0", "-n", "128", "-r", "1", "-o", "json"])
    if res.returncode:
        raise SystemExit(f"llama-bench failed (rc {res.returncode}): {res.stderr[-500:]}")
    return float(json.loads(res.stdout)[0]["avg_ts"])


class OnnxTG:
    def __init__(self, path: Path, threads: int):
        from slimserve.onnx.runtime import OrtRunner

        self.r = OrtRunner(path, None, threads=threads)
        self.r.generate(torch.tensor([[100] * 8]), 16)

    def tg(self) -> float:
        g = self.r.generate(torch.tensor([[100]]), 128)
        return len(g.step_s) / sum(g.step_s)


class GenaiTG:
    """onnxruntime-genai's int4 builder output, timed by bench/genai_peer.py under another venv's interpreter."""

    def __init__(self, python: str, base: Path, model: Path, threads: int, extra: list[str]):
        self.cmd = [python, str(REPO / "bench/genai_peer.py"), "--base", str(base), "--model", str(model),
                    "--threads", str(threads)]  # fmt: skip
        if extra:
            self.cmd += ["--extra-options", *extra]
        self.info = self.run("--build-only")["build"]  # the build, outside the timed rounds

    def run(self, *more: str) -> dict:
        res = sh([*self.cmd, *more])
        if res.returncode:
            raise SystemExit(f"bench/genai_peer.py failed (rc {res.returncode}): {res.stderr[-800:]}")
        return json.loads(res.stdout.strip().splitlines()[-1])

    def tg(self) -> float:
        return float(self.run()["tg"])


def genai_peer(args: argparse.Namespace, ref) -> GenaiTG | None:  # noqa: ANN001
    if not args.genai_python:
        print("onnxruntime-genai int4 peer skipped: no --genai-python (see bench/genai_peer.py)", flush=True)
        return None
    from slimserve.sources import cache_root

    base = cache_root() / "bases" / ref.manifest["base"]["source_hash"][:16]
    if not (base / "config.json").is_file():
        raise SystemExit(f"the fp32 HF base of {ref.name} is not at {base}")
    return GenaiTG(args.genai_python, base, Path(args.genai_model), args.threads, args.genai_extra_options)


class TorchTG:
    def __init__(self, path: Path, threads: int):
        from slimserve.bench.torch_runner import TorchRunner
        from slimserve.loaders import load_variant

        torch.set_num_threads(threads)
        model, tok, _ = load_variant(path)
        self.r = TorchRunner(model, tok)
        self.r.generate(torch.tensor([[100] * 8]), 4)

    def tg(self) -> float:
        g = self.r.generate(torch.tensor([[100]]), 33)
        return len(g.step_s) / sum(g.step_s)


def side_by_side(engines: dict, rounds: int) -> dict[str, dict]:
    """Interleaved rounds; median and min-max of each engine's tg128."""
    samples: dict[str, list[float]] = {k: [] for k in engines}
    for k in range(rounds):
        for name, fn in engines.items():
            samples[name].append(fn())
        print(f"round {k + 1}/{rounds}: " + ", ".join(f"{n} {v[-1]:.1f}" for n, v in samples.items()), flush=True)
    return {n: {"median": statistics.median(v), "min": min(v), "max": max(v), "samples": v} for n, v in samples.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--catalog", default="/tmp/tiers_cat")
    ap.add_argument("--recipe", default=str(REPO / "recipes/llama-tiers.yaml"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--profile", default="quick", help="slimserve bench profile for quality and cost")
    ap.add_argument("--llama-bench", default=str(DEFAULT_LLAMA_BENCH))
    ap.add_argument("--out", default=str(REPO / "bench/results/tiers_vs_peers"))
    ap.add_argument("--genai-python", help="python of a venv with onnxruntime-genai: adds its int4 builder as a peer")
    ap.add_argument("--genai-model", default="/tmp/genai-int4", help="where the genai int4 model is built once")
    ap.add_argument("--genai-extra-options", nargs="*", default=[], metavar="KEY=VALUE",
                    help="its builder's --extra_options (e.g. matmul_mixed_precision=last_matmul:int8 "
                    "shared_embeddings=false: lm_head int8 as in our nano; use another --genai-model)")  # fmt: skip
    args = ap.parse_args()

    import slimserve
    import slimserve.router as router
    from slimserve.bench.fingerprint import fingerprint
    from slimserve.bench.report import fingerprint_lines
    from slimserve.catalog import Catalog

    command = " ".join(["python", *map(shlex.quote, sys.argv)])
    load0 = os.getloadavg()
    cat_dir = Path(args.catalog)
    t0 = time.perf_counter()
    if not (cat_dir / "index.sqlite").is_file():
        slimserve.build(args.recipe, catalog=cat_dir)
    build_s = time.perf_counter() - t0
    cat = Catalog.open(cat_dir)
    records = slimserve.bench(catalog=cat_dir, threads=args.threads, profile=args.profile, show=False,
                              command=command)  # fmt: skip
    tiers = router.tier(catalog=cat_dir)

    rows = {v.name: v for v in cat.variants()}
    llama_bench = Path(args.llama_bench)
    gguf = q4_0_gguf(llama_bench, Path("/tmp/smollm2-q4_0.gguf"))
    engines = {"llama.cpp Q4_0": lambda: llama_tg(llama_bench, gguf, args.threads)}
    # every ONNX variant, keyed by the tier `catalog tier` gave it (its recipe label when it leads none)
    leads = {tiers.status[t.leader].get("variant", t.leader.split("@")[0]): t.name for t in reversed(tiers.tiers)}
    onnx = {v.name: (leads.get(v.name, f"({v.manifest['tier']})"), v) for v in rows.values() if v.format == "onnx"}
    for v in (v for _, v in onnx.values()):
        engines[f"{v.name} (onnx-cpu)"] = OnnxTG(v.path / "model.onnx", args.threads).tg
    ref = next(v for v in rows.values() if v.manifest.get("reference"))
    engines[f"{ref.name} (PyTorch cpu)"] = TorchTG(ref.path, args.threads).tg
    genai = genai_peer(args, ref)
    if genai:
        engines[GENAI] = genai.tg
    speed = side_by_side(engines, args.rounds)

    fp = fingerprint(hardware_key="local-cpu", device="cpu", threads=args.threads, command=command)
    result = {"command": command, "load_avg_start": load0, "load_avg_end": os.getloadavg(), "build_s": build_s,
              "fingerprint": fp.__dict__, "speed_tg128": speed, "tiers": tiers.to_dict(),
              "genai_build": genai.info if genai else None,
              "records": [r.to_dict() for r in records]}  # fmt: skip
    md = to_markdown(result, rows, records, tiers, onnx, ref, fingerprint_lines(fp))
    Path(args.out + ".json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    Path(args.out + ".md").write_text(md)
    print(md)


def peer_rows(speed: dict, genai_build: dict | None) -> list[str]:
    s = speed["llama.cpp Q4_0"]
    rows = [f"| peer | llama.cpp Q4_0 (llama-bench) | | | | {s['median']:.1f} ({s['min']:.1f}-{s['max']:.1f}) | | | |"]
    if genai_build and GENAI in speed:
        g, ver = speed[GENAI], genai_build["versions"]["onnxruntime-genai"]
        extra = genai_build["command"].partition(" --extra_options ")[2]
        rows.append(
            f"| peer | onnxruntime-genai {ver} model builder (`-p int4 -e cpu{' ' + extra if extra else ''}`) | | | | "
            f"{g['median']:.1f} ({g['min']:.1f}-{g['max']:.1f}) | llama.cpp Q4_0 | {g['median'] / s['median']:.2f}x | |"
        )
    return rows


def to_markdown(result, rows, records, tiers, onnx, ref, fp_lines) -> str:  # noqa: ANN001
    speed = result["speed_tg128"]
    q = {(r.variant, r.target): r for r in records}
    llama = speed["llama.cpp Q4_0"]["median"]
    fp32 = speed[f"{ref.name} (PyTorch cpu)"]["median"]
    lines = [
        "# Tiers vs peers (side by side, one run)",
        "",
        f"- command: `{result['command']}`",
        *fp_lines,
        f"- load average at start {tuple(round(x, 2) for x in result['load_avg_start'])}, "
        f"at end {tuple(round(x, 2) for x in result['load_avg_end'])}",
        "- quality: KLD / top-1 vs the fp32 reference on the last windows of Pride and Prejudice (calibration read "
        "its first windows); decode: tg128 as llama-bench counts it, median of the interleaved rounds (min-max)",
        "",
        "| tier | variant @ target | KLD | top-1 | gate | decode tok/s | vs | ratio | goal |",
        "|---|---|---:|---:|---|---:|---|---:|---|",
    ]
    for tier, v in sorted(onnx.values(), key=lambda tv: tv[0]):
        rec = q.get((v.name, "onnx-cpu"))
        s = speed[f"{v.name} (onnx-cpu)"]
        kld_max, top1_min, ratio_min, peer = TARGETS.get(tier, (None, None, None, "llama.cpp Q4_0"))
        peer = "PyTorch fp32" if v.manifest["tier"] == "small" else peer
        base = llama if peer.startswith("llama") else fp32
        ratio = s["median"] / base
        ok = rec and rec.quality and kld_max is not None and rec.quality.kld <= kld_max and \
            rec.quality.top1 >= top1_min and ratio >= ratio_min  # fmt: skip
        goal = (
            f"KLD <= {kld_max}, top-1 >= {top1_min}, >= {ratio_min}x: {'met' if ok else 'NOT met'}" if kld_max else ""
        )
        lines.append(
            f"| {tier} | {v.name} @ onnx-cpu | {rec.quality.kld:.4f} | {rec.quality.top1:.4f} | "
            f"{rec.gate['status']} | {s['median']:.1f} ({s['min']:.1f}-{s['max']:.1f}) | {peer} | {ratio:.2f}x | {goal} |"
        )
    lines.append(
        f"| reference | {ref.name} @ cpu | 0 | 1 | reference | {fp32:.1f} "
        f"({speed[f'{ref.name} (PyTorch cpu)']['min']:.1f}-{speed[f'{ref.name} (PyTorch cpu)']['max']:.1f}) | | | |"
    )
    lines += peer_rows(speed, result.get("genai_build"))
    lines += ["", "## Tiers (`slimserve catalog tier`)", "", "| tier | leader | blended $/1M | vs fp32@cpu |",
              "|---|---|---:|---:|"]  # fmt: skip
    st = tiers.status
    fp32_cost = st.get(f"{ref.name}@cpu", {}).get("cost")
    for t in tiers.tiers:
        c = st[t.leader]["cost"]
        lines.append(f"| {t.name} | {t.leader} | {c:.4f} | {fp32_cost / c:.1f}x cheaper |" if fp32_cost else
                     f"| {t.name} | {t.leader} | {c:.4f} | - |")  # fmt: skip
    lines += ["", "## Every variant", "", "| variant @ target | ppl | KLD | top-1 | gate | $/1M in | $/1M out |",
              "|---|---:|---:|---:|---|---:|---:|"]  # fmt: skip
    for r in records:
        qq, c = r.quality, r.cost
        lines.append(
            f"| {r.variant} @ {r.target} | {qq.ppl:.3f} | {qq.kld:.4f} | {qq.top1:.4f} | {r.gate['status']} | "
            f"{c.usd_per_1m_input:.4f} | {c.usd_per_1m_output:.4f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
