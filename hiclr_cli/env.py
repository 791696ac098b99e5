"""`hiclr env`: versions, devices and importable sparse backends, for bug reports."""

from __future__ import annotations

import click

from hiclr_cli.common import handle_errors


@click.command()
@handle_errors
def env() -> None:
    """Print versions, devices and which sparse backends import."""
    from hiclr.envinfo import environment

    info = environment()
    width = max(len(k) for k in info)
    for key, value in info.items():
        click.echo(f"{key.ljust(width)}  {value}")
