"""manifest.json: what a variant is, how it was made and from what. Loaders read only this.

One typed model (`Manifest`) writes, reads and checks it; every consumer asks it (the model file of an ONNX export,
the export settings, the one-line method summary) instead of reading bare keys.

```python
m = Manifest.read(Path("catalog/smollm2-int4-g128"))
m.format, m.model_file, m.export_settings, m.method_summary
```
"""

from __future__ import annotations

import datetime as dt
import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import UserError
from ..sources import sha256_file

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
SUPPORTED_VERSIONS = (1,)  # a manifest without the key predates nothing: it is read as version 1
WEIGHT_SUFFIXES = (".safetensors", ".onnx", ".onnx_data", ".data", ".bin", ".gguf")


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StepRecord(_Part):
    """One recipe step as it ran: `method` (prune, quantize) or `format` (export) names the plugin."""

    kind: str = "?"
    method: str | None = None
    format: str | None = None
    settings: dict[str, Any] = {}
    summary: str | None = None
    seconds: float | None = None
    records: dict[str, Any] = {}

    @property
    def plugin(self) -> str:
        return self.method or self.format or "?"


class FileEntry(_Part):
    bytes: int
    sha256: str


class BaseInfo(_Part):
    source: str | None = None
    kind: str | None = None
    source_hash: str | None = None
    trust_remote_code: bool = False  # what the recipe asked for; loading never takes trust from here
    config: dict[str, Any] = {}


class RecipeInfo(_Part):
    name: str | None = None
    file: str | None = None
    hash: str | None = None
    file_sha256: str | None = None


class Manifest(_Part):
    """The typed manifest. Unknown keys are refused, so a newer format has to say so with `manifest_version`."""

    manifest_version: int = MANIFEST_VERSION
    name: str = ""  # the catalog checks it (a pattern, and the folder's own name)
    tier: str = ""
    reference: bool = False
    description: str | None = None
    format: str = "hf"
    method: str | None = None
    steps: list[StepRecord] = []
    gates: dict[str, Any] | None = None
    skipped_layers: dict[str, str] | list[str] = {}
    quantized_layers: dict[str, Any] | list[Any] | None = None
    params: int | None = None
    bits_per_weight: float | None = None
    size_bytes: int | None = None
    files: dict[str, FileEntry] = {}
    base: BaseInfo = BaseInfo()
    recipe: RecipeInfo = RecipeInfo()
    versions: dict[str, str] = {}
    built_at: str | None = None
    build_seconds: float | None = None
    quantization_config: dict[str, Any] | None = None  # written by the bitsandbytes and compressed-tensors writers
    gate_check: dict[str, Any] | None = None  # the build-time gate verdict

    # ------------------------------------------------------------------ reading and writing

    @classmethod
    def from_dict(cls, data: Any, *, file: str | None = None) -> Manifest:
        """Check the version, then the fields; a UserError names the file and the first bad field."""
        if not isinstance(data, dict):
            raise UserError(f"a manifest is a JSON object, not a {type(data).__name__}", file=file)
        version = data.get("manifest_version", MANIFEST_VERSION)
        if version not in SUPPORTED_VERSIONS:
            raise UserError(
                f"manifest_version {version!r} is not one this slimserve reads",
                file=file,
                field="manifest_version",
                allowed=list(SUPPORTED_VERSIONS),
                hint="upgrade slimserve, or rebuild the variant",
            )
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            err = e.errors(include_url=False)[0]
            where = ".".join(str(p) for p in err["loc"])
            raise UserError(f"invalid manifest: {err['msg']}", file=file, field=where) from None

    @classmethod
    def read(cls, path: str | Path) -> Manifest:
        """The manifest of the variant folder `path` (or of the manifest file itself)."""
        p = Path(path)
        mf = p if p.name == MANIFEST and p.is_file() else p / MANIFEST
        if not mf.is_file():
            raise UserError(f"'{p}' is not a slimserve variant (no {MANIFEST})")
        try:
            data = json.loads(mf.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise UserError(f"manifest is not valid JSON ({e})", file=str(mf)) from None
        return cls.from_dict(data, file=str(mf))

    @classmethod
    def of(cls, manifest: Manifest | dict) -> Manifest:
        """A Manifest from either form (catalog rows carry the JSON dict)."""
        return manifest if isinstance(manifest, Manifest) else cls.from_dict(manifest)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, with exactly the keys that were given (a hand-made manifest stays as it was)."""
        return self.model_dump(mode="json", exclude_unset=True)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def write(self, folder: Path) -> Path:
        """Write `folder/manifest.json`."""
        path = folder / MANIFEST
        path.write_text(self.to_json())
        return path

    # ------------------------------------------------------------------ answers

    @property
    def export_step(self) -> StepRecord | None:
        """The last export step (the one whose files the artifact holds), or None."""
        return next((s for s in reversed(self.steps) if s.kind == "export"), None)

    @property
    def export_settings(self) -> dict[str, Any]:
        step = self.export_step
        return dict(step.settings) if step else {}

    @property
    def model_file(self) -> str:
        """The ONNX graph file the export step wrote ("model.onnx" unless it recorded another name)."""
        step = self.export_step
        return str((step.records if step else {}).get("model_file", "model.onnx"))

    @property
    def graph(self) -> str:
        """ONNX graph flavour of an "onnx" export: "fused" (slimserve's runner) or "optimum"."""
        return str(self.export_settings.get("graph", "fused"))

    @property
    def method_summary(self) -> str:
        """One line on how the variant was made: the builder's own line, else one from the steps."""
        if self.method:
            return self.method
        parts = []
        for step in self.steps:
            extra = ",".join(
                f"{k}={step.settings[k]}"
                for k in ("bits", "group_size", "sparsity")
                if step.settings.get(k) is not None
            )
            parts.append(f"{step.kind}:{step.plugin}" + (f"({extra})" if extra else ""))
        if not parts:
            return "reference" if self.reference else "none"
        return " + ".join(parts)

    @property
    def status(self) -> str:
        """Catalog status at build: the build-time gate verdict, else reference/built."""
        return (self.gate_check or {}).get("status") or ("reference" if self.reference else "built")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("slimserve", "torch", "transformers", "compressed-tensors", "onnxruntime", "optimum-onnx"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


def file_table(root: Path) -> dict[str, dict]:
    files = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            files[p.relative_to(root).as_posix()] = {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
    return files


def weight_bytes(files: dict[str, dict]) -> int:
    return sum(f["bytes"] for name, f in files.items() if name.endswith(WEIGHT_SUFFIXES))


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
