"""The catalog: one folder per variant plus a SQLite index (WAL) that later stages extend.

A variant is built in `<root>/.staging/<name>-<pid>-<rand>/` and renamed into place only when
complete; the index row is committed after the rename. The folders are the truth: rows whose
folder is gone are dropped and folders without a row are indexed again when the catalog opens.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .artifact.manifest import MANIFEST, Manifest
from .errors import UserError, flag

STAGING = ".staging"

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


class Catalog:
    def __init__(self, root: Path):
        self.root = root
        self.index = root / "index.sqlite"

    @classmethod
    def open(cls, path: str | Path | None = None, *, create: bool = True) -> Catalog:
        root = Path(path) if path is not None else default_catalog_path()
        if not root.exists():
            if not create:
                raise UserError(f"catalog '{root}' does not exist", hint="Build one with: slimserve build RECIPE")
            root.mkdir(parents=True)
        elif not root.is_dir():
            raise UserError(f"catalog path '{root}' is not a directory")
        cat = cls(root)
        cat.ensure_schema(SCHEMA)
        cat._clean_staging()
        cat._reconcile()
        return cat

    # ------------------------------------------------------------------ sqlite

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

    # ------------------------------------------------------------------ reading

    def variants(self) -> list[VariantRow]:
        with self.connect() as con:
            rows = con.execute("SELECT * FROM variants ORDER BY name").fetchall()
        return [self._row(r) for r in rows]

    def names(self) -> list[str]:
        return [v.name for v in self.variants()]

    def get(self, name: str) -> VariantRow:
        with self.connect() as con:
            r = con.execute("SELECT * FROM variants WHERE name = ?", (name,)).fetchone()
        if r is None:
            raise UserError(
                f"no variant '{name}' in catalog '{self.root}'", allowed=self.names() or "(catalog is empty)"
            )
        return self._row(r)

    def exists(self, name: str) -> bool:
        return (self.root / name / MANIFEST).is_file()

    def _row(self, r: sqlite3.Row) -> VariantRow:
        d = dict(r)
        d["manifest"] = json.loads(d["manifest"])
        return VariantRow(path=self.root / d["name"], **d)

    # ------------------------------------------------------------------ writing

    @contextlib.contextmanager
    def staging(self, name: str):
        """A temporary folder for one variant; removed unless committed."""
        base = self.root / STAGING
        base.mkdir(exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{name}-{os.getpid()}-", dir=base))
        try:
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def commit(self, staged: Path, manifest: Manifest | dict, *, force: bool = False) -> VariantRow:
        """Rename the staged folder into place, then index it."""
        manifest = Manifest.of(manifest)
        name = manifest.name
        final = self.root / name
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
        try:
            os.rename(staged, final)
        except OSError:
            if old is not None:
                os.replace(old, final)
            raise UserError(f"variant '{name}' was created by another build at the same time") from None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        with self.transaction() as con:
            self._upsert(con, manifest)
        return self.get(name)

    def remove(self, name: str) -> None:
        row = self.get(name)
        trash = self.root / STAGING / f"{name}-{os.getpid()}-removed"
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
        on_disk = {p.name: p for p in self.root.iterdir() if p.is_dir() and (p / MANIFEST).is_file()}
        with self.connect() as con:
            indexed = {r[0] for r in con.execute("SELECT name FROM variants")}
        missing, gone = set(on_disk) - indexed, indexed - set(on_disk)
        if not missing and not gone:
            return
        with self.transaction() as con:
            for name in gone:
                con.execute("DELETE FROM variants WHERE name = ?", (name,))
            for name in missing:
                with contextlib.suppress(UserError):  # an unreadable manifest stays unindexed
                    self._upsert(con, Manifest.read(on_disk[name]))

    def _clean_staging(self) -> None:
        """Remove staging folders of builds whose process is gone (killed mid-way)."""
        base = self.root / STAGING
        if not base.is_dir():
            return
        for d in base.iterdir():
            parts = d.name.rsplit("-", 2)
            pid = int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None
            if pid is not None and not _alive(pid):
                shutil.rmtree(d, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
