"""The one error type that library code raises for bad input or missing prerequisites.

Library code never prints or exits; it raises :class:`HiclrError` with a message that names the
file or setting at fault and a hint that says how to fix it. The CLI turns it into one red line.
"""

from __future__ import annotations


class HiclrError(Exception):
    """A user-facing error: ``message`` says what is wrong, ``hint`` says what to do about it."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class MissingDependencyError(HiclrError):
    """An optional dependency is needed at this point of use."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the optional package '{package}', which is not installed",
            f"pip install 'hiclr[{extra}]'",
        )
