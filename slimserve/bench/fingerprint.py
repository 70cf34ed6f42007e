"""Hardware and software fingerprint stored with every result."""

from __future__ import annotations

import hashlib
import os
import platform
import shlex
import socket
import sys
from importlib import metadata

FLAGS_OF_INTEREST = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "neon",
    "asimd",
)
PACKAGES = ("torch", "transformers", "onnxruntime", "onnxruntime-gpu", "optimum", "compressed-tensors", "slimserve")


def cpu_info() -> tuple[str, list[str]]:
    """(CPU model name, the SIMD/matrix flags that matter for inference kernels)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, val = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("", platform.machine(), platform.processor()):
                    model = val.strip()
                elif key in ("flags", "Features"):
                    flags.update(val.split())
    except OSError:
        pass
    return model, [f for f in FLAGS_OF_INTEREST if f in flags]


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


def gpu_info(device: str) -> tuple[str | None, float | None]:
    if not device.startswith("cuda"):
        return None, None
    import torch

    if not torch.cuda.is_available():
        return None, None
    props = torch.cuda.get_device_properties(0)
    return props.name, round(props.total_memory / 2**30, 1)


def command_line(argv: list[str] | None = None) -> str:
    argv = sys.argv if argv is None else argv
    prog = os.path.basename(argv[0]) if argv else "python"
    if prog == "__main__.py":  # `python -m package`: name the package, not its __main__ file
        prog = f"python -m {os.path.basename(os.path.dirname(argv[0]))}"
        return " ".join([prog, shlex.join(argv[1:])]).strip()
    return shlex.join([prog, *argv[1:]]) if argv else prog


def fingerprint(*, hardware_key: str, device: str, threads: int, command: str | None = None):
    """Fingerprint of this machine for a run on `device` with `threads` CPU threads."""
    from .record import Fingerprint

    model, flags = cpu_info()
    gpu, gpu_mem = gpu_info(device)
    return Fingerprint(
        hardware_key=hardware_key,
        cpu_model=model,
        cpu_flags=flags,
        cores=os.cpu_count() or 1,
        threads=threads,
        gpu_name=gpu,
        gpu_memory_gb=gpu_mem,
        versions=versions(),
        command=command if command is not None else command_line(),
        hostname_hash=hashlib.sha256(socket.gethostname().encode()).hexdigest()[:12],
    )


def fingerprint_id(fp) -> str:  # noqa: ANN001
    """Stable id of the hardware+software a result depends on (not the command), to group comparable runs."""
    key = "|".join(
        [
            fp.hardware_key,
            fp.cpu_model,
            ",".join(fp.cpu_flags),
            str(fp.cores),
            str(fp.threads),
            str(fp.gpu_name),
            fp.hostname_hash,
            ",".join(f"{k}={v}" for k, v in sorted(fp.versions.items())),
        ]
    )
    return hashlib.sha256(key.encode()).hexdigest()[:16]
