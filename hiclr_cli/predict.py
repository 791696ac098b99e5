"""`hiclr predict`: label any PLY point cloud or mesh with a trained model."""

from __future__ import annotations

from pathlib import Path

import click

from hiclr_cli.common import echo_table, echo_warnings, handle_errors


@click.command()
@click.argument("ply", type=click.Path(dir_okay=False, exists=True))
@click.option("--model", "model", required=True, type=click.Path(dir_okay=False, exists=True),
              help="Model file from 'hiclr distill RUN --export'.")
@click.option("--prompts", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Class names, one per line: embedded with the model's CLIP text tower (open vocabulary).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Output folder.  [default: <ply stem>_hiclr next to the PLY]")
@click.option("--clip-weights", default=None,
              help="CLIP weights for --prompts (open_clip tag, checkpoint path, or random).  [default: the model's]")
@click.option("--device", default="auto", show_default=True)
@handle_errors
def predict(ply: str, model: str, prompts: str | None, out: str | None, clip_weights: str | None, device: str) -> None:
    """Label every vertex of PLY: labelled PLY, labels.npy, legend and a PNG render.

    The model reads the vertex colours (red green blue); a PLY without them is labelled from
    mid-grey input, with a warning. Georeferenced coordinates are handled (shifted to a local
    origin and written back in the input's frame)."""
    from hiclr.predict import predict_ply

    out_dir = Path(out) if out else Path(ply).with_name(Path(ply).stem + "_hiclr")
    res = predict_ply(ply, model, out_dir, prompts=prompts, device=device, clip_weights=clip_weights, progress=True)
    rows = [(name, f"{n:,}", f"{100 * n / max(res.points, 1):.1f}") for name, n in res.counts.items() if n]
    echo_table(rows, header=("class", "points", "%"))
    for kind, path in res.files.items():
        click.echo(f"{kind}: {path}")
    echo_warnings(res.warnings)
