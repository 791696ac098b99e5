"""`hiclr view`: one self-contained HTML page per scene (three.js inlined; opens offline)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from hiclr_cli.common import echo_warnings, handle_errors


@click.command()
@click.argument("data", type=click.Path(exists=True))
@click.option("--scene", "scene_id", default=None, metavar="ID",
              help="Scene of the store to show.  [default: the first scene of the val split]")
@click.option("--model", "model", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Model file from 'hiclr distill': adds its prediction and errors (required for a PLY).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="HTML file to write.  [default: DATA/pages/<scene>.html, or <ply stem>.html beside the PLY]")
@click.option("--max-points", type=int, default=300_000, show_default=True,
              help="Show at most this many points (a seeded uniform sample); IoU is always on all points. 0: all.")
@click.option("--device", default="auto", show_default=True, help="Device for --model predictions.")
@handle_errors
def view(data: str, scene_id: str | None, model: str | None, out: str | None, max_points: int, device: str) -> None:
    """Write an interactive 3D page of one scene: DATA is a store (with --scene) or a PLY (with --model).

    The page colours the points by RGB, ground truth, pseudo-labels, refined labels, the model's
    prediction, its errors or the geometric segments; its legend gives each class's IoU on this scene
    (scored as 'hiclr evaluate' scores); hovering a point shows its class under every source and the
    views that saw it. One file, no network: open it in any browser."""
    from hiclr.view import ply_scene, store_scene, write_page

    t0 = time.perf_counter()
    path = Path(data)
    if path.is_file():
        if path.suffix.lower() != ".ply":
            raise click.UsageError(f"{data}: give a store folder or a .ply file")
        if not model:
            raise click.UsageError("a PLY has no labels of its own: add --model MODEL_FILE")
        if scene_id:
            raise click.UsageError("--scene is for a store; a PLY is one scene")
        scene = ply_scene(path, model, device)
        target = Path(out) if out else path.with_suffix(".html")
    else:
        from hiclr.store import Store

        store = Store.open(path)
        if scene_id is None:
            ids = store.scene_ids("val") or store.scene_ids("all")
            scene_id = ids[0]
        scene = store_scene(store, scene_id, model, device)
        target = Path(out) if out else path / "pages" / f"{scene_id}.html"
    res = write_page(scene, target, max_points=max_points)
    shown = (f"{res.points_shown:,} points" if res.points_shown == res.points_total
             else f"{res.points_shown:,} of {res.points_total:,} points (decimated)")
    click.echo(f"{scene.title}: {shown}; sources: {', '.join('model' if s == 'pred' else s for s in res.sources)}")
    for s, miou in res.miou.items():
        if s != "gt":
            click.echo(f"  {'model' if s == 'pred' else s:8s} mIoU {'-' if miou is None else f'{100 * miou:.1f}'} % on this scene")
    echo_warnings([n for n in res.notes if n.startswith("the PLY")])
    click.echo(f"wrote {res.path} ({res.bytes / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s")
