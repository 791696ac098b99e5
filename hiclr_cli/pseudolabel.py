"""`hiclr pseudolabel`: label every view (dense CLIP, imported label maps or the synthetic oracle) and pair
points with pixels."""

from __future__ import annotations

from typing import Any

import click

from hiclr_cli.common import echo_failures, exit_if_failed, handle_errors, recipe_options, run_options


@click.command()
@click.argument("data", type=click.Path(file_okay=False))
@click.option("--labeler", type=click.Choice(["maskclip", "images", "oracle"]), default=None,
              help="Dense CLIP labels (see --dense), label maps of any 2D model (--labels-from), or the oracle"
                   " (synthetic data only: ground truth with controlled noise).  [default: maskclip]")
@click.option("--dense", type=click.Choice(["maskclip", "sclip", "clearclip", "naclip"]), default=None,
              help="CLIP's last block: maskclip (the paper's), sclip, clearclip or naclip (training-free, same"
                   " weights).  [default: maskclip]")
@click.option("--pamr-steps", type=click.IntRange(0), default=None,
              help="PAMR refinement of the dense CLIP labels along colour edges (NACLIP uses 10); 0 = off."
                   "  [default: 0]")
@click.option("--labels-from", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="With --labeler images: DIR/<scene_id>/<view:06d>.png, single-channel 8/16-bit class indices in"
                   " the store's class order, 255/65535 = no label; optional <view:06d>_conf.png confidence;"
                   " optional DIR/classes.txt, checked against the store.")
@click.option("--clip", "clip_model", default=None, metavar="NAME",
              help="open_clip ViT model name.  [default: ViT-B-16]")
@click.option("--clip-weights", default=None, metavar="TAG|PATH",
              help="open_clip pretrained tag (downloaded where there is internet) or a local checkpoint file"
                   " ('random' for random weights: smoke tests only).  [default: openai]")
@click.option("--noise", type=click.FloatRange(0.0, 1.0), default=None,
              help="Oracle only: noise level in [0, 1].  [default: 0.5]")
@click.option("--depth-test", type=click.Choice(["absolute", "relative"]), default=None,
              help="Visibility: |D − z| ≤ 0.05 m (absolute) or ≤ 0.25·D (relative).  [default: absolute]")
@click.option("--device", default=None, help="auto, cpu or cuda[:N].  [default: auto]")
@click.option("--split", default=None, help="Only the scenes of this split.  [default: all scenes]")
@recipe_options
@run_options
@handle_errors
def pseudolabel(data: str, labeler: str | None, dense: str | None, pamr_steps: int | None, labels_from: str | None,
                clip_model: str | None, clip_weights: str | None, noise: float | None,
                depth_test: str | None, device: str | None, split: str | None, recipe: str | None,
                overrides: tuple[str, ...], workers: int, shard: str | None, overwrite: bool) -> None:
    """Write pairs.npz (point, view, label, score) for every scene of DATA."""
    from hiclr.config import PseudolabelConfig, load_section
    from hiclr.pseudolabel import run_pseudolabel
    from hiclr.runner import select_shard
    from hiclr.store import Store

    cfg = load_section(PseudolabelConfig, "pseudolabel", recipe, overrides, labeler=labeler, dense=dense,
                       pamr_steps=pamr_steps, labels_from=labels_from, clip=clip_model,
                       clip_weights=clip_weights, noise=noise, depth_test=depth_test, device=device)
    store = Store.open(data)
    ids = select_shard(store.scene_ids(split), shard)
    summary = run_pseudolabel(store, cfg, ids, workers=workers, overwrite=overwrite)
    click.echo(f"pseudolabel ({_what(cfg)}): {summary.line()}")
    done = [summary.results[s] for s in summary.done]
    if done:
        views = sum(r["views"] for r in done)
        pairs = sum(r["pairs"] for r in done)
        seen = sum(r["points_seen"] for r in done)
        seconds = sum(r["seconds"] for r in done)
        click.echo(f"  {views:,} views, {pairs:,} pairs, {seen:,} points seen; {views / max(seconds, 1e-9):.1f} views/s")
    echo_failures(summary)
    exit_if_failed(summary)


def _what(cfg: Any) -> str:
    """The labeler in a few words; random CLIP weights are called what they are."""
    from hiclr.pseudolabel import RANDOM_WEIGHTS

    if cfg.labeler == "oracle":
        return f"oracle, noise {cfg.noise:g}"
    if cfg.labeler == "images":
        return f"label maps from {cfg.labels_from}"
    pamr = f" + PAMR {cfg.pamr_steps}" if cfg.pamr_steps else ""
    weights = cfg.clip_weights
    if weights.lower() in RANDOM_WEIGHTS:
        weights = "RANDOM weights: a smoke test, the labels mean nothing"
    return f"{cfg.dense}{pamr}, {cfg.clip} ({weights})"
