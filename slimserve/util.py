"""Small shared helpers."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import UserError


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write via a temporary file in the same folder, then rename: readers never see half a file."""
    p = Path(path)
    if not p.parent.exists():
        raise UserError(f"output folder '{p.parent}' does not exist", field="output")
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p
