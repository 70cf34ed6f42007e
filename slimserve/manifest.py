"""Old import path of `slimserve.artifact.manifest`."""

from .artifact.manifest import MANIFEST_VERSION, Manifest, file_table, now_iso, versions, weight_bytes

__all__ = ["MANIFEST_VERSION", "Manifest", "file_table", "now_iso", "versions", "weight_bytes"]
