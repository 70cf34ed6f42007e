"""Served throughput: N concurrent streaming clients for a fixed time against slimserve and llama.cpp's llama-server.

Same model (SmolLM2-135M-Instruct: slimserve's int4 ONNX variant vs the Q4_0 GGUF), same threads, same prompts, same
max_tokens, greedy. Per server and concurrency: requests/s, output tokens/s, TTFT p50/p99, ITL p50/p99, errors
(non-200, non-429), 429s, lost requests (no answer and no 429). "slimserve-serial" is the same server with one slot
(--max-batch 1), the simpler scheduler continuous batching is measured against.

    flock -x /tmp/slimserve-speed.lock python bench/serve_load.py --catalog /tmp/serve/catalog \\
        --variant smollm2-onnx-int4-gptq --gguf /tmp/smollm2-q4_0.gguf --threads 2 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

LLAMA_SERVER = "/root/.cache/llamacpp-peer/build/bin/llama-server"
PROMPTS = [
    "Name three rivers in Europe.",
    "Write one sentence about the sea.",
    "What is the capital of France?",
    "Give me a short tip for learning to cook.",
    "Describe a cat in two sentences.",
    "Why is the sky blue? Answer briefly.",
    "List three fruits that are red.",
    "Tell me a fun fact about space.",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(url)


def start_slimserve(args, slots: int) -> tuple[subprocess.Popen, str, str, list[str]]:
    port = free_port()
    cmd = [sys.executable, "-m", "slimserve", "serve", args.variant, "--catalog", args.catalog, "--target",
           "onnx-cpu", "--threads", str(args.threads), "--port", str(port), "--max-batch", str(slots),
           "--max-queue", str(args.max_queue), "--context", "512", "--prefill-tokens", str(args.prefill_tokens)]  # fmt: skip
    return subprocess.Popen(cmd, stderr=subprocess.DEVNULL), f"http://127.0.0.1:{port}", args.variant, cmd


def start_llama(args) -> tuple[subprocess.Popen, str, str, list[str]]:
    port = free_port()
    cmd = [LLAMA_SERVER, "-m", args.gguf, "-t", str(args.threads), "-tb", str(args.threads), "--port", str(port),
           "-np", str(args.slots), "-c", str(512 * args.slots), "-cb", "--jinja", "--no-webui", "--no-repack"]  # repacking takes the AMX path, which SIGILLs in this VM  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}", "smollm2", cmd


async def one(client: httpx.AsyncClient, url: str, model: str, prompt: str, max_tokens: int) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip
    t0 = time.perf_counter()
    stamps: list[float] = []
    usage = None
    try:
        async with client.stream("POST", url + "/v1/chat/completions", json=body) as r:
            if r.status_code != 200:
                await r.aread()
                return {"status": r.status_code}
            done = False
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    done = True
                    break
                ev = json.loads(data)
                if ev.get("usage"):
                    usage = ev["usage"]
                for ch in ev.get("choices") or []:
                    if (ch.get("delta") or {}).get("content"):
                        stamps.append(time.perf_counter())
            if not done:
                return {"status": "lost"}
    except (httpx.HTTPError, OSError) as e:
        return {"status": "lost", "error": type(e).__name__}
    n = usage["completion_tokens"] if usage else len(stamps)
    itl = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    return {"status": 200, "ttft": (stamps[0] - t0) if stamps else None, "itl": itl, "tokens": n}


async def load(url: str, model: str, concurrency: int, seconds: float, max_tokens: int) -> dict:
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
    results: list[dict] = []
    async with httpx.AsyncClient(timeout=httpx.Timeout(300.0), limits=limits) as client:
        t0 = time.perf_counter()
        stop_at = t0 + seconds

        async def worker(i: int) -> None:
            k = i
            while time.perf_counter() < stop_at:
                r = await one(client, url, model, PROMPTS[k % len(PROMPTS)], max_tokens)
                results.append(r)
                k += concurrency
                if r["status"] == 429:
                    await asyncio.sleep(0.2)

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        wall = time.perf_counter() - t0
    return summarize(results, wall, concurrency)


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def summarize(results: list[dict], wall: float, concurrency: int) -> dict:
    ok = [r for r in results if r["status"] == 200]
    ttft = [r["ttft"] for r in ok if r["ttft"] is not None]
    itl = [x for r in ok for x in r["itl"]]
    return {
        "concurrency": concurrency, "seconds": round(wall, 2), "requests": len(results), "ok": len(ok),
        "req_per_s": len(ok) / wall, "out_tok_per_s": sum(r["tokens"] for r in ok) / wall,
        "ttft_p50_ms": _ms(pct(ttft, 0.5)), "ttft_p99_ms": _ms(pct(ttft, 0.99)),
        "itl_p50_ms": _ms(pct(itl, 0.5)), "itl_p99_ms": _ms(pct(itl, 0.99)),
        "rejected_429": sum(r["status"] == 429 for r in results),
        "errors": sum(r["status"] not in (200, 429, "lost") for r in results),
        "lost": sum(r["status"] == "lost" for r in results),
    }  # fmt: skip


def _ms(s: float | None) -> float | None:
    return None if s is None else round(1000 * s, 1)


def cpu_info() -> dict:
    model, flags = "?", ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and model == "?":
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1].strip()
    simd = [f for f in flags.split() if f.startswith(("avx", "amx", "fma", "f16c"))]
    return {"cpu": model, "cores": os.cpu_count(), "simd_flags": simd, "platform": platform.platform()}


def price_rows(rows: list[dict], hardware: str | None) -> str:
    """Each row's output price as served: the machine's hourly price over its measured output tokens/s."""
    from slimserve.bench.cost import load_prices, resolve_price, usd_per_million

    key, per_hour, source = resolve_price(load_prices(), hardware, None, gpu=False)
    for r in rows:
        r["usd_per_1m_out"] = usd_per_million(per_hour, r["out_tok_per_s"]) if r["out_tok_per_s"] > 0 else None
    return f"$ per 1M output tokens as served: {per_hour} $/h ({key}; {source}) / measured output tok/s"


def table(rows: list[dict]) -> str:
    cols = ["server", "concurrency", "req_per_s", "out_tok_per_s", "usd_per_1m_out", "ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms",
            "itl_p99_ms", "ok", "rejected_429", "errors", "lost"]  # fmt: skip
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join(_cell(r.get(c)) for c in cols) + " |")
    return "\n".join(out)


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if v < 1 else f"{v:.2f}"
    return "-" if v is None else str(v)


def ratios(rows: list[dict]) -> str:
    by = {(r["server"], r["concurrency"]): r for r in rows}
    lines = [
        "| concurrency | slimserve / llama-server out tok/s | slimserve / slimserve-serial out tok/s |",
        "|---|---|---|",
    ]
    for c in sorted({r["concurrency"] for r in rows}):
        s, peer, one_ = by.get(("slimserve", c)), by.get(("llama-server", c)), by.get(("slimserve-serial", c))
        a = f"{s['out_tok_per_s'] / peer['out_tok_per_s']:.2f}x" if s and peer and peer["out_tok_per_s"] else "-"
        b = f"{s['out_tok_per_s'] / one_['out_tok_per_s']:.2f}x" if s and one_ and one_["out_tok_per_s"] else "-"
        lines.append(f"| {c} | {a} | {b} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--catalog", default="/tmp/serve/catalog")
    ap.add_argument("--variant", default="smollm2-onnx-int4-gptq")
    ap.add_argument("--gguf", default="/tmp/smollm2-q4_0.gguf")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--slots", type=int, default=16, help="batch slots of both servers")
    ap.add_argument("--max-queue", type=int, default=32, help="slimserve's bounded queue (429 past it)")
    ap.add_argument("--prefill-tokens", type=int, default=64, help="slimserve's prompt tokens per decode step")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--concurrency", default="1,4,16,64")
    ap.add_argument("--servers", default="slimserve,llama-server,slimserve-serial")
    ap.add_argument("--out", default="bench/results/serve_load")
    ap.add_argument("--hardware", default=None, help="price table entry (default: local-cpu)")
    args = ap.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    rows, commands = [], {}
    for name in args.servers.split(","):
        proc, url, model, cmd = (start_llama(args) if name == "llama-server"
                                 else start_slimserve(args, 1 if name == "slimserve-serial" else args.slots))  # fmt: skip
        commands[name] = shlex.join(cmd)
        try:
            wait_ready(url, proc)
            asyncio.run(load(url, model, 2, 3, args.max_tokens))  # warm-up
            for c in levels:
                r = {"server": name, **asyncio.run(load(url, model, c, args.seconds, args.max_tokens))}
                print(json.dumps(r), flush=True)
                rows.append(r)
        finally:
            proc.terminate()
            proc.wait(30)
    priced = price_rows(rows, args.hardware)
    md = table(rows) + "\n\n" + priced + "\n\n" + ratios(rows)
    print(md)
    meta = {"command": shlex.join([sys.executable, *sys.argv]), "servers": commands, "hardware": cpu_info(),
            "prompts": PROMPTS, "max_tokens": args.max_tokens, "seconds_per_level": args.seconds,
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
    hw = meta["hardware"]
    out.with_suffix(".md").write_text(
        f"# Served load: slimserve vs llama-server\n\n{hw['cpu']}, {hw['cores']} cores, flags "
        f"{' '.join(hw['simd_flags'])}; {args.threads} threads each; greedy, max_tokens {args.max_tokens}, "
        f"{args.seconds:g} s per level; {meta['date']}\n\n```\n{meta['command']}\n```\n\nservers:\n\n"
        + "".join(f"- {k}: `{v}`\n" for k, v in commands.items())
        + f"\n{md}\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
