"""Router catalog: benchmarked variants as routing targets, tiers from the cost/quality front, router exports."""

from __future__ import annotations

from .api import add_external, export, formats, tier

__all__ = ["add_external", "export", "formats", "tier"]
