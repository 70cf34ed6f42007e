"""`slimserve serve` as a process: served records in the catalog while it runs, SIGTERM ends it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("onnxruntime")

from slimserve import served  # noqa: E402
from slimserve.catalog import Catalog  # noqa: E402

from .serve_helpers import build_tiny_catalog  # noqa: E402


@pytest.fixture(scope="module")
def cat(tmp_path_factory):
    return build_tiny_catalog(tmp_path_factory.mktemp("served"), max_positions=256)


def test_stale_records_of_dead_processes_are_ignored(cat):
    c = Catalog.open(cat)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    served.add(c, "http://127.0.0.1:1/v1", [("onnx", "onnx-cpu")], pid=dead.pid)
    assert served.live(c) == [] and served.live_endpoint(c) is None


def test_serve_records_itself_and_sigterm_removes_the_records(cat):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "slimserve", "serve", "onnx", "--catalog", str(cat), "--port", "0", "--context", "96"],
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        c = Catalog.open(cat)
        deadline = time.monotonic() + 120
        while not served.live(c) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.2)
        (rec,) = served.live(c)
        assert (rec.variant, rec.target, rec.pid) == ("onnx", "onnx-cpu", proc.pid)
        assert rec.endpoint.startswith("http://127.0.0.1:") and rec.endpoint.endswith("/v1")
        base = rec.endpoint.removesuffix("/v1")
        assert httpx.get(base + "/health").json()["models"] == ["onnx"]
        r = httpx.post(rec.endpoint + "/chat/completions", timeout=60,
                       json={"model": "onnx", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3})  # fmt: skip
        assert r.status_code == 200
        from slimserve.router.api import _live_api_base

        assert _live_api_base(c) == rec.endpoint  # what `catalog export` uses when --api-base is not given
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after its graceful shutdown
        with c.connect() as con:  # removed by the shutdown, not just ignored as stale
            assert con.execute("SELECT COUNT(*) FROM served WHERE pid = ?", (proc.pid,)).fetchone()[0] == 0
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
