"""Old import path of `slimserve.artifact.loaders` (kept so `slimserve.loaders.load_variant` still works)."""

from .artifact.loaders import LOADERS, drop_qdq_wrappers, load, load_variant, read_manifest

__all__ = ["LOADERS", "drop_qdq_wrappers", "load", "load_variant", "read_manifest"]
