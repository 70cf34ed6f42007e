"""Silence third-party progress bars that duplicate slimserve's own progress display, and one misfiring warning.

Each helper targets the `tqdm` of one named module, never tqdm as a whole, so every other bar still shows.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import logging
import re
import threading
from pathlib import Path

# compressed-tensors packs/unpacks layer by layer under a 210-step bar; the build and load print one line instead
CT_COMPRESSOR = "compressed_tensors.compressors.model_compressors.model_compressor"
# transformers' GGUF reader; the conversion already runs under slimserve's "converting ... (once)" status line
GGUF_READER = "transformers.modeling_gguf_pytorch_utils"

_lock = threading.Lock()
_depth: dict[str, int] = {}
_saved: dict[str, object] = {}


@contextlib.contextmanager
def no_tqdm(*module_names: str):
    """Within the block, the `tqdm` these modules imported draws nothing. Re-entrant and thread-safe."""
    mods = []
    for name in module_names:
        try:
            mod = importlib.import_module(name)
        except ImportError:  # an optional package that is absent draws no bar either
            continue
        if hasattr(mod, "tqdm"):
            mods.append(mod)
    with _lock:
        for mod in mods:
            if _depth.get(mod.__name__, 0) == 0:
                _saved[mod.__name__] = mod.tqdm
                mod.tqdm = functools.partial(mod.tqdm, disable=True)
            _depth[mod.__name__] = _depth.get(mod.__name__, 0) + 1
    try:
        yield
    finally:
        with _lock:
            for mod in mods:
                _depth[mod.__name__] -= 1
                if _depth[mod.__name__] == 0:
                    mod.tqdm = _saved.pop(mod.__name__)


def no_compression_bars():
    """Hide compressed-tensors' "Compressing model" / "Decompressing model" bars."""
    return no_tqdm(CT_COMPRESSOR)


def no_gguf_bars():
    """Hide transformers' "Converting and de-quantizing GGUF tensors" bar."""
    return no_tqdm(GGUF_READER)


# transformers 4.57.3-4.57.x warns "incorrect regex pattern" for *every* local folder saved by those versions; the
# bug it names (and the fix it offers) concerns Mistral tokenizers only, so the warning is dropped for other models.
MISTRAL_TYPES = ("mistral", "mistral3", "voxtral", "ministral", "pixtral")
TOKENIZER_LOGGER = "transformers.tokenization_utils_base"
_LOADING_FROM = re.compile(r"loading from '([^']+)'")


class _MisfiredMistralRegexWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        found = _LOADING_FROM.search(msg) if "incorrect regex pattern" in msg else None
        if found is None:
            return True
        try:
            model_type = json.loads((Path(found.group(1)) / "config.json").read_text()).get("model_type")
        except (OSError, ValueError, AttributeError):
            return True  # cannot tell: keep the warning
        return model_type in MISTRAL_TYPES


def drop_misfired_tokenizer_warning() -> None:
    """Install the filter above on transformers' tokenizer logger (idempotent); the CLI calls it once."""
    logger = logging.getLogger(TOKENIZER_LOGGER)
    if not any(isinstance(f, _MisfiredMistralRegexWarning) for f in logger.filters):
        logger.addFilter(_MisfiredMistralRegexWarning())
