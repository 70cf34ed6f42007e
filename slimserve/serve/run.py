"""Run `slimserve serve`: bind the socket (127.0.0.1 unless --host), build the app, hand both to uvicorn."""

from __future__ import annotations

import sys
from typing import Any

from ..errors import UserError
from .app import create_app
from .server import ServeConfig


def serve(**kwargs: Any) -> None:
    """Run the server until SIGTERM / Ctrl-C (keyword arguments: ServeConfig's fields)."""
    import socket

    import uvicorn

    cfg = ServeConfig(**kwargs)
    sock = socket.socket(socket.AF_INET6 if ":" in cfg.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((cfg.host, cfg.port))
    except OSError as e:
        raise UserError(f"cannot listen on {cfg.host}:{cfg.port} ({e.strerror})", field="--port") from e
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    app, state = create_app(cfg, endpoint=f"http://{shown}:{port}/v1")
    print(f"listening on http://{shown}:{port} (loading models; /health is 503 until ready)", file=sys.stderr)
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=int(cfg.grace_s) or None,
                            access_log=False)  # fmt: skip
    uvicorn.Server(config).run(sockets=[sock])
