"""Load llama.cpp from the prebuilt `llama-cpp-py-sync` wheel (PyPI; no compiling llama.cpp) for peer timings.

The wheel's libraries are linked on glibc 2.38 only for the C23 `__isoc23_strto*`/`sscanf` aliases. On an older glibc
(Debian 12 has 2.36) this helper copies the package to a temp dir, marks that one version requirement weak in the
ELF files and preloads a 4-function shim forwarding to the classic symbols (needs gcc). The package also forces
`embeddings = True` on every context, which makes llama.cpp copy hidden states for every token; the copy is patched
to honour the constructor's `embedding` flag, as llama-bench runs.
"""

from __future__ import annotations

import ctypes
import glob
import importlib
import importlib.util
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

SHIM_C = r"""
#include <stdlib.h>
#include <stdio.h>
#include <stdarg.h>
long __isoc23_strtol(const char *n, char **e, int b) { return strtol(n, e, b); }
unsigned long __isoc23_strtoul(const char *n, char **e, int b) { return strtoul(n, e, b); }
unsigned long long __isoc23_strtoull(const char *n, char **e, int b) { return strtoull(n, e, b); }
int __isoc23_sscanf(const char *s, const char *f, ...) { va_list a; va_start(a, f); int r = vsscanf(s, f, a); va_end(a); return r; }
"""


def _weaken(path: str, ver: bytes = b"GLIBC_2.38") -> None:
    """Set VER_FLG_WEAK on the `ver` entry of the ELF64 .gnu.version_r section, so a missing version is not fatal."""
    d = bytearray(Path(path).read_bytes())
    (shoff,) = struct.unpack_from("<Q", d, 0x28)
    shentsize, shnum, _ = struct.unpack_from("<HHH", d, 0x3A)
    secs = [struct.unpack_from("<IIQQQQIIQQ", d, shoff + i * shentsize) for i in range(shnum)]
    for s in secs:
        if s[1] != 0x6FFFFFFE:  # SHT_GNU_verneed
            continue
        strtab_off, off = secs[s[6]][4], s[4]
        for _ in range(s[7]):
            _, cnt, _, aux, nxt = struct.unpack_from("<HHIII", d, off)
            a = off + aux
            for _ in range(cnt):
                _, flags, _, name, anext = struct.unpack_from("<IHHII", d, a)
                start = strtab_off + name
                if bytes(d[start : d.index(0, start)]) == ver:
                    struct.pack_into("<H", d, a + 4, flags | 2)
                a += anext
            off += nxt
    Path(path).write_bytes(d)


def load_llama_cpp():
    """(Llama class, description) or (None, reason it cannot run here)."""
    spec = importlib.util.find_spec("llama_cpp_py_sync")
    if spec is None:
        return None, "llama.cpp is not installed (pip install llama-cpp-py-sync: prebuilt CPU wheel)"
    src = Path(next(iter(spec.submodule_search_locations)))
    try:  # the native library loads lazily: force it to see whether this glibc can load it
        from llama_cpp_py_sync import Llama
        from llama_cpp_py_sync._cffi_bindings import get_lib

        get_lib()
        return Llama, "llama-cpp-py-sync as installed (its contexts keep embeddings = True)"
    except Exception as e:  # noqa: BLE001
        if "GLIBC_2.38" not in str(e):
            return None, f"llama-cpp-py-sync does not load: {e}"
    if shutil.which("gcc") is None:
        return None, "llama-cpp-py-sync needs glibc 2.38 and no gcc is here to build the 4-symbol shim"
    tmp = Path(tempfile.mkdtemp(prefix="llamacpp-"))
    shutil.copytree(src, tmp / "llama_cpp_py_sync")
    for lib in glob.glob(str(tmp / "llama_cpp_py_sync" / "lib*.so*")):
        _weaken(lib)
    (tmp / "shim.c").write_text(SHIM_C)
    subprocess.run(
        ["gcc", "-O2", "-shared", "-fPIC", "-o", str(tmp / "libc23shim.so"), str(tmp / "shim.c")], check=True
    )
    ctypes.CDLL(str(tmp / "libc23shim.so"), mode=ctypes.RTLD_GLOBAL)
    for name in [m for m in sys.modules if m.startswith("llama_cpp_py_sync")]:
        del sys.modules[name]
    sys.path.insert(0, str(tmp))
    from llama_cpp_py_sync import Llama

    return _patched_embeddings(Llama), f"llama-cpp-py-sync (glibc-2.38 shim in {tmp})"


def _patched_embeddings(cls):
    """Source-patch `ctx_params.embeddings = True` to follow the `embedding` argument (default False)."""
    import inspect

    mod = sys.modules[cls.__module__]
    path = inspect.getsourcefile(mod)
    text = Path(path).read_text()
    forced = "        ctx_params.embeddings = True\n"
    if forced in text and os.access(path, os.W_OK) and "llamacpp-" in path:
        Path(path).write_text(text.replace(forced, "        ctx_params.embeddings = bool(embedding)\n"))
        del sys.modules[cls.__module__]
        mod = importlib.import_module(cls.__module__)
        return mod.Llama
    return cls
