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


def one_line(text: str, limit: int = 400) -> str:
    """``text`` on one line (whitespace runs collapsed), cut to ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def describe(exc: BaseException) -> str:
    """A one-line account of any exception: a HiclrError as it is, an OSError with its file."""
    if isinstance(exc, HiclrError):
        return one_line(str(exc))
    if isinstance(exc, OSError) and exc.filename:
        return one_line(f"{exc.filename}: {exc.strerror or exc}")
    return one_line(f"{type(exc).__name__}: {exc}")


def yaml_reason(exc: Exception) -> str:
    """PyYAML's error as ``line L, column C: problem`` (its caret drawing left out)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return one_line(f"{where}{problem}", 200)
