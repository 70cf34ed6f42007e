"""What a variant folder must be before anything reads it: only the files its manifest lists, in formats that hold
no code (safetensors, ONNX, JSON and plain text), each with the size and sha256 the manifest wrote.

Hashing every file on every load is slow for real models, so the stat (size, mtime) of each file whose hash matched
is remembered in `<catalog>/.verified/<name>.json`; a later load with the same stat and the same manifest hash skips
the hash. `slimserve catalog verify` (``full=True``) hashes everything again.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError, flag
from ..sources import sha256_file
from .manifest import MANIFEST, Manifest

# Formats that cannot carry code: no pickles (.bin, .pt, .pkl), no Python (.py).
SAFE_SUFFIXES = (".safetensors", ".onnx", ".onnx_data", ".data", ".json", ".txt", ".model", ".jinja", ".gguf")
CACHE_DIR = ".verified"

NO_VERIFY = flag("--no-verify", "verify=False")


def _refuse(path: Path, what: str, *, hint=None) -> UserError:
    return UserError(f"variant '{path.name}' refused: {what}", file=str(path), hint=hint)


def check_files(path: Path, manifest: Manifest) -> None:
    """Every file in the folder is listed, every listed file is a regular file inside the folder in a safe format."""
    root = path.resolve()
    listed = set(manifest.files)
    for rel in listed:
        p = path / rel
        if not p.resolve().is_relative_to(root) or p.is_symlink():
            raise _refuse(path, f"manifest file '{rel}' is a link or leaves the variant folder")
        if not rel.endswith(SAFE_SUFFIXES):
            raise _refuse(
                path,
                f"manifest lists '{rel}', a format slimserve does not load (it could hold a pickle or code)",
                hint=f"loadable formats: {', '.join(SAFE_SUFFIXES)}",
            )
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(path).as_posix()
        if p.is_dir() and not p.is_symlink():
            continue
        if rel != MANIFEST and rel not in listed:
            raise _refuse(path, f"file '{rel}' is not listed in its manifest (only listed files are loaded)")


def check_trust(path: Path, trust_remote_code: bool) -> None:
    """Refuse an artifact whose config asks for remote code unless the caller (never the artifact) allowed it."""
    cfg = path / "config.json"
    if trust_remote_code or not cfg.is_file():
        return
    try:
        data = json.loads(cfg.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise _refuse(path, f"config.json is not valid JSON ({e})") from None
    if isinstance(data, dict) and data.get("auto_map"):
        raise _refuse(
            path,
            "its config.json has an auto_map, so loading it would run Python code from the artifact; slimserve "
            "never takes trust_remote_code from an artifact",
            hint=("Pass ", flag("--trust-remote-code", "trust_remote_code=True"), " only if you trust its code"),
        )


def _cache_file(path: Path) -> Path | None:
    parent = path.parent
    return parent / CACHE_DIR / f"{path.name}.json" if (parent / "index.sqlite").exists() else None


def _load_cache(path: Path) -> dict:
    f = _cache_file(path)
    try:
        return json.loads(f.read_text()) if f and f.is_file() else {}
    except (OSError, ValueError):
        return {}


def _save_cache(path: Path, cache: dict) -> None:
    f = _cache_file(path)
    if f is None:
        return
    try:  # best effort: a read-only catalog just hashes again next time
        from ..util import atomic_write_text

        f.parent.mkdir(exist_ok=True)
        atomic_write_text(f, json.dumps(cache, sort_keys=True))
    except (OSError, UserError):
        pass


def verify_hashes(path: Path, manifest: Manifest, *, full: bool = False) -> int:
    """Check size and sha256 of every listed file; returns how many files were hashed (0: all from the stat cache)."""
    cache = {} if full else _load_cache(path)
    fresh, hashed = {}, 0
    for rel, entry in sorted(manifest.files.items()):
        p = path / rel
        if not p.is_file():
            raise _refuse(path, f"file '{rel}' listed in its manifest is missing", hint="rebuild it with --force")
        st = p.stat()
        if st.st_size != entry.bytes:
            raise _refuse(
                path,
                f"file '{rel}' has {st.st_size} bytes, its manifest says {entry.bytes} (changed or damaged)",
                hint=("Rebuild it with --force, or pass ", NO_VERIFY, " to load it anyway"),
            )
        stat = [st.st_size, st.st_mtime_ns, entry.sha256]
        if cache.get(rel) != stat:
            hashed += 1
            if sha256_file(p) != entry.sha256:
                raise _refuse(
                    path,
                    f"file '{rel}' does not match the sha256 in its manifest (changed or damaged)",
                    hint=("Rebuild it with --force, or pass ", NO_VERIFY, " to load it anyway"),
                )
        fresh[rel] = stat
    if fresh != cache:
        _save_cache(path, fresh)
    return hashed


def verify_variant(
    path: str | Path, manifest: Manifest | dict | None = None, *, verify: bool = True, full: bool = False,
    trust_remote_code: bool = False,
) -> Manifest:  # fmt: skip
    """Everything a load checks. `verify=False` skips only the hashes; the file list and trust checks always run."""
    path = Path(path)
    m = Manifest.read(path) if manifest is None else Manifest.of(manifest)
    check_files(path, m)
    check_trust(path, trust_remote_code)
    if verify:
        verify_hashes(path, m, full=full)
    return m
