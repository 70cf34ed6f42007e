"""Old import path of `slimserve.artifact.writers`."""

from .artifact.writers import WRITERS

__all__ = ["WRITERS"]
