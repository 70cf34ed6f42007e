"""The 26 cases of issue 12's hostile run that already behaved cleanly (kills of a plain build, concurrent builds, bad
recipes, YAML tags and bombs, path-like names) plus the bench flags, kept in the matrix so they stay clean."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

from _fault_kit import RECIPE, REPO, Env, case, child, cli

# ---------------------------------------------------------------- helpers


def snapshot(cat: Path) -> dict[str, tuple[int, int]]:
    """Every file under the catalog but the SQLite files (which a read may touch): size and mtime."""
    return {
        str(p.relative_to(cat)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(cat.rglob("*"))
        if p.is_file() and not p.name.startswith("index.sqlite")
    }


def unchanged(cat: Path, before: dict) -> bool:
    from slimserve.catalog import Catalog

    return snapshot(cat) == before and Catalog.open(cat).names() == ["a"]


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def last(out: str) -> str:
    return out.splitlines()[-1][:100] if out else "(no output)"


# ---------------------------------------------------------------- kill -9 during a plain build

PLAIN_KILL = """
import os, contextlib, io, tempfile
import slimserve, slimserve.catalog as c
from slimserve.artifact import writers
from slimserve.artifact.manifest import Manifest
die = lambda *a, **k: os._exit(9)
def after(fn):
    def wrapped(*a, **k):
        fn(*a, **k)
        os._exit(9)
    return wrapped
{patch}
with contextlib.redirect_stderr(io.StringIO()):
    slimserve.build({recipe!r}, catalog={cat!r})
"""
KILL_POINTS = {
    "staging folder just made": "c.tempfile.mkdtemp = after(tempfile.mkdtemp)",
    "writer starts": "writers.WRITERS._items['compressed-tensors'] = die",
    "writer done, before the manifest": (
        "writers.WRITERS._items['compressed-tensors'] = after(writers.WRITERS._items['compressed-tensors'])"
    ),
    "manifest written, before the rename": "Manifest.write = after(Manifest.write)",
    "after the rename, before the index": "c._hook = lambda p: os._exit(9) if p == 'before-index' else None",
    "inside the index transaction": "c.Catalog._upsert = staticmethod(die)",
}


def _kill_case(point: str, patch: str):
    @case(f"kill -9 of a plain build: {point}", "old variants intact; new one landed whole or not at all; staging gone")
    def fn(env: Env) -> tuple[str, bool]:
        from slimserve.catalog import Catalog

        cat = env.catalog()
        a_before = (cat / "a" / "manifest.json").read_text()
        recipe = env.recipe(f"pk{_slug(point)}.yaml", "b")
        rc = child(PLAIN_KILL.format(patch=patch, recipe=str(recipe), cat=str(cat)), env)
        names = Catalog.open(cat).names()
        staged = list((cat / ".staging").iterdir()) if (cat / ".staging").is_dir() else []
        landed = (cat / "b" / "manifest.json").is_file()
        if landed:  # the index must show exactly what is on disk
            whole = "b" in names and Catalog.open(cat).get("b").manifest == json.loads(
                (cat / "b" / "manifest.json").read_text()
            )
            again = "landed"
        else:  # not there at all: a rebuild just works
            rc2, _ = cli("build", recipe, "--catalog", cat)
            whole = "b" not in names and rc2 == 0 and "b" in Catalog.open(cat).names()
            again = f"absent, rebuild exit {rc2}"
        ok = rc == 9 and whole and not staged and (cat / "a" / "manifest.json").read_text() == a_before
        return f"child exit {rc}; b {again}; staging left: {len(staged)}; a unchanged", ok


for _point, _patch in KILL_POINTS.items():
    _kill_case(_point, _patch)


# ---------------------------------------------------------------- concurrent builds

BUILD = "import contextlib, io, slimserve\nwith contextlib.redirect_stderr(io.StringIO()):\n    slimserve.build({r!r}, catalog={c!r})"


def _concurrent_case(n: int):
    @case(f"{n} concurrent builds into one catalog", f"all {n} exit 0 and all {n} variants are listed")
    def fn(env: Env) -> tuple[str, bool]:
        import os

        from slimserve.catalog import Catalog

        cat = env.catalog()
        e = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
        names = [f"c{n}x{i}" for i in range(n)]
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", BUILD.format(r=str(env.recipe(f"{v}.yaml", v)), c=str(cat))],
                env=e,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for v in names
        ]
        rcs = [p.wait(timeout=300) for p in procs]
        got = Catalog.open(cat).names()
        return f"exits {rcs}; listed {got}", rcs == [0] * n and got == sorted(["a", *names])


for _n in (2, 4):
    _concurrent_case(_n)


# ---------------------------------------------------------------- bad recipes: exit 2 naming the field

V = "  - {{name: x, tier: nano, steps: [{{quantize: {{method: {method}, bits: {bits}, group_size: null}}}}]}}\n"
ok_variant = V.format(method="rtn", bits=8)
BAD_RECIPES = {
    "unknown field in a variant": (
        RECIPE.format(base="{base}", variants=ok_variant[:-2] + ", colour: red}\n"),
        "colour",
    ),
    "wrong type (bits: eight)": (RECIPE.format(base="{base}", variants=V.format(method="rtn", bits="eight")), "bits"),
    "unknown quantize method": (RECIPE.format(base="{base}", variants=V.format(method="magic", bits=8)), "magic"),
    "bits out of range (99)": (RECIPE.format(base="{base}", variants=V.format(method="rtn", bits=99)), "bits"),
    "duplicate variant names": (RECIPE.format(base="{base}", variants=ok_variant * 2), "unique"),
    "missing base": ("version: 1\nname: t\nvariants:\n" + ok_variant, "base"),
    "empty variants list": ("version: 1\nname: t\nbase:\n  source: {base}\nvariants: []\n", "variants"),
    "bad YAML syntax": ("version: 1\nname: t\nvariants: [unclosed\n", "not readable as YAML"),
    "unsupported version (2)": (
        RECIPE.format(base="{base}", variants=ok_variant).replace("version: 1", "version: 2"),
        "version",
    ),
    "invalid tier name": (
        RECIPE.format(base="{base}", variants=ok_variant.replace("tier: nano", "tier: 'Big Tier'")),
        "tier",
    ),
    "a step with two kinds": (
        RECIPE.format(base="{base}", variants="  - {name: x, tier: nano, steps: [{quantize: {}, prune: {}}]}\n"),
        "exactly one key",
    ),
    "recipe that is a YAML list": ("- just\n- a list\n", "mapping"),
}


def _bad_recipe_case(label: str, text: str, needle: str):
    @case(f"bad recipe: {label}", f"build exits 2 naming '{needle}'; catalog unchanged")
    def fn(env: Env) -> tuple[str, bool]:
        cat = env.catalog()
        before = snapshot(cat)
        p = env.work / f"bad-{_slug(label)}.yaml"
        p.write_text(text.replace("{base}", str(env.tiny)))
        rc, out = cli("build", p, "--catalog", cat)
        return f"exit {rc}: {last(out)}", rc == 2 and needle in out and unchanged(cat, before)


for _label, (_text, _needle) in BAD_RECIPES.items():
    _bad_recipe_case(_label, _text, _needle)


# ---------------------------------------------------------------- YAML tags and bombs


def _tag_case(label: str, tag: str):
    @case(f"YAML tag {label}", "exit 2 naming the tag; nothing constructed or run; catalog unchanged")
    def fn(env: Env) -> tuple[str, bool]:
        cat = env.catalog()
        before = snapshot(cat)
        marker = env.work / f"pwned-{_slug(label)}"
        p = env.work / f"tag-{_slug(label)}.yaml"
        p.write_text(f"version: 1\nname: {tag.format(marker=marker)}\nbase:\n  source: {env.tiny}\nvariants: []\n")
        rc, out = cli("build", p, "--catalog", cat)
        ok = rc == 2 and "python/" in out and not marker.exists() and unchanged(cat, before)
        return f"exit {rc}: {last(out)}", ok


_tag_case("!!python/object/apply:os.system", "!!python/object/apply:os.system ['touch {marker}']")
_tag_case("!!python/object:builtins.object", "!!python/object:builtins.object {{}}")

# Ten anchored lists, each holding the previous one nine times, under a real field: 9^10 leaves if anything expands.
LAUGHS = (
    "  revision: [&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol], "
    + ", ".join(f"&a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10))
    + "]\n"
)


@case("billion-laughs alias bomb (9^10 leaves)", "exit 2 in seconds, no memory blow-up; catalog unchanged")
def laughs(env: Env) -> tuple[str, bool]:
    cat = env.catalog()
    before = snapshot(cat)
    p = env.work / "laughs.yaml"
    p.write_text(f"version: 1\nname: t\nbase:\n  source: {env.tiny}\n" + LAUGHS + "variants:\n" + ok_variant)
    t0 = time.perf_counter()
    rc, out = cli("build", p, "--catalog", cat)
    dt = time.perf_counter() - t0
    ok = rc == 2 and "revision" in out and len(out) < 5000 and dt < 20 and unchanged(cat, before)
    return f"exit {rc} in {dt:.1f}s, {len(out)} chars: {last(out)}", ok


# ---------------------------------------------------------------- path-like variant names

PATH_NAMES = {
    "'../x'": '"../x"',
    "'a/b'": '"a/b"',
    "absolute '/tmp/…'": '"{abs}"',
    "'.'": '"."',
    "'..'": '".."',
    "with a NUL byte": '"a\\0b"',
    "with a space": '"a b"',
    "uppercase 'Upper'": '"Upper"',
}


def _name_case(label: str, quoted: str):
    @case(f"variant name {label}", "exit 2 naming variants[0].name and the name rule; nothing written anywhere")
    def fn(env: Env) -> tuple[str, bool]:
        cat = env.catalog()
        before = snapshot(cat)
        outside = env.work / f"abs-{_slug(label)}"
        name = quoted.format(abs=outside)
        p = env.work / f"name-{_slug(label)}.yaml"
        p.write_text(RECIPE.format(base=env.tiny, variants=ok_variant.replace("name: x", f"name: {name}")))
        rc, out = cli("build", p, "--catalog", cat)
        ok = rc == 2 and "name" in out and not outside.exists() and not (env.work / "x").exists()
        return f"exit {rc}: {last(out)}", ok and unchanged(cat, before)


for _label, _quoted in PATH_NAMES.items():
    _name_case(_label, _quoted)


# ---------------------------------------------------------------- bench flags checked before any work


def _flag_case(flag: str, value: str):
    @case(f"bench {flag} {value}", f"exit 2 naming {flag} in under a second of work; catalog unchanged")
    def fn(env: Env) -> tuple[str, bool]:
        cat = env.catalog()
        before = snapshot(cat)
        t0 = time.perf_counter()
        rc, out = cli("bench", "a", "--catalog", cat, "--target", "cpu", "--limit", "1", flag, value)
        dt = time.perf_counter() - t0
        return f"exit {rc} in {dt:.2f}s: {last(out)}", rc == 2 and flag in out and dt < 5 and unchanged(cat, before)


for _flag, _value in (("--threads", "-1"), ("--threads", "0"), ("--slo-ms", "-5")):
    _flag_case(_flag, _value)
