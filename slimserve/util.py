"""Small shared helpers."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import UserError


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write via a temporary file in the same folder, then rename: readers never see half a file."""
    p = Path(path)
    if not p.parent.is_dir():
        raise UserError(
            f"folder {p.parent} does not exist", field="output", hint="create it first or pick another path"
        )
    if p.is_dir():
        raise UserError(f"{p} is a folder, not a file path", field="output")
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; exports are ordinary files
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p
