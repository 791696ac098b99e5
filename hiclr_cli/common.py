"""What every subcommand shares: error reporting, common options, progress and printing."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(fn: F) -> F:
    """Turn every error into one red line and exit code 1 (`hiclr --debug` re-raises with the traceback).

    A :class:`HiclrError` prints its message and hint, and so does a full disk, a read-only file
    system or a missing permission (:func:`hiclr.errors.as_hiclr_error`); anything else (an OSError, a bug) prints its
    type, message and file on one line, with a pointer to ``--debug``. Click's own usage errors and
    exits pass through."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from hiclr.errors import as_hiclr_error, describe, one_line

        ctx = click.get_current_context()
        debug = bool((ctx.find_root().obj or {}).get("debug"))
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.secho(f"interrupted: {_resume_advice(ctx)}", fg="yellow", err=True)
            sys.exit(130)
        except Exception as exc:  # one line, not a traceback; --debug shows it
            if debug:
                raise
            known = as_hiclr_error(exc)  # a HiclrError, or a full disk / read-only store met outside the writers
            if known is not None:
                msg = f"error: {one_line(known.message)}" + (f" — hint: {one_line(known.hint)}" if known.hint else "")
                click.secho(msg, fg="red", err=True)
                sys.exit(1)
            click.secho(f"error: {describe(exc)} — hint: rerun with 'hiclr --debug …' for the traceback, "
                        "and report it if the input is valid", fg="red", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def _resume_advice(ctx: click.Context) -> str:
    """What to run after Ctrl-C: the same command, or with ``--resume`` for a command that has the
    flag and was not given it (train refuses to write into an unfinished run without it)."""
    has_flag = any(p.name == "resume" for p in ctx.command.params)
    if not has_flag or ctx.params.get("resume"):
        return "finished work is kept; rerun the same command to resume"
    return (f"the finished epochs are kept; to continue, rerun the same command with --resume added "
            f"({ctx.command_path} … --resume)")


def echo_warnings(warnings: list[str]) -> None:
    """One yellow line per warning of a result (the output was written, but read this)."""
    for w in warnings:
        click.secho(f"warning: {w}", fg="yellow", err=True)


def recipe_options(fn: F) -> F:
    """--recipe FILE and repeatable --set a.b=value."""
    fn = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                      help="Override a recipe setting, e.g. --set pseudolabel.noise=0.3 (repeatable).")(fn)
    fn = click.option("--recipe", type=click.Path(dir_okay=False), default=None,
                      help="Recipe YAML (defaults ← recipe ← --set ← options).")(fn)
    return fn


def run_options(fn: F) -> F:
    """--workers, --shard k/n, --overwrite, --scenes: how a per-scene step runs."""
    fn = click.option("--overwrite", is_flag=True, help="Redo scenes whose outputs exist with the same settings.")(fn)
    fn = click.option("--shard", default=None, metavar="K/N", help="Process only shard K of N (1-based), for job arrays.")(fn)
    fn = click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
                      help="Scenes processed in parallel (≥ 1).")(fn)
    return fn


def echo_table(rows: list[tuple[str, ...]], header: tuple[str, ...] | None = None) -> None:
    """Print an aligned text table."""
    allrows = ([header] if header else []) + rows
    if not allrows:
        return
    widths = [max(len(str(r[i])) for r in allrows) for i in range(len(allrows[0]))]
    for j, r in enumerate(allrows):
        click.echo("  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if header and j == 0:
            click.echo("  ".join("-" * w for w in widths))


def echo_failures(summary: Any) -> None:
    """One red line per scene that failed (a RunSummary's ``failed``: scene id → error), then one
    yellow line per note of the summary (inputs left out, and why)."""
    for sid, err in sorted(summary.failed.items()):
        click.secho(f"  failed {sid}: {err}", fg="red", err=True)
    for note in getattr(summary, "notes", []):
        click.secho(f"  note: {note}", fg="yellow", err=True)


def exit_if_failed(summary: Any) -> None:
    """Exit with status 1 when any scene failed: the finished ones are kept, a rerun resumes."""
    if summary.failed:
        sys.exit(1)
