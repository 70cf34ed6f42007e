"""Catalog atomicity: staged builds, failures leave nothing, concurrent builds both land, kills leave it as it was."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import slimserve
from slimserve.catalog import Catalog
from slimserve.errors import UserError

from .helpers import write_recipe

ONE = "  - {{name: {name}, tier: nano, steps: [{{quantize: {{method: rtn, bits: 8, group_size: null, symmetric: true}}}}]}}\n"


def _recipe(tmp_path, tiny, *names, file="r.yaml"):
    return write_recipe(tmp_path / file, tiny, "".join(ONE.format(name=n) for n in names))


def _snapshot(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if "index.sqlite" not in p.name)


def test_failed_step_leaves_catalog_unchanged(tiny_llama_dir, tmp_path, monkeypatch):
    cat_dir = tmp_path / "cat"
    slimserve.build(_recipe(tmp_path, tiny_llama_dir, "a"), catalog=cat_dir)
    before = _snapshot(cat_dir)

    from slimserve import writers

    def boom(model, out, ctx):
        (out / "half-written.bin").write_bytes(b"x" * 10)
        raise RuntimeError("disk full")

    monkeypatch.setitem(writers.WRITERS._items, "compressed-tensors", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        slimserve.build(_recipe(tmp_path, tiny_llama_dir, "b", file="b.yaml"), catalog=cat_dir)
    assert _snapshot(cat_dir) == before
    assert Catalog.open(cat_dir).names() == ["a"]


def test_rerun_skips_up_to_date_variants(tiny_llama_dir, tmp_path):
    recipe, cat_dir = _recipe(tmp_path, tiny_llama_dir, "a"), tmp_path / "cat"
    first = slimserve.build(recipe, catalog=cat_dir)[0].manifest["built_at"]
    (again,) = slimserve.build(recipe, catalog=cat_dir)  # the same command twice in a row just works
    assert again.manifest["built_at"] == first


def test_existing_variant_from_another_recipe_needs_force(tiny_llama_dir, tmp_path):
    recipe, cat_dir = _recipe(tmp_path, tiny_llama_dir, "a"), tmp_path / "cat"
    first = slimserve.build(recipe, catalog=cat_dir)[0].manifest["built_at"]
    recipe.write_text(recipe.read_text().replace("group_size: null", "group_size: 32"))
    assert "group_size: 32" in recipe.read_text()
    with pytest.raises(UserError, match=r"r.yaml: variants\[\].name: variant\(s\) a already exist.*force=True") as e:
        slimserve.build(recipe, catalog=cat_dir)
    assert "--force" not in str(e.value) and "Use --force to rebuild" in e.value.render(cli=True)
    (row,) = slimserve.build(recipe, catalog=cat_dir, force=True)
    assert row.manifest["built_at"] >= first and Catalog.open(cat_dir).names() == ["a"]


def test_two_concurrent_builds_both_land(tiny_llama_dir, tmp_path):
    cat_dir = tmp_path / "cat"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "slimserve",
                "build",
                str(_recipe(tmp_path, tiny_llama_dir, n, file=f"{n}.yaml")),
                "--catalog",
                str(cat_dir),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in ("p1", "p2")
    ]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    cat = Catalog.open(cat_dir)
    assert cat.names() == ["p1", "p2"]
    assert all((v.path / "manifest.json").is_file() for v in cat.variants())


SLOW_CREATE = """
import sqlite3, sys, time
from pathlib import Path
from slimserve import catalog as C
orig = C.Catalog.ensure_schema
def slow(self, sql):  # stop between the WAL header and the tables, as a slow first open would
    con = sqlite3.connect(self.index)
    con.execute("PRAGMA journal_mode=WAL")
    con.close()
    Path(sys.argv[2]).touch()
    time.sleep(1.5)
    orig(self, sql)
C.Catalog.ensure_schema = slow
cat = C.Catalog.open(sys.argv[1])
print(cat.recovered, cat.names())
"""
OPEN_AFTER = """
import sys, time
from pathlib import Path
from slimserve.catalog import Catalog
while not Path(sys.argv[2]).exists():
    time.sleep(0.01)
cat = Catalog.open(sys.argv[1])
print(cat.recovered, cat.names())
"""


def test_a_catalog_opened_while_another_process_creates_it_is_not_judged_damaged(tmp_path):
    """Regression (a CI failure): a second build saw the first one's half-created index (WAL header, no tables yet)
    as damaged, moved it aside, and the first then found no tables."""
    root, ready = tmp_path / "cat", tmp_path / "ready"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(root), str(ready)], stdout=subprocess.PIPE, text=True)
        for code in (SLOW_CREATE, OPEN_AFTER)
    ]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0] and outs == ["None []", "None []"], outs
    assert not list(root.glob("index.sqlite.corrupt-*"))


def test_killed_build_leaves_catalog_as_it_was(tiny_llama_dir, tmp_path):
    cat_dir = tmp_path / "cat"
    slimserve.build(_recipe(tmp_path, tiny_llama_dir, "a"), catalog=cat_dir)
    before = _snapshot(cat_dir)
    # A build that stalls inside its step (after staging began) and is then killed with SIGKILL.
    code = textwrap.dedent(
        f"""
        import time, slimserve
        from slimserve.quant import rtn
        orig = rtn.apply
        def slow(model, cfg, ctx):
            (ctx.work_dir / "partial").write_text("x")
            print("staged", flush=True)
            time.sleep(60)
        import slimserve.methods  # registers the built-in methods, so the one below replaces rtn's
        import slimserve.steps as s
        s.STEPS["quantize"]._items["rtn"] = s.StepSpec("quantize", "rtn", rtn.RTNConfig, slow)
        slimserve.build({str(_recipe(tmp_path, tiny_llama_dir, "b", file="b.yaml"))!r}, catalog={str(cat_dir)!r})
        """
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "staged"
    assert any((cat_dir / ".staging").iterdir())
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    time.sleep(0.1)
    cat = Catalog.open(cat_dir)  # opening cleans the dead build's staging folder
    assert cat.names() == ["a"]
    assert _snapshot(cat_dir) == before


def test_a_catalog_another_build_creates_between_the_check_and_mkdir_opens(tmp_path, monkeypatch):
    """Two builds into a new catalog: both see no folder, the second's mkdir must not fail (seen in a full run)."""
    from pathlib import Path

    root = tmp_path / "cat"
    root.mkdir()  # what the other build just did
    real_exists = Path.exists
    monkeypatch.setattr(Path, "exists", lambda self, **kw: False if self == root else real_exists(self, **kw))
    assert Catalog.open(root).names() == []


def test_opening_cleans_only_this_machines_dead_staging_folders(tmp_path):
    """On a catalog several machines mount, a pid says nothing about another machine's build: its folder stays."""
    from slimserve import catalog as C

    Catalog.open(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has exited
    staging = tmp_path / ".staging"
    folders = {
        "mine-dead": staging / f"a-{pid}.{C._HOST}-x1",
        "mine-alive": staging / f"b-{C._owner()}-x2",
        "other-host": staging / f"c-{pid}.{'0' * 8 if C._HOST != '0' * 8 else '1' * 8}-x3",
        "old-format": staging / f"d-{pid}-x4",
    }
    for d in folders.values():
        d.mkdir(parents=True)
    Catalog.open(tmp_path)
    assert {k for k, d in folders.items() if d.exists()} == {"mine-alive", "other-host"}


def test_index_follows_folders(tiny_llama_dir, tmp_path):
    cat_dir = tmp_path / "cat"
    slimserve.build(_recipe(tmp_path, tiny_llama_dir, "a", "b"), catalog=cat_dir)
    cat = Catalog.open(cat_dir)
    cat.remove("a")
    assert cat.names() == ["b"] and not (cat_dir / "a").exists()
    with pytest.raises(UserError, match="no variant 'zzz'.*allowed: b"):
        cat.get("zzz")
