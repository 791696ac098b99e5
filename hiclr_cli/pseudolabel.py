"""`hiclr pseudolabel`: label every view (MaskCLIP or the synthetic oracle) and pair points with pixels."""

from __future__ import annotations

import click

from hiclr_cli.common import echo_failures, exit_if_failed, handle_errors, recipe_options, run_options


@click.command()
@click.argument("data", type=click.Path(file_okay=False))
@click.option("--labeler", type=click.Choice(["maskclip", "oracle"]), default=None,
              help="MaskCLIP dense labels, or the oracle (synthetic data only: ground truth with controlled noise)."
                   "  [default: maskclip]")
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
def pseudolabel(data: str, labeler: str | None, clip_model: str | None, clip_weights: str | None, noise: float | None,
                depth_test: str | None, device: str | None, split: str | None, recipe: str | None,
                overrides: tuple[str, ...], workers: int, shard: str | None, overwrite: bool) -> None:
    """Write pairs.npz (point, view, label, score) for every scene of DATA."""
    from hiclr.config import PseudolabelConfig, load_section
    from hiclr.pseudolabel import run_pseudolabel
    from hiclr.runner import select_shard
    from hiclr.store import Store

    cfg = load_section(PseudolabelConfig, "pseudolabel", recipe, overrides, labeler=labeler, clip=clip_model,
                       clip_weights=clip_weights, noise=noise, depth_test=depth_test, device=device)
    store = Store.open(data)
    ids = select_shard(store.scene_ids(split), shard)
    summary = run_pseudolabel(store, cfg, ids, workers=workers, overwrite=overwrite)
    what = f"oracle, noise {cfg.noise:g}" if cfg.labeler == "oracle" else f"MaskCLIP {cfg.clip} ({cfg.clip_weights})"
    click.echo(f"pseudolabel ({what}): {summary.line()}")
    done = [summary.results[s] for s in summary.done]
    if done:
        views = sum(r["views"] for r in done)
        pairs = sum(r["pairs"] for r in done)
        seen = sum(r["points_seen"] for r in done)
        seconds = sum(r["seconds"] for r in done)
        click.echo(f"  {views:,} views, {pairs:,} pairs, {seen:,} points seen; {views / max(seconds, 1e-9):.1f} views/s")
    echo_failures(summary)
    exit_if_failed(summary)
