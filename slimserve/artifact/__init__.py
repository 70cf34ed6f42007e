"""The artifact stage: what a built variant is on disk.

`manifest` holds the typed manifest (written, read and version-checked in one place), `writers` the per-format
writers a build ends with, `loaders` the per-format loaders that read a variant back.
"""
