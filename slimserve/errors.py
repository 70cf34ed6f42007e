"""Errors a user can act on. The CLI prints them as one paragraph and exits 2."""

from __future__ import annotations


class SlimserveError(Exception):
    """Base class for slimserve's own errors."""


class UserError(SlimserveError):
    """Bad input: names what was wrong (file, field) and what is allowed.

    >>> raise UserError("group size 48 is not supported", file="r.yaml", field="variants[0]...", allowed=[32, 64, 128])
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        field: str | None = None,
        allowed: object = None,
        hint: str | None = None,
    ):
        self.message, self.file, self.field, self.allowed, self.hint = message, file, field, allowed, hint
        super().__init__(self.render())

    def render(self) -> str:
        where = ": ".join(str(p) for p in (self.file, self.field) if p)
        text = f"{where}: {self.message}" if where else self.message
        if self.allowed is not None:
            allowed = self.allowed
            if isinstance(allowed, (list, tuple, set, frozenset)):
                allowed = ", ".join(str(a) for a in allowed)
            text += f" (allowed: {allowed})"
        if self.hint:
            text += f". {self.hint}"
        return text


class DependencyError(UserError):
    """An optional package is missing; the message carries the install command."""

    def __init__(self, package: str, purpose: str, install: str | None = None):
        cmd = install or f"pip install {package}"
        super().__init__(
            f"{purpose} needs the package '{package}', which is not installed", hint=f"Install it with: {cmd}"
        )
