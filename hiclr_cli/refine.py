"""`hiclr refine`: intra-set label refinement, the mode of each (segment, view) group of pairs."""

from __future__ import annotations

import click

from hiclr_cli.common import echo_failures, exit_if_failed, handle_errors, recipe_options, run_options


@click.command()
@click.argument("data", type=click.Path(file_okay=False))
@click.option("--per-view/--per-segment", default=None,
              help="Vote within each (segment, view) group (the paper), or once per segment over all views."
                   "  [default: per-view]")
@click.option("--split", default=None, help="Only the scenes of this split.  [default: all scenes]")
@recipe_options
@run_options
@handle_errors
def refine(data: str, per_view: bool | None, split: str | None, recipe: str | None, overrides: tuple[str, ...],
           workers: int, shard: str | None, overwrite: bool) -> None:
    """Write refined.npz for every scene of DATA from its pairs.npz and segments.npy."""
    from hiclr.config import RefineConfig, load_section
    from hiclr.refine import run_refine
    from hiclr.runner import select_shard
    from hiclr.store import Store

    cfg = load_section(RefineConfig, "refine", recipe, overrides, per_view=per_view)
    store = Store.open(data)
    ids = select_shard(store.scene_ids(split), shard)
    summary = run_refine(store, cfg, ids, workers=workers, overwrite=overwrite)
    done = [summary.results[s] for s in summary.done]
    click.echo(f"refine ({'per view' if cfg.per_view else 'per segment'}): {summary.line()}")
    if done:
        pairs = sum(r["pairs"] for r in done)
        changed = sum(r["changed"] for r in done)
        click.echo(f"  {changed:,} of {pairs:,} pair labels changed by the vote ({100 * changed / max(pairs, 1):.1f}%)")
    echo_failures(summary)
    exit_if_failed(summary)
