"""Hostile and unlucky inputs against the catalog (issue 12): each case builds its own tiny situation, runs it, and
prints case | expected | observed. tests/test_fault_matrix.py runs every case as a test.

    python bench/fault_matrix.py [--out bench/results/fault_matrix.md]

Kills are real (os._exit in a child process) at points named by the catalog's test hook or at a patched function
(writer, manifest write, index upsert), never timed. bench/_fault_clean.py holds the cases that were already clean.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _fault_clean  # noqa: E402, F401  (registers the cases that were already clean)
from _fault_kit import (  # noqa: E402
    CASES,
    Q8,
    RECIPE,
    REPO,
    Env,
    case,
    child,
    cli,
    edit_manifest,
    refused,
    run_case,
    warnings_of,
    weights,
)

# ---------------------------------------------------------------- security


@case("remote code: manifest says trust, config has auto_map", "load refused, names auto_map, .py not run")
def remote_code(env: Env) -> tuple[str, bool]:
    import slimserve

    cat = env.catalog()
    d = cat / "a"
    (d / "evil.py").write_text(f"open({str(env.work / 'pwned')!r}, 'w').write('x')\n")
    cfg = json.loads((d / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForCausalLM": "evil.Model"}
    (d / "config.json").write_text(json.dumps(cfg))
    from slimserve.artifact.manifest import file_table

    edit_manifest(d, lambda m: (m["base"].update(trust_remote_code=True), m.update(files=file_table(d))))
    listed = refused(lambda: slimserve.load(d))  # the .py listed in the manifest: refused as code
    (d / "evil.py").unlink()
    edit_manifest(d, lambda m: m.update(files=file_table(d)))
    got = refused(lambda: slimserve.load(d))  # auto_map alone (code from the hub): refused too
    ok = listed.startswith("refused") and "auto_map" in got and not (env.work / "pwned").exists()
    return f"with evil.py: {listed[:60]}...; auto_map only: {got[:80]}", ok


@case("manifest name '../victim'", "folder skipped with a warning; remove '../victim' refused; victim kept")
def path_name(env: Env) -> tuple[str, bool]:
    from slimserve.catalog import Catalog

    cat = env.catalog()
    victim = env.work / "victim"
    victim.mkdir(exist_ok=True)
    edit_manifest(cat / "a", lambda m: m.update(name="../victim"))
    (cat / "index.sqlite").unlink()
    c, warned = warnings_of(lambda: Catalog.open(cat))
    got = refused(lambda: c.remove("../victim"))
    ok = c.names() == [] and "skipped catalog folder" in warned and victim.is_dir() and got.startswith("refused")
    return f"names={c.names()}; warning: {warned[:60]}...; {got}", ok


@case("manifest name differs from its folder", "folder skipped with a warning naming it")
def folder_mismatch(env: Env) -> tuple[str, bool]:
    from slimserve.catalog import Catalog

    cat = env.catalog()
    shutil.copytree(cat / "a", cat / "b")
    c, warned = warnings_of(lambda: Catalog.open(cat))
    return f"names={c.names()}; {warned[:80]}", c.names() == ["a"] and str(cat / "b") in warned


@case("flipped byte in the safetensors", "load and bench refused naming the file")
def flipped(env: Env) -> tuple[str, bool]:
    import slimserve

    cat = env.catalog()
    w = weights(cat)
    data = bytearray(w.read_bytes())
    data[-10] ^= 0xFF
    w.write_bytes(bytes(data))
    got = refused(lambda: slimserve.load(cat / "a"))
    rc, out = cli("bench", "a", "--catalog", cat, "--target", "cpu", "--limit", "1")
    return f"{got}; bench exit {rc}", w.name in got and rc == 2 and w.name in out


@case("every sha256 set to zeros", "load refused")
def zero_hashes(env: Env) -> tuple[str, bool]:
    import slimserve

    cat = env.catalog()
    edit_manifest(cat / "a", lambda m: [f.update(sha256="0" * 64) for f in m["files"].values()])
    got = refused(lambda: slimserve.load(cat / "a"))
    return got, "sha256" in got


@case("second load of an unchanged variant", "no file hashed again (size+mtime stat cache)")
def fast_path(env: Env) -> tuple[str, bool]:
    from slimserve.artifact.manifest import Manifest
    from slimserve.artifact.verify import verify_hashes

    cat = env.catalog()
    m = Manifest.read(cat / "a")
    first, second = verify_hashes(cat / "a", m), verify_hashes(cat / "a", m)
    return f"hashed {first} then {second} file(s)", first > 0 and second == 0


@case("flipped byte with the old mtime put back", "load misses it (fast path); `catalog verify` exits 2 naming it")
def verify_cmd(env: Env) -> tuple[str, bool]:
    from slimserve.artifact.verify import verify_variant

    cat = env.catalog()
    verify_variant(cat / "a")
    w = weights(cat)
    st = w.stat()
    data = bytearray(w.read_bytes())
    data[-10] ^= 0xFF
    w.write_bytes(bytes(data))
    os.utime(w, ns=(st.st_atime_ns, st.st_mtime_ns))
    rc, out = cli("catalog", "verify", "a", "--catalog", cat)
    return f"verify exit {rc}: {out.splitlines()[-1][:90]}", rc == 2 and w.name in out


@case("--no-verify on a changed file", "loads (explicit opt-out)")
def no_verify(env: Env) -> tuple[str, bool]:
    import slimserve

    cat = env.catalog()
    edit_manifest(cat / "a", lambda m: [f.update(sha256="0" * 64) for f in m["files"].values()])
    model, _ = slimserve.load(cat / "a", verify=False)
    return f"loaded {type(model).__name__}", model is not None


@case("model.safetensors replaced by pytorch_model.bin", "refused: not listed / not a loadable format; no unpickling")
def pickle_bin(env: Env) -> tuple[str, bool]:
    import slimserve

    cat = env.catalog()
    w = weights(cat)
    w.rename(w.with_name("pytorch_model.bin"))
    got = refused(lambda: slimserve.load(cat / "a", verify=False))
    return got, "pytorch_model.bin" in got


@case("unlisted file in a variant folder", "refused naming the file")
def unlisted(env: Env) -> tuple[str, bool]:
    import slimserve

    cat = env.catalog()
    (cat / "a" / "extra.py").write_text("print('hi')\n")
    got = refused(lambda: slimserve.load(cat / "a"))
    return got, "extra.py" in got


@case("variant named index.sqlite", "build exits 2 before any work; index intact")
def reserved_index(env: Env) -> tuple[str, bool]:
    cat = env.catalog()
    rc, out = cli("build", env.recipe("ri.yaml", "index.sqlite"), "--catalog", cat, "--force")
    return f"exit {rc}: {out.splitlines()[-1][:80]}", rc == 2 and (cat / "index.sqlite").is_file()


@case("variant named bench", "build exits 2; bench reports kept")
def reserved_bench(env: Env) -> tuple[str, bool]:
    cat = env.catalog()
    (cat / "bench").mkdir()
    (cat / "bench" / "report.md").write_text("x")
    rc, out = cli("build", env.recipe("rb.yaml", "bench"), "--catalog", cat, "--force")
    return f"exit {rc}: {out.splitlines()[-1][:80]}", rc == 2 and (cat / "bench" / "report.md").is_file()


# ---------------------------------------------------------------- durability

KILL = """
import os, contextlib, io
import slimserve, slimserve.catalog as c
c._hook = lambda point: os._exit(9) if point == {point!r} else None
with contextlib.redirect_stderr(io.StringIO()):
    slimserve.build({recipe!r}, catalog={cat!r}, force=True)
"""


@case("kill -9 between the two renames of --force", "next open restores the old variant")
def kill_renames(env: Env) -> tuple[str, bool]:
    from slimserve.catalog import Catalog

    cat = env.catalog()
    before = json.loads((cat / "a" / "manifest.json").read_text())["built_at"]
    rc = child(KILL.format(point="between-renames", recipe=str(env.recipe("k1.yaml", "a", bits=4)), cat=str(cat)), env)
    _, warned = warnings_of(lambda: Catalog.open(cat))
    after = json.loads((cat / "a" / "manifest.json").read_text())["built_at"]
    return f"child exit {rc}; {warned[:60]}", rc == 9 and after == before and Catalog.open(cat).names() == ["a"]


@case("kill -9 after the rename, before the index commit", "index shows the new manifest (compared by content)")
def kill_index(env: Env) -> tuple[str, bool]:
    from slimserve.catalog import Catalog

    cat = env.catalog()
    rc = child(KILL.format(point="before-index", recipe=str(env.recipe("k2.yaml", "a", bits=4)), cat=str(cat)), env)
    on_disk = json.loads((cat / "a" / "manifest.json").read_text())
    row = Catalog.open(cat).get("a")
    return f"child exit {rc}; index method {row.method!r}", rc == 9 and row.manifest == on_disk


def _one_run(cat: Path) -> None:
    from slimserve.bench.store import save_run
    from slimserve.catalog import Catalog

    sys.path.insert(0, str(REPO))
    from tests.router_helpers import record

    save_run(Catalog.open(cat), [record("a", usd_in=1.0, usd_out=2.0)], config={}, builds={})


@case("index.sqlite truncated to 0 bytes", "variants and bench history rebuilt; one message says so")
def index_empty(env: Env) -> tuple[str, bool]:
    from slimserve.bench.store import history
    from slimserve.catalog import Catalog

    cat = env.catalog()
    _one_run(cat)
    for f in cat.glob("index.sqlite*"):
        f.unlink()
    (cat / "index.sqlite").write_bytes(b"")
    c, warned = warnings_of(lambda: Catalog.open(cat))
    n = len(history(c))
    return f"{n} record(s); {warned[:70]}", n == 1 and c.names() == ["a"] and "1 run file" in warned


@case("index.sqlite partly overwritten with junk", "no traceback; rebuilt with one message")
def index_junk(env: Env) -> tuple[str, bool]:
    from slimserve.bench.store import history
    from slimserve.catalog import Catalog

    cat = env.catalog()
    _one_run(cat)
    for f in cat.glob("index.sqlite-*"):
        f.unlink()
    idx = cat / "index.sqlite"
    idx.write_bytes(b"garbage!" * 64 + idx.read_bytes()[512:])
    c, warned = warnings_of(lambda: Catalog.open(cat))
    n = len(history(c))
    return f"{n} record(s); {warned[:70]}", n == 1 and c.names() == ["a"] and "index" in warned


@case("a manifest.json that is a JSON list", "skipped with a warning naming the folder; build still works")
def manifest_list(env: Env) -> tuple[str, bool]:
    cat = env.catalog()
    (cat / "junk").mkdir()
    (cat / "junk" / "manifest.json").write_text("[1, 2]")
    (rc, out), warned = warnings_of(lambda: cli("catalog", "list", "--catalog", cat, "--json"))
    rc2, _ = cli("build", env.recipe("ml.yaml", "a"), "--catalog", cat)
    ok = rc == 0 and rc2 == 0 and str(cat / "junk") in warned
    return f"list exit {rc}, build exit {rc2}; {warned[:80]}", ok


@case("read-only catalog", "list and show work")
def read_only(env: Env) -> tuple[str, bool]:
    import slimserve.catalog as c

    cat = env.catalog()
    real = os.access
    c.os.access = lambda p, mode, *a, **k: False if mode == os.W_OK else real(p, mode, *a, **k)
    try:
        rc1, out1 = cli("catalog", "list", "--catalog", cat)
        rc2, _ = cli("catalog", "show", "a", "--catalog", cat)
    finally:
        c.os.access = real
    return f"list exit {rc1}, show exit {rc2}", rc1 == 0 and rc2 == 0 and "a" in out1


@case("disk full (ENOSPC) while writing a variant", "one line naming the file and the room needed; nothing left")
def enospc(env: Env) -> tuple[str, bool]:
    import errno

    from slimserve.artifact import writers

    cat = env.catalog()
    real = writers.WRITERS._items["compressed-tensors"]

    def full(model, out, ctx):
        raise OSError(errno.ENOSPC, "No space left on device", str(out / "model.safetensors"))

    writers.WRITERS._items["compressed-tensors"] = full
    try:
        rc, out = cli("build", env.recipe("full.yaml", "b"), "--catalog", cat)
    finally:
        writers.WRITERS._items["compressed-tensors"] = real
    staged = list((cat / ".staging").iterdir()) if (cat / ".staging").is_dir() else []
    line = out.splitlines()[-1]
    return f"exit {rc}: {line[:90]}", rc == 2 and "ENOSPC" in line and "MB" in line and not staged


@case("kill during GGUF conversion (temp folder left)", "the next conversion removes the stale temp folder")
def gguf_temp(env: Env) -> tuple[str, bool]:
    from slimserve.sources import _clean_stale_conversions

    bases = env.work / "bases"
    stale = bases / ".0123456789abcdef-999999-xyz"
    stale.mkdir(parents=True, exist_ok=True)
    _clean_stale_conversions(bases)
    return "stale folder " + ("kept" if stale.exists() else "removed"), not stale.exists()


# ---------------------------------------------------------------- bad input


def _recipe_check(path: Path) -> tuple[int, str]:
    return cli("recipe", "check", path)


@case("YAML nested 20,000 deep", "exit 2, names the file")
def deep_yaml(env: Env) -> tuple[str, bool]:
    p = env.work / "deep.yaml"
    p.write_text("[" * 20000 + "]" * 20000)
    rc, out = _recipe_check(p)
    return f"exit {rc}: {out.splitlines()[-1][:80]}", rc == 2 and "deep.yaml" in out


@case("recipe with 650k variant names (duplicate check)", "linear: seconds, not hours")
def many_variants(env: Env) -> tuple[str, bool]:
    import time

    from slimserve.recipe import variants_problems

    names = [f"v{i}" for i in range(650_000)] + ["v1"]
    t0 = time.perf_counter()
    problems = variants_problems(names, [False] * len(names))
    dt = time.perf_counter() - t0
    return f"{dt:.2f}s: {problems[0][:50]}", dt < 5.0 and "v1" in problems[0]


def _build_base(env: Env, base: Path, file: str) -> tuple[int, str]:
    p = env.work / file
    p.write_text(RECIPE.format(base=base, variants=Q8.format(name="x", bits=8)))
    return cli("build", p, "--catalog", env.work / "badbase-cat")


@case("base folder with only a config.json", "exit 2: no safetensors weights")
def base_config_only(env: Env) -> tuple[str, bool]:
    d = env.work / "cfg-only"
    d.mkdir(exist_ok=True)
    shutil.copy(env.tiny / "config.json", d / "config.json")
    rc, out = _build_base(env, d, "b1.yaml")
    return f"exit {rc}: {out.splitlines()[-1][:80]}", rc == 2 and "safetensors" in out


@case("base folder with a broken config.json", "exit 2: names config.json")
def base_broken(env: Env) -> tuple[str, bool]:
    d = env.work / "broken-base"
    shutil.copytree(env.tiny, d, dirs_exist_ok=True)
    (d / "config.json").write_text("{not json")
    rc, out = _build_base(env, d, "b2.yaml")
    return f"exit {rc}: {out.splitlines()[-1][:80]}", rc == 2 and "config.json" in out


@case("junk .gguf file", "exit 2: not a GGUF file")
def junk_gguf(env: Env) -> tuple[str, bool]:
    g = env.work / "junk.gguf"
    g.write_bytes(b"not a gguf at all" * 10)
    rc, out = _build_base(env, g, "b3.yaml")
    return f"exit {rc}: {out.splitlines()[-1][:80]}", rc == 2 and "GGUF" in out


@case("auto_map with a custom model_type, trust off", "exit 2: names base.trust_remote_code")
def base_auto_map(env: Env) -> tuple[str, bool]:
    d = env.work / "custom-base"
    shutil.copytree(env.tiny, d, dirs_exist_ok=True)
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(model_type="mycustom", auto_map={"AutoModelForCausalLM": "modeling.My"})
    (d / "config.json").write_text(json.dumps(cfg))
    rc, out = _build_base(env, d, "b4.yaml")
    return f"exit {rc}: {out.splitlines()[-1][:80]}", rc == 2 and "trust_remote_code" in out


@case("recipe path that is a directory", "exit 2: 'is a directory'")
def recipe_dir(env: Env) -> tuple[str, bool]:
    rc, out = cli("build", env.work, "--catalog", env.work / "dircat")
    return f"exit {rc}: {out.splitlines()[-1][:80]}", rc == 2 and "is a directory" in out


@case("-o /dev/full", "exit 2; the device node is untouched")
def dev_full(env: Env) -> tuple[str, bool]:
    import stat

    if not Path("/dev/full").exists():
        return "no /dev/full here", True
    rc, out = cli("recipe", "schema", "-o", "/dev/full")
    ok = rc == 2 and stat.S_ISCHR(os.stat("/dev/full").st_mode) and "--output" in out
    return f"exit {rc}: {out.splitlines()[-1][:80]}", ok


@case("-o onto a symbolic link", "exit 2; the link and its target are untouched")
def symlink_out(env: Env) -> tuple[str, bool]:
    target, link = env.work / "real.json", env.work / "link.json"
    target.write_text("keep")
    link.unlink(missing_ok=True)
    link.symlink_to(target)
    rc, out = cli("recipe", "schema", "-o", link)
    return f"exit {rc}: {out.splitlines()[-1][:80]}", rc == 2 and link.is_symlink() and target.read_text() == "keep"


@case("-o into /proc", "exit 2 naming --output")
def proc_out(env: Env) -> tuple[str, bool]:
    if not Path("/proc/self").exists():
        return "no /proc here", True
    rc, out = cli("recipe", "schema", "-o", "/proc/slimserve-test.json")
    return f"exit {rc}: {out.splitlines()[-1][:80]}", rc == 2 and "--output" in out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/slimserve-fault-matrix", help="scratch folder")
    ap.add_argument("--out", default=None, help="also write the table as Markdown here, and as JSON beside it (.json)")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    env = Env(Path(args.work))
    lines = ["| case | expected | observed | clean |", "|---|---|---|---|"]
    clean, rows = 0, []
    for name in CASES:
        expected, observed, ok = run_case(name, env)
        clean += ok
        rows.append({"case": name, "expected": expected, "observed": observed, "clean": ok})
        lines.append(f"| {name} | {expected} | {observed.replace('|', '/')} | {'yes' if ok else 'NO'} |")
        print(lines[-1], flush=True)
    command = f"python bench/fault_matrix.py --work {args.work} --out {args.out or '-'}"
    summary = f"\n{clean}/{len(CASES)} clean. Command: {command}"
    print(summary)
    if args.out:
        Path(args.out).write_text("# Fault matrix (issue 12)\n\n" + "\n".join(lines) + "\n" + summary + "\n")
        report = {"clean": clean, "cases": len(CASES), "command": command, "rows": rows}
        Path(args.out).with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    return 0 if clean == len(CASES) else 1


if __name__ == "__main__":
    sys.exit(main())
