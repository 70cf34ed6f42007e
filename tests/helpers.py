"""Shared test helpers (not fixtures)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def write_recipe(path: Path, base: str | Path, variants: str) -> Path:
    path.write_text(f"version: 1\nname: test\nbase:\n  source: {base}\nvariants:\n{variants}")
    return path


def run_cli(*args: str, env=None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "slimserve", *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd
    )
