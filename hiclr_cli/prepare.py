"""`hiclr prepare`: turn a dataset into the hiclr store. One subcommand per source."""

from __future__ import annotations

import click


@click.group()
def prepare() -> None:
    """Turn a dataset (synthetic rooms, ScanNet v2, nuScenes) into the hiclr store."""
