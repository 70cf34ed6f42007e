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
            f"folder {p.parent} does not exist", field="--output", hint="create it first or pick another path"
        )
    if p.is_dir():
        raise UserError(f"{p} is a folder, not a file path", field="--output")
    if p.is_symlink() or (p.exists() and not p.is_file()):
        # a rename would replace the link or the device node itself, not what it points at
        kind = "a symbolic link" if p.is_symlink() else "not a regular file (a device, pipe or socket)"
        raise UserError(f"{p} is {kind}; slimserve writes only regular files", field="--output")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    except OSError as e:
        raise UserError(f"cannot write in folder {p.parent} ({e.strerror})", field="--output") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; exports are ordinary files
        os.replace(tmp, p)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"could not write {p} ({e.strerror})", field="--output") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine (one owned by another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
