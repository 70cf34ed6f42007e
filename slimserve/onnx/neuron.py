"""Map a neuron-static recipe step onto `optimum-cli export neuron` commands for a real AWS Neuron device.

Neuron decoders are compiled once per (batch_size, sequence_length), so each bucket becomes one command writing
into its own folder. Two CLI generations exist: optimum-neuron <= 0.0.x (transformers-neuronx) takes
``--auto_cast_type`` and ``--num_cores``; later releases (NxD inference) take ``--torch_dtype`` and
``--tensor_parallel_size``. The style follows the installed optimum-neuron, or "legacy" when none is installed.

Not verified here: no Neuron device or optimum-neuron on the development machine. Only the argument mapping is
tested; ``export_neuron`` runs the commands where both exist.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ..errors import UserError

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
STYLES = ("legacy", "nxd")


def installed_style() -> str:
    """'nxd' for optimum-neuron >= 0.1, else 'legacy' (also when it is not installed)."""
    try:
        from importlib.metadata import version

        major, minor = (int(p) for p in version("optimum-neuron").split(".")[:2])
    except Exception:  # noqa: BLE001 - not installed or unparsable: the documented default
        return "legacy"
    return "nxd" if (major, minor) >= (0, 1) else "legacy"


def neuron_export_args(cfg, model_dir: str | Path, out_dir: str | Path, *, style: str | None = None) -> list[list[str]]:
    """One `optimum-cli export neuron` argv per (batch, sequence) bucket of a StaticExportConfig."""
    style = style or installed_style()
    if style not in STYLES:
        raise UserError(f"unknown optimum-neuron CLI style '{style}'", allowed=STYLES)
    cmds = []
    for b in sorted(cfg.batch_sizes):
        for s in sorted(cfg.sequence_lengths):
            argv = ["optimum-cli", "export", "neuron", "--model", str(model_dir), "--task", "text-generation",
                    "--batch_size", str(b), "--sequence_length", str(s)]  # fmt: skip
            if style == "legacy":
                argv += ["--auto_cast_type", cfg.auto_cast_type, "--num_cores", str(cfg.num_cores)]
            else:
                argv += ["--torch_dtype", DTYPES[cfg.auto_cast_type], "--tensor_parallel_size", str(cfg.num_cores)]
            argv.append(str(Path(out_dir) / f"b{b}_s{s}"))
            cmds.append(argv)
    return cmds


def neuron_unavailable() -> str | None:
    """None when optimum-cli with optimum-neuron and a Neuron device are present, else why not."""
    try:
        import optimum.neuron  # noqa: F401
    except ImportError:
        return "optimum-neuron is not installed (pip install optimum-neuron, on an AWS Inferentia/Trainium host)"
    if shutil.which("optimum-cli") is None:
        return "optimum-cli is not on PATH"
    if not any(Path("/dev").glob("neuron*")):
        return "no Neuron device (/dev/neuron*)"
    return None


def export_neuron(cfg, model_dir: Path, out_dir: Path) -> list[Path]:
    """Compile every bucket with optimum-cli (only on a Neuron host); UserError naming what is missing otherwise."""
    why = neuron_unavailable()
    if why:
        raise UserError(f"cannot compile for Neuron: {why}", hint="The neuron-static ONNX emulation runs anywhere")
    outs = []
    for argv in neuron_export_args(cfg, model_dir, out_dir):
        subprocess.run(argv, check=True)
        outs.append(Path(argv[-1]))
    return outs
