"""bench/gpu_check.sh without a GPU: its flags, the no-GPU skip (exit 77), and a --dry-run on CPU that goes through
every step (tiny model, target cpu) and writes the one table; plus the table's vLLM line from a recorded row."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "bench" / "gpu_check.sh"
BASH = shutil.which("bash")
no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the skip path does not apply")


def run(*args, env=None, timeout=120):
    env = {**os.environ, "PYTHON": sys.executable, **(env or {})}
    env.pop("OUT", None)
    return subprocess.run(
        [BASH, str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_script_syntax():
    for script in ("gpu_check.sh", "gpu_wheels.sh"):
        r = subprocess.run(["bash", "-n", str(REPO / "bench" / script)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


def test_help_lists_flags_and_exit_codes():
    r = run("--help")
    assert r.returncode == 0
    for flag in ("--dry-run", "--out", "--variants", "--skip-vllm", "--timeout", "--wheelhouse", "77"):
        assert flag in r.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--frob"], "unknown flag '--frob' (allowed: --dry-run, --out DIR, --variants LIST, --skip-vllm"),
        (["--variants", "int3"], "--variants: unknown variant 'int3' (allowed: fp32, int8, int4)"),
        (["--variants", "int4,"], "--variants: an empty name in 'int4,' (allowed: fp32, int8, int4)"),
        (["--timeout", "5"], "--timeout: '5' is not a number of seconds in 60..3600"),
        (["--timeout", "abc"], "--timeout: 'abc' is not a number of seconds in 60..3600"),
        (["--new-tokens", "2"], "--new-tokens: '2' is not an integer in 4..1024"),
        (["--out"], "--out needs a value"),
        (["--wheelhouse", "/nonexistent/wheels"], "--wheelhouse: '/nonexistent/wheels' is not a folder"),
    ],
)
def test_bad_flag_exits_2_naming_it(args, message, tmp_path):
    r = run(*args, "--out", str(tmp_path / "o")) if args != ["--out"] else run(*args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr
    assert not (tmp_path / "o").exists()  # nothing runs, nothing is written


@no_gpu
def test_no_nvidia_smi_skips_with_reason(tmp_path):
    bare = tmp_path / "bin"  # a PATH with bash's tools but no nvidia-smi
    bare.mkdir()
    for tool in ("mkdir", "tee", "date", "hostname", "cat", "dirname"):
        found = subprocess.run(["bash", "-c", f"command -v {tool}"], capture_output=True, text=True).stdout.strip()
        if found:
            (bare / tool).symlink_to(found)
    r = run("--out", str(tmp_path / "o"), env={"PATH": str(bare)})
    assert r.returncode == 77, r.stdout + r.stderr
    assert "SKIP: no GPU: nvidia-smi not found" in r.stdout
    assert (tmp_path / "o" / "table.md").read_text().startswith("skipped: no GPU: nvidia-smi not found")


def _wheel(folder: Path) -> Path:
    """A minimal pure-Python wheel, so the carried-wheels install runs offline here."""
    folder.mkdir()
    path = folder / "gpucheckprobe-1.0-py3-none-any.whl"
    info = "gpucheckprobe-1.0.dist-info"
    files = {
        "gpucheckprobe.py": "VALUE = 1\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: gpucheckprobe\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
        z.writestr(f"{info}/RECORD", "".join(f"{n},,\n" for n in files) + f"{info}/RECORD,,\n")
    return folder


@no_gpu
def test_torch_without_cuda_skips_with_reason_after_installing_wheels(tmp_path):
    fake = tmp_path / "bin"  # an nvidia-smi that answers, so the torch check is the one that refuses
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\necho 'Fake GPU, 1 MiB, 0.0'\n")
    (fake / "nvidia-smi").chmod(0o755)
    env = {"PATH": f"{fake}:{os.environ['PATH']}", "TMPDIR": str(tmp_path)}
    r = run("--out", str(tmp_path / "o"), "--wheelhouse", str(_wheel(tmp_path / "whl")), env=env)
    assert r.returncode == 77, r.stdout + r.stderr
    assert "Fake GPU" in r.stdout and "installing 1 wheels" in r.stdout
    assert (tmp_path / "gpu_check_site" / "gpucheckprobe.py").is_file()
    assert "SKIP: no GPU: torch.cuda.is_available() is False" in r.stdout


def test_dry_run_on_cpu_writes_the_table(tmp_path):
    out = tmp_path / "out"
    r = run("--dry-run", "--out", str(out), "--variants", "int8,int4", timeout=240)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    table = (out / "table.md").read_text()
    assert table in r.stdout  # printed and written
    rows = [line for line in table.splitlines() if line.startswith("| gpu-")]
    assert [row.split(" | ")[:3] for row in rows] == [
        ["| gpu-int8", "cpu", "slimserve torch-dynamic-kv"],
        ["| gpu-int4", "cpu", "slimserve torch-dynamic-kv"],
        ["| gpu-int4", "cuda", "vllm"],
    ]
    assert "skipped: dry run (vLLM needs a GPU)" in rows[2]
    bench = json.loads((out / "bench.json").read_text())
    assert [b["variant"] for b in bench] == ["gpu-int8", "gpu-int4"]
    for b in bench:  # measured, not placeholders
        assert b["tok_s"] > 0 and b["batch"] == 2 and b["batch_tok_s"] > 0 and b["peak_mem_mb"] > 0
    # only results come back from a device machine (8 files at most): the models stay in a temporary folder
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= 8 and not list(out.rglob("*.safetensors"))
    assert (out / "gpu_check.log").read_text().count("== ") >= 5


def _helper():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "bench" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_table_has_the_vllm_line(tmp_path):
    gc = _helper()
    row = gc._vllm_row("gpu-int4", "vllm cuda-graphs", tokens=16 * 64, wall=2.0, requests=16, new_tokens=64)
    row["peak_mem_mb"] = 70000.0
    (tmp_path / "vllm.json").write_text(json.dumps(row))
    (tmp_path / "cuda_tests.txt").write_text("tests/test_bench_cuda.py: 3 passed in 4.20s\n")
    text = gc.table(tmp_path)
    assert text.endswith("\n\ntests/test_bench_cuda.py: 3 passed in 4.20s\n")
    (line,) = [x for x in text.splitlines() if "vllm" in x]
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[:5] == ["gpu-int4", "cuda", "vllm cuda-graphs", "32.0", "512.0 (16)"]
    assert cells[7] == "70,000" and "all 16 done in 2.00 s" in cells[8]
    assert "no results: the bench step failed" in text  # no bench.json: said, not left blank
