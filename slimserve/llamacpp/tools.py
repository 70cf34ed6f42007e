"""llama.cpp's command-line tools: where they are, and running llama-quantize.

Looked up in order: $SLIMSERVE_LLAMACPP_BIN (a directory), PATH, then ~/.cache/llamacpp-peer/build/bin (where
../shared/tools/build-llamacpp.sh builds them from the llama.cpp tree vendored in llama-cpp-python's sdist).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from ..errors import UserError

ENV = "SLIMSERVE_LLAMACPP_BIN"
DEFAULT_DIR = Path.home() / ".cache" / "llamacpp-peer" / "build" / "bin"


def find_tool(name: str) -> Path | None:
    """The llama.cpp binary `name` (e.g. llama-quantize), or None."""
    env = os.environ.get(ENV)
    if env:
        p = Path(env).expanduser() / name
        return p if p.is_file() and os.access(p, os.X_OK) else None  # an explicit directory is not second-guessed
    found = shutil.which(name)
    if found:
        return Path(found)
    p = DEFAULT_DIR / name
    return p if p.is_file() and os.access(p, os.X_OK) else None


def require_tool(name: str, why: str, *, field: str | None = None, file: str | None = None) -> Path:
    tool = find_tool(name)
    if tool is None:
        where = f"${ENV}={os.environ[ENV]}" if os.environ.get(ENV) else f"${ENV}, PATH or {DEFAULT_DIR}"
        raise UserError(
            f"{why} needs llama.cpp's {name}, which is not in {where}",
            field=field,
            file=file,
            hint=f"build it (../shared/tools/build-llamacpp.sh, or cmake in llama.cpp) and set {ENV} to its bin dir",
        )
    return tool


def llama_quantize(src: Path, dst: Path, type_name: str, threads: int | None = None) -> str:
    """Run `llama-quantize src dst TYPE [threads]`; returns the tool's path. RuntimeError with its stderr tail."""
    tool = require_tool("llama-quantize", f"GGUF type {type_name}")
    cmd = [str(tool), str(src), str(dst), type_name] + ([str(threads)] if threads else [])
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        tail = (res.stderr or res.stdout)[-800:]
        raise RuntimeError(f"llama-quantize failed (rc {res.returncode}): {tail}")
    return str(tool)
