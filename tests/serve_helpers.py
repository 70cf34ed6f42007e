"""Servers for the serve tests: a tiny catalog (hf + fused ONNX variants), uvicorn on a free port in a thread."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

import httpx

from .helpers import write_recipe

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
VARIANTS = """\
  - {name: ref, tier: reference, reference: true}
  - name: onnx
    tier: small
    steps: [{export: {format: onnx, graph: fused, weights: float}}]
"""


def build_tiny_catalog(tmp: Path, max_positions: int = 2048) -> Path:
    """ref (PyTorch) and onnx (fused fp32 graph) of a tiny random Llama with a ChatML template."""
    from transformers import AutoTokenizer

    import slimserve
    from slimserve.testing import make_tiny_llama

    base = make_tiny_llama(tmp / "base", initializer_range=0.2, max_position_embeddings=max_positions)
    tok = AutoTokenizer.from_pretrained(base)
    tok.chat_template = CHATML
    tok.save_pretrained(base)
    slimserve.build(write_recipe(tmp / "r.yaml", base, VARIANTS), catalog=tmp / "cat")
    return tmp / "cat"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(app, timeout_s: float = 60.0, port: int | None = None):
    """Serve a FastAPI app with uvicorn on a free 127.0.0.1 port (or `port`) in a thread; yields the base URL (no
    /v1)."""
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                break
        time.sleep(0.05)
    else:
        server.should_exit = True
        raise TimeoutError("the server did not become ready")
    try:
        yield url
    finally:
        server.should_exit = True
        t.join(30)
