"""The catalog: one folder per variant plus a SQLite index (WAL) that later stages extend.

A variant is built in `<root>/.staging/<name>-<pid>.<host>-<rand>/` and renamed into place only when
complete; the index row is committed after the rename. The folders are the truth: rows whose
folder is gone are dropped, and folders without a row or whose manifest differs from the row are indexed again
when the catalog opens. A folder is a variant only if its manifest's name is its own folder name and a valid
variant name; anything else is skipped with a warning. The names the catalog uses for itself are reserved.
Each bench run is also written as `.runs/<run_id>.json`, so the history survives a lost index.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .artifact.manifest import MANIFEST, Manifest
from .errors import UserError, flag
from .util import pid_alive

STAGING = ".staging"
RUNS = ".runs"  # one JSON file per bench run: the index's bench tables are rebuilt from them
INDEX = "index.sqlite"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")  # recipe.NAME_PATTERN
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _owner() -> str:
    """`<pid>.<host>` for staging folder names: on a catalog that several machines mount, a pid is only checked
    on the machine that wrote it (another machine's build is never judged dead and removed)."""
    return f"{os.getpid()}.{_HOST}"


# Names the catalog keeps for itself: a variant with one of these names would overwrite the index or the reports.
RESERVED = frozenset(
    {INDEX, f"{INDEX}-wal", f"{INDEX}-shm", f"{INDEX}-journal", "bench", "reports", "runs", "staging", "index"}
)
log = logging.getLogger("slimserve")

SCHEMA = """
CREATE TABLE IF NOT EXISTS variants (
    name TEXT PRIMARY KEY,
    tier TEXT NOT NULL,
    method TEXT NOT NULL,
    bits REAL,
    format TEXT NOT NULL,
    size_bytes INTEGER,
    params INTEGER,
    status TEXT NOT NULL,
    manifest TEXT NOT NULL,
    built_at TEXT
);
"""


def default_catalog_path() -> Path:
    return Path(os.environ.get("SLIMSERVE_CATALOG", "catalog"))


@dataclass
class VariantRow:
    name: str
    tier: str
    method: str
    bits: float | None
    format: str
    size_bytes: int | None
    params: int | None
    status: str
    manifest: dict
    path: Path
    built_at: str | None = None

    @property
    def artifact(self) -> Manifest:
        """The typed manifest (the `manifest` dict is its JSON form)."""
        return Manifest.of(self.manifest)


def check_name(name: str, *, field: str = "name", file: str | None = None) -> str:
    """A variant name that is safe as a folder name in the catalog (no path, not a reserved name)."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise UserError(
            f"'{name}' is not a valid variant name", field=field, file=file, allowed=f"the pattern {NAME_RE.pattern}"
        )
    if name in RESERVED:
        raise UserError(
            f"'{name}' is a name the catalog uses for itself", field=field, file=file, allowed="any other name"
        )
    return name


@contextlib.contextmanager
def _open_lock(path: Path):
    """An exclusive advisory lock held while a catalog is checked and reconciled on open."""
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class Catalog:
    def __init__(self, root: Path):
        self.root = root
        self.index = root / INDEX
        self.readonly = False
        self.recovered: str | None = None  # what was rebuilt when the index was unreadable

    @classmethod
    def open(cls, path: str | Path | None = None, *, create: bool = True) -> Catalog:
        root = Path(path) if path is not None else default_catalog_path()
        if not root.exists():
            if not create:
                raise UserError(f"catalog '{root}' does not exist", hint="Build one with: slimserve build RECIPE")
            root.mkdir(parents=True, exist_ok=True)  # two builds may create a new catalog at the same moment
        if not root.is_dir():
            raise UserError(f"catalog path '{root}' is not a directory")
        cat = cls(root)
        if not os.access(root, os.W_OK):  # read-only: work on a private copy of the index (list, show, verify)
            cat.readonly = True
            cat._private_index()
            cat.ensure_schema(SCHEMA)
            cat._reconcile()
        else:
            # Two processes opening at once must not judge each other's half-created index as damaged.
            with _open_lock(root / f"{INDEX}.lock"):
                cat._check_index()
                cat.ensure_schema(SCHEMA)
                cat._clean_staging()
                cat._reconcile()
        if cat.recovered:
            log.warning(cat.recovered)
        return cat

    def inside(self, rel: str | Path) -> Path:
        """root/rel, refused unless it resolves inside the catalog."""
        p = self.root / rel
        if not p.resolve().is_relative_to(self.root.resolve()):
            raise UserError(f"path '{rel}' leaves catalog '{self.root}'")
        return p

    # ------------------------------------------------------------------ sqlite

    def _private_index(self) -> None:
        """Copy the index of a read-only catalog into a temp file; what is written there is thrown away."""
        private = Path(tempfile.mkdtemp(prefix="slimserve-ro-")) / INDEX
        dst = sqlite3.connect(private)
        if self.index.is_file():
            with contextlib.suppress(sqlite3.DatabaseError):
                src = sqlite3.connect(f"file:{self.index.resolve()}?mode=ro&immutable=1", uri=True)
                src.backup(dst)
                src.close()
        dst.close()
        self.index = private

    @contextlib.contextmanager
    def connect(self):
        con = sqlite3.connect(self.index, timeout=60, isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA busy_timeout=60000")
            con.row_factory = sqlite3.Row
            yield con
        finally:
            con.close()

    @contextlib.contextmanager
    def transaction(self):
        """One write transaction: everything in it lands, or nothing does."""
        with self.connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def ensure_schema(self, sql: str) -> None:
        with self.connect() as con:
            con.executescript(sql)

    def _check_index(self) -> None:
        """An unreadable or emptied index is moved aside and rebuilt: variants from their manifests, bench runs
        from `.runs/` (by the bench store); `self.recovered` says what happened."""
        if not self.index.exists():
            return
        why = None
        if self.index.stat().st_size == 0:
            why = "is empty (0 bytes)"
        else:
            try:
                with self.connect() as con:
                    con.execute("SELECT count(*) FROM variants").fetchone()
                    bad = con.execute("PRAGMA quick_check").fetchone()[0]
                if bad != "ok":
                    why = f"is damaged ({bad})"
            except sqlite3.DatabaseError as e:
                why = f"is unreadable ({e})"
        if why is None:
            return
        aside = self.index.with_name(f"{INDEX}.corrupt-{os.getpid()}")
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.replace(f"{self.index}{suffix}", f"{aside}{suffix}")
        runs = len(list((self.root / RUNS).glob("*.json"))) if (self.root / RUNS).is_dir() else 0
        self.recovered = (
            f"catalog index {self.index} {why}: moved it to {aside.name}; rebuilt the variant list from the "
            f"manifests and the bench history from {runs} run file(s) in {RUNS}/"
        )

    # ------------------------------------------------------------------ reading

    def variants(self) -> list[VariantRow]:
        with self.connect() as con:
            rows = con.execute("SELECT * FROM variants ORDER BY name").fetchall()
        return [self._row(r) for r in rows]

    def names(self) -> list[str]:
        return [v.name for v in self.variants()]

    def get(self, name: str) -> VariantRow:
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise UserError(f"'{name}' is not a valid variant name", allowed=self.names() or "(catalog is empty)")
        with self.connect() as con:
            r = con.execute("SELECT * FROM variants WHERE name = ?", (name,)).fetchone()
        if r is None:
            raise UserError(
                f"no variant '{name}' in catalog '{self.root}'", allowed=self.names() or "(catalog is empty)"
            )
        return self._row(r)

    def exists(self, name: str) -> bool:
        return (self.inside(check_name(name)) / MANIFEST).is_file()

    def _row(self, r: sqlite3.Row) -> VariantRow:
        d = dict(r)
        d["manifest"] = json.loads(d["manifest"])
        return VariantRow(path=self.inside(check_name(d["name"])), **d)

    # ------------------------------------------------------------------ writing

    @contextlib.contextmanager
    def staging(self, name: str):
        """A temporary folder for one variant; removed unless committed."""
        check_name(name)
        base = self.root / STAGING
        base.mkdir(exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{name}-{_owner()}-", dir=base))
        try:
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def commit(self, staged: Path, manifest: Manifest | dict, *, force: bool = False) -> VariantRow:
        """Rename the staged folder into place, then index it."""
        manifest = Manifest.of(manifest)
        name = check_name(manifest.name, field="variants[].name")
        final = self.inside(name)
        manifest.write(staged)
        old = None
        if final.exists():
            if not force:
                raise UserError(
                    f"variant '{name}' already exists in catalog '{self.root}'",
                    hint=("Use ", flag("--force", "force=True"), " to replace it"),
                )
            old = staged.with_name(staged.name + ".old")
            os.replace(final, old)
            _hook("between-renames")  # a kill here leaves the old folder in .staging: the next open restores it
        try:
            os.rename(staged, final)
        except OSError:
            if old is not None:
                os.replace(old, final)
            raise UserError(f"variant '{name}' was created by another build at the same time") from None
        _hook("before-index")  # a kill here leaves a new folder and an old row: reconcile compares manifests
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        with self.transaction() as con:
            self._upsert(con, manifest)
        return self.get(name)

    def remove(self, name: str) -> None:
        row = self.get(name)
        self.inside(row.path.name)
        trash = self.root / STAGING / f"{name}-{_owner()}-removed"
        (self.root / STAGING).mkdir(exist_ok=True)
        os.replace(row.path, trash)
        with self.transaction() as con:
            con.execute("DELETE FROM variants WHERE name = ?", (name,))
        shutil.rmtree(trash, ignore_errors=True)

    def set_status(self, name: str, status: str) -> None:
        with self.transaction() as con:
            con.execute("UPDATE variants SET status = ? WHERE name = ?", (status, name))

    @staticmethod
    def _upsert(con, m: Manifest) -> None:
        con.execute(
            "INSERT OR REPLACE INTO variants (name, tier, method, bits, format, size_bytes, params, status, manifest,"
            " built_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                m.name,
                m.tier,
                m.method or "?",
                m.bits_per_weight,
                m.format,
                m.size_bytes,
                m.params,
                m.status,
                json.dumps(m.to_dict(), sort_keys=True),
                m.built_at,
            ),
        )

    def _reconcile(self) -> None:
        on_disk = {}
        for p in sorted(self.root.iterdir()):
            if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).is_file():
                m = self._folder_manifest(p)
                if m is not None:
                    on_disk[p.name] = json.dumps(m.to_dict(), sort_keys=True)
        with self.connect() as con:
            indexed = {r[0]: r[1] for r in con.execute("SELECT name, manifest FROM variants")}
        stale = [n for n, text in on_disk.items() if indexed.get(n) != text]
        gone = set(indexed) - set(on_disk)
        if not stale and not gone:
            return
        with self.transaction() as con:
            for name in gone:
                con.execute("DELETE FROM variants WHERE name = ?", (name,))
            for name in stale:
                self._upsert(con, Manifest.from_dict(json.loads(on_disk[name])))

    @staticmethod
    def _folder_manifest(p: Path) -> Manifest | None:
        """The folder's manifest, or None (with a warning naming the folder) when it is not a valid variant."""
        try:
            m = Manifest.read(p)
            if m.name != p.name:
                raise UserError(f"its manifest names it '{m.name}', not its folder name '{p.name}'")
            check_name(m.name, field="name", file=str(p / MANIFEST))
        except UserError as e:
            log.warning("skipped catalog folder %s: %s", p, e)
            return None
        return m

    def _clean_staging(self) -> None:
        """Remove staging folders of builds whose process is gone (killed mid-way). A replaced variant's old folder
        (`*.old`) is put back when its new folder never arrived, so a killed --force leaves old or new."""
        base = self.root / STAGING
        if not base.is_dir():
            return
        for d in base.iterdir():
            parts = d.name.rsplit("-", 2)
            pid, _, host = parts[1].partition(".") if len(parts) == 3 else ("", "", "")
            if not pid.isdigit() or host not in ("", _HOST) or pid_alive(int(pid)):
                continue  # not ours to judge, or still running ("" host: written before hosts were recorded)
            if d.name.endswith(".old") and NAME_RE.match(parts[0]) and not (self.root / parts[0]).exists():
                os.replace(d, self.root / parts[0])
                log.warning("restored variant %s from an interrupted replace", parts[0])
                continue
            shutil.rmtree(d, ignore_errors=True)


def _hook(point: str) -> None:
    """Test hook: tests monkeypatch this to stop a commit at a named point (a kill without timing)."""
