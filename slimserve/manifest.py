"""manifest.json: what a variant is, how it was made and from what. Loaders read only this."""

from __future__ import annotations

import datetime as dt
import platform
from importlib import metadata
from pathlib import Path

from .sources import sha256_file

MANIFEST_VERSION = 1
WEIGHT_SUFFIXES = (".safetensors", ".onnx", ".onnx_data", ".data", ".bin", ".gguf")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("slimserve", "torch", "transformers", "compressed-tensors", "onnxruntime", "optimum-onnx"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


def file_table(root: Path) -> dict[str, dict]:
    files = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "manifest.json":
            files[p.relative_to(root).as_posix()] = {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
    return files


def weight_bytes(files: dict[str, dict]) -> int:
    return sum(f["bytes"] for name, f in files.items() if name.endswith(WEIGHT_SUFFIXES))


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
