"""`hiclr oversegment`: geometric consistency sets (ScanNet Segmentator rule) for every scene."""

from __future__ import annotations

import click

from hiclr_cli.common import echo_failures, exit_if_failed, handle_errors, recipe_options, run_options


@click.command()
@click.argument("data", type=click.Path(file_okay=False))
@click.option("--k-thresh", type=float, default=None,
              help="Felzenszwalb–Huttenlocher k: larger gives larger segments.  [default: 0.01]")
@click.option("--min-size", type=int, default=None, help="Merge segments smaller than this many points.  [default: 20]")
@click.option("--knn", type=int, default=None, help="Neighbours per point for scenes without faces.  [default: 10]")
@click.option("--split", default=None, help="Only the scenes of this split.  [default: all scenes]")
@recipe_options
@run_options
@handle_errors
def oversegment(data: str, k_thresh: float | None, min_size: int | None, knn: int | None, split: str | None,
                recipe: str | None, overrides: tuple[str, ...], workers: int, shard: str | None,
                overwrite: bool) -> None:
    """Write segments.npy for every scene of DATA: meshes use their faces, point clouds a kNN graph."""
    from hiclr.config import OversegmentConfig, load_section
    from hiclr.oversegment import run_oversegment
    from hiclr.runner import select_shard
    from hiclr.store import Store

    cfg = load_section(OversegmentConfig, "oversegment", recipe, overrides, k_thresh=k_thresh,
                       min_size=min_size, knn=knn)
    store = Store.open(data)
    ids = select_shard(store.scene_ids(split), shard)
    summary = run_oversegment(store, cfg, ids, workers=workers, overwrite=overwrite)
    done = [summary.results[s] for s in summary.done]
    click.echo(f"oversegment (k={cfg.k_thresh}, min_size={cfg.min_size}): {summary.line()}")
    if done:
        points = sum(r["points"] for r in done)
        seconds = sum(r["seconds"] for r in done)
        segs = sum(r["segments"] for r in done)
        click.echo(f"  {segs:,} segments over {points:,} points ({points / max(segs, 1):.0f} points per segment); "
                   f"{seconds / len(done):.2f} s per scene, {1e5 * seconds / max(points, 1):.2f} s per 100k points")
    echo_failures(summary)
    exit_if_failed(summary)
