"""A plain name -> object registry whose errors list the valid choices, and that loads its plugins itself.

A registry names the modules that fill it; they are imported on its first lookup (so `import slimserve` stays fast
and a missing extra breaks only what needs it). A plugin whose optional dependency is missing is remembered with the
reason, and the registry says so when that name is asked for:

    TARGETS = Registry("target", plugins=("slimserve.onnx.targets:onnx-cpu,onnx-cuda",))

An entry is a module, optionally followed by the names it registers (``module:name,name``) so that they can be
listed as unavailable when the module does not import. The plugin module imports the registry and registers into it
(``@TARGETS.register("onnx-cpu")``); the registry never imports its plugins at import time, so there is no cycle.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import UserError

T = TypeVar("T")


def _why(module: str, e: ImportError) -> str:
    """Why the plugin `module` is unavailable; re-raises an ImportError that is a bug rather than a missing extra."""
    missing = e.name or ""
    if missing == module or module.startswith(f"{missing}."):
        return f"{module} is missing"
    if not missing or missing == "slimserve" or missing.startswith("slimserve."):
        raise e  # a slimserve module importing a name that does not exist: a bug, not an optional dependency
    if isinstance(e, ModuleNotFoundError):
        return f"{missing.split('.')[0]} not installed"
    return str(e)


class Registry(Generic[T]):
    def __init__(self, kind: str, plugins: tuple[str, ...] = ()):
        self.kind = kind
        self.plugins = tuple(plugins)
        self._items: dict[str, T] = {}
        self._unavailable: dict[str, str] = {}  # name (or module, when it declares no names) -> why
        self._loaded = not self.plugins

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = obj
            return obj

        return deco

    def add(self, name: str, obj: T) -> T:
        return self.register(name)(obj)

    def load(self) -> None:
        """Import the plugin modules (once); remember why one did not import."""
        if self._loaded:
            return
        self._loaded = True  # first, so a plugin that looks the registry up while importing does not recurse
        for entry in self.plugins:
            module, _, declared = entry.partition(":")
            names = [n.strip() for n in declared.split(",") if n.strip()]
            before, fresh = len(self._items), module not in sys.modules
            try:
                importlib.import_module(module)
            except ImportError as e:
                why = _why(module, e)
                for n in names or [module]:
                    self._unavailable[n] = why
                continue
            if getattr(getattr(sys.modules.get(module), "__spec__", None), "_initializing", False):
                continue  # looked up while that very module is still importing: it registers when it finishes
            missing = [n for n in names if n not in self._items]
            if missing or (fresh and len(self._items) == before):  # a plugin list and its modules out of step
                what = ", ".join(missing) or "anything"
                raise RuntimeError(f"plugin module {module} did not register {self.kind} {what}: register it in "
                                   "that module with @<registry>.register(name)")  # fmt: skip

    def get(self, name: str, *, field: str | None = None, file: str | None = None) -> T:
        self.load()
        try:
            return self._items[name]
        except KeyError:
            pass
        if name in self._unavailable:
            raise UserError(f"{self.kind} '{name}' is not available: {self._unavailable[name]}", field=field, file=file)
        raise UserError(f"unknown {self.kind} '{name}'", field=field, file=file, allowed=self.choices())

    def names(self) -> list[str]:
        """The registered names (sorted); `unavailable()` has the ones whose plugin did not import."""
        self.load()
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        """(name, object) in the order the plugins are listed, then registration order: a plugin module imported
        early by someone else must not reorder, e.g., the CLI's help."""
        self.load()
        order = {entry.partition(":")[0]: i for i, entry in enumerate(self.plugins)}
        rank = {n: order.get(getattr(obj, "__module__", ""), len(order)) for n, obj in self._items.items()}
        return sorted(self._items.items(), key=lambda kv: rank[kv[0]])

    def unavailable(self) -> dict[str, str]:
        """name (or plugin module) -> why it is not available here."""
        self.load()
        return dict(self._unavailable)

    def choices(self) -> list[str]:
        """For error messages: every name, with the unavailable ones and their reason."""
        self.load()
        return sorted(self._items) + [f"{n} (unavailable: {why})" for n, why in sorted(self._unavailable.items())]

    def __contains__(self, name: object) -> bool:
        self.load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
