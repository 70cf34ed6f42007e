"""Errors a user can act on. The CLI prints them as one paragraph and exits 2.

A setting named in an error is an ``Option``, spelled as the caller spells it: ``str(e)`` (what Python callers see)
gives the API keyword (``force=True``), the CLI prints the flag (``--force``) with ``e.render(cli=True)``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Option:
    """One setting, spelled as a keyword of the Python API (``api``) and as a command-line flag (``cli``)."""

    api: str
    cli: str

    def __str__(self) -> str:
        return self.api


def flag(cli: str, api: str | None = None) -> Option:
    """``flag("--force", "force=True")``; without ``api`` the keyword is the flag's name (--eval-text: eval_text)."""
    return Option(api or cli.lstrip("-").replace("-", "_"), cli)


# Message and hint text: a string, or pieces where an Option renders as the caller spells it.
Text = str | Sequence[str | Option]


def render_text(text: Text | None, *, cli: bool = False) -> str:
    if text is None or isinstance(text, str):
        return text or ""
    return "".join((p.cli if cli else p.api) if isinstance(p, Option) else str(p) for p in text)


class SlimserveError(Exception):
    """Base class for slimserve's own errors."""


class UserError(SlimserveError):
    """Bad input: names what was wrong (file, field) and what is allowed.

    >>> raise UserError("group size 48 is not supported", file="r.yaml", field="variants[0]...", allowed=[32, 64, 128])
    >>> raise UserError("variant 'a' exists", hint=("Use ", flag("--force", "force=True"), " to replace it"))

    A ``field`` that is a flag (``field="--limit"``) is read as ``flag(field)``: ``limit`` from Python.
    """

    def __init__(
        self,
        message: Text,
        *,
        file: str | None = None,
        field: str | Option | None = None,
        allowed: object = None,
        hint: Text | None = None,
    ):
        if isinstance(field, str) and field.startswith("--"):
            field = flag(field)
        self.file, self.field, self.allowed = file, field, allowed
        self.text, self.hint_text = message, hint
        super().__init__(self.render())

    @property
    def message(self) -> str:
        return render_text(self.text)

    @property
    def hint(self) -> str | None:
        return render_text(self.hint_text) if self.hint_text else None

    def render(self, *, cli: bool = False) -> str:
        """The one-paragraph message; ``cli=True`` names settings by their command-line flags."""
        field = render_text([self.field], cli=cli) if isinstance(self.field, Option) else self.field
        where = ": ".join(str(p) for p in (self.file, field) if p)
        message = render_text(self.text, cli=cli)
        text = f"{where}: {message}" if where else message
        if self.allowed is not None:
            allowed = self.allowed
            if isinstance(allowed, (list, tuple, set, frozenset)):
                allowed = ", ".join(str(a) for a in allowed)
            text += f" (allowed: {allowed})"
        if self.hint_text:
            text += f". {render_text(self.hint_text, cli=cli)}"
        return text


class UserErrors(UserError):
    """Several independent problems with one input (a recipe file), reported together, one per line."""

    def __init__(self, message: str, errors: Sequence[UserError], *, file: str | None = None):
        self.errors = list(errors)
        super().__init__(message, file=file)

    def render(self, *, cli: bool = False) -> str:
        head = super().render(cli=cli)
        if len(self.errors) == 1:  # one line, the file named once
            only = copy.copy(self.errors[0])
            only.file = None if only.file == self.file else only.file
            return f"{head}: {only.render(cli=cli)}"
        lines = "\n".join(f"  {e.render(cli=cli)}" for e in self.errors)
        return f"{head} ({len(self.errors)} errors):\n{lines}"


class DependencyError(UserError):
    """An optional package is missing; the message carries the install command."""

    def __init__(self, package: str, purpose: str, install: str | None = None):
        cmd = install or f"pip install {package}"
        super().__init__(
            f"{purpose} needs the package '{package}', which is not installed", hint=f"Install it with: {cmd}"
        )


class GateRejected(SlimserveError):
    """Variants whose quality gates failed at build time (`gates: {check: build}`): they were not written.

    Not a UserError: the recipe was valid, the result was not good enough. The CLI exits 1. `rows` holds the
    variants that did land.
    """

    def __init__(self, rejected: dict[str, str], rows: list):
        self.rejected, self.rows = rejected, rows
        lines = "\n".join(f"  {name}: {why}" for name, why in rejected.items())
        super().__init__(
            f"{len(rejected)} variant(s) rejected by their gates at build time; nothing was written for them "
            f"({len(rows)} other variant(s) landed):\n{lines}"
        )
