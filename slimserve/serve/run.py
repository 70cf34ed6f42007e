"""Run `slimserve serve`: bind the socket (127.0.0.1 unless --host), build the app, hand both to uvicorn."""

from __future__ import annotations

import sys
from typing import Any

from ..errors import UserError
from .app import create_app
from .server import ServeConfig


def bind(host: str, port: int):
    """A listening socket on host:port (0: any free port) and its base URL; UserError naming --port if it is taken.

    Bound before the app is built, so the URL (the catalog's `served` record, the log line) has the real port."""
    import socket

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port} ({e.strerror})", field="--port") from e
    h, p = sock.getsockname()[:2]
    return sock, f"http://{f'[{h}]' if ':' in h else h}:{p}"


def serve(**kwargs: Any) -> None:
    """Run the server until SIGTERM / Ctrl-C (keyword arguments: ServeConfig's fields)."""
    import uvicorn

    cfg = ServeConfig(**kwargs)
    sock, url = bind(cfg.host, cfg.port)
    app, state = create_app(cfg, endpoint=f"{url}/v1")
    print(f"listening on {url} (loading models; /health is 503 until ready)", file=sys.stderr)
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=int(cfg.grace_s) or None,
                            access_log=False)  # fmt: skip
    uvicorn.Server(config).run(sockets=[sock])
