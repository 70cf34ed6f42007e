"""slimserve serve: an OpenAI-compatible server for catalog variants (flags = ServeConfig's fields)."""

from __future__ import annotations

import argparse

from . import COMMANDS, catalog_arg, kwargs_of

FIELDS = ("variants", "catalog", "target", "host", "port", "threads", "max_batch", "max_queue", "prefill_tokens", "context",
          "max_tokens", "request_timeout_s", "grace_s", "api_key")  # fmt: skip


@COMMANDS.register("serve")
def register(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="serve catalog variants over an OpenAI-compatible API",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="POST /v1/chat/completions and /v1/completions (stream, stop, max_tokens, usage), GET /v1/models, "
        "/health (503 while loading) and /metrics (Prometheus). The model id is the variant name (or "
        "'variant@target', as catalog exports send it). Concurrent requests to a fused ONNX variant decode as one "
        "batch (continuous batching); PyTorch variants decode one request at a time.",
        epilog="examples:\n  slimserve serve --catalog catalog --port 8000\n"
        "  slimserve serve smollm2-onnx-int4-gptq --target onnx-cpu --threads 2\n"
        "  curl localhost:8000/v1/models",
    )
    p.add_argument("variants", nargs="*", help="variants to serve (default: every servable one)")
    catalog_arg(p)
    p.add_argument("--target", choices=("onnx-cpu", "cpu", "cuda"), default=None,
                   help="serve only variants that run on this target (default: each on its own)")  # fmt: skip
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (0: any free one; default 8000)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads per model")
    p.add_argument("--max-batch", type=int, default=16, help="sequences decoded together per variant (default 16)")
    p.add_argument("--max-queue", type=int, default=64, help="waiting requests per variant before 429 (default 64)")
    p.add_argument("--prefill-tokens", type=int, default=64,
                   help="prompt tokens admitted between two decode steps, at least one prompt (default 64): lower "
                   "keeps inter-token latency flat under bursts, higher fills the batch sooner")  # fmt: skip
    p.add_argument("--context", type=int, default=2048, help="prompt + completion tokens per request (default 2048)")
    p.add_argument("--max-tokens", type=int, default=512, help="completion tokens when a request sets none")
    p.add_argument("--request-timeout-s", type=float, default=600.0, help="end a request after this long")
    p.add_argument("--grace-s", type=float, default=30.0, help="on SIGTERM, let in-flight requests finish this long")
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on /v1 routes")
    p.set_defaults(func=serve_cmd)


def serve_cmd(args) -> int:
    from pydantic import ValidationError

    from ..errors import UserError
    from ..serve.run import serve

    try:
        serve(**kwargs_of(args, *FIELDS))
    except ValidationError as e:
        err = e.errors()[0]
        name = "--" + str(err["loc"][0]).replace("_", "-")
        raise UserError(f"{name}: {err['msg']}", field=name) from None
    return 0
