"""Shared pieces of bench/fault_matrix.py: the case registry, the scratch environment with a built tiny catalog, and
helpers that run the CLI, catch UserErrors and logged warnings, and kill child processes for real."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPE = "version: 1\nname: t\nbase:\n  source: {base}\nvariants:\n{variants}"
Q8 = "  - {{name: {name}, tier: nano, steps: [{{quantize: {{method: rtn, bits: {bits}, group_size: null}}}}]}}\n"
CASES: dict[str, tuple[str, Callable]] = {}


def case(name: str, expected: str):
    def deco(fn):
        CASES[name] = (expected, fn)
        return fn

    return deco


class Env:
    """A scratch folder, the tiny base model, and a built template catalog that cases copy."""

    def __init__(self, work: Path):
        from slimserve.testing import make_tiny_llama

        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.tiny = work / "tiny-llama"
        if not (self.tiny / "config.json").is_file():
            make_tiny_llama(self.tiny)
        self.template = work / "template"
        if not (self.template / "index.sqlite").is_file():
            with contextlib.redirect_stderr(io.StringIO()):
                import slimserve

                slimserve.build(self.recipe("r.yaml", "a"), catalog=self.template)
        self.n = 0

    def recipe(self, file: str, *names: str, bits: int = 8) -> Path:
        p = self.work / file
        p.write_text(RECIPE.format(base=self.tiny, variants="".join(Q8.format(name=n, bits=bits) for n in names)))
        return p

    def catalog(self) -> Path:
        self.n += 1
        out = self.work / f"cat{self.n}"
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(self.template, out)
        return out


def cli(*argv: str) -> tuple[int, str]:
    """(exit code, stderr + stdout) of `slimserve ARGV` in this process."""
    from slimserve.cli import main

    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as e:
            rc = int(e.code or 0)
    return rc, (err.getvalue() + out.getvalue()).strip()


def warnings_of(fn) -> tuple[object, str]:
    """fn()'s result and what it logged to the slimserve logger."""
    import logging

    buf = io.StringIO()
    h = logging.StreamHandler(buf)
    lg = logging.getLogger("slimserve")
    lg.addHandler(h)
    try:
        return fn(), buf.getvalue().strip()
    finally:
        lg.removeHandler(h)


def refused(fn) -> str:
    from slimserve.errors import UserError

    try:
        fn()
    except UserError as e:
        return "refused: " + str(e).splitlines()[0]
    return "accepted"


def weights(cat: Path, name: str = "a") -> Path:
    return next((cat / name).glob("*.safetensors"))


def edit_manifest(folder: Path, fn) -> None:
    m = json.loads((folder / "manifest.json").read_text())
    fn(m)
    (folder / "manifest.json").write_text(json.dumps(m))


def child(code: str, env: Env) -> int:
    """Run python code in a child process (a real kill with os._exit), return its exit code."""
    e = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=e, capture_output=True).returncode


def run_case(name: str, env: Env) -> tuple[str, str, bool]:
    expected, fn = CASES[name]
    try:
        observed, ok = fn(env)
    except Exception as e:  # a traceback is the failure this matrix looks for
        observed, ok = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:120], False
    return expected, observed, ok
