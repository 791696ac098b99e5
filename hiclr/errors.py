"""The one error type that library code raises for bad input or missing prerequisites.

Library code never prints or exits; it raises :class:`HiclrError` with a message that names the
file or setting at fault and a hint that says how to fix it. The CLI turns it into one red line.
"""

from __future__ import annotations

import errno
import re
from pathlib import Path


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


# hiclr.store's temporaries: ``.<name>.<host>.<pid>.<8 hex>.tmp`` beside their target
_TEMPORARY = re.compile(r"^\.(.+)\.[^.]+\.\d+\.[0-9a-f]{8}\.tmp$")
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def write_error(path: Path | str, exc: OSError) -> HiclrError:
    """A full disk, a read-only file system or a missing permission as one error naming the file
    (the target, never the temporary it was being written through) and what to do."""
    path = Path(path)
    m = _TEMPORARY.match(path.name)
    if m:
        path = path.with_name(m.group(1))
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = f"free space on the disk holding {path.parent} (or write elsewhere), then rerun: finished files are kept"
    elif exc.errno == errno.EROFS:
        hint = f"{path.parent} is on a read-only file system: copy the store to a writable disk, or give another output folder"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        hint = f"make {path.parent} writable for you, or choose another output folder"
    else:
        hint = "check the disk and the folder, then rerun the same command"
    return HiclrError(f"{path}: cannot write ({reason})", hint)


def as_hiclr_error(exc: BaseException) -> HiclrError | None:
    """``exc`` as the user-facing error it stands for: itself, a disk or permission OSError that
    escaped the writers (a folder made, a lock opened) as :func:`write_error`, else None."""
    if isinstance(exc, HiclrError):
        return exc
    if not (isinstance(exc, OSError) and exc.errno in DISK_ERRNOS and exc.filename):
        return None
    if exc.errno in (errno.EACCES, errno.EPERM):  # reading or writing: say which file, not which way
        return HiclrError(f"{exc.filename}: {exc.strerror or 'permission denied'}",
                          "read access is needed to the inputs, write access to the output folder: fix the "
                          "permissions or choose another output folder")
    return write_error(exc.filename2 or exc.filename, exc)


def describe(exc: BaseException) -> str:
    """A one-line account of any exception: a HiclrError as it is, an OSError with its file."""
    known = as_hiclr_error(exc)
    if known is not None:
        return one_line(str(known))
    if isinstance(exc, OSError) and exc.filename:
        return one_line(f"{exc.filename}: {exc.strerror or exc}")
    return one_line(f"{type(exc).__name__}: {exc}")


def yaml_reason(exc: Exception) -> str:
    """PyYAML's error as ``line L, column C: problem`` (its caret drawing left out)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return one_line(f"{where}{problem}", 200)
