"""`hiclr distill`: feedback distillation on its own and export of the inference model file."""

from __future__ import annotations

import click

from hiclr_cli.common import handle_errors, recipe_options


@click.command()
@click.argument("run", type=click.Path(file_okay=False, exists=True))
@click.option("--epochs", type=int, default=None,
              help="Continue the run this many epochs with feedback distillation (L_kl) on.  [default: 0]")
@click.option("--export", "export", type=click.Path(dir_okay=False), default=None,
              help="Write the 3D-only model file here (e.g. RUN/model.pt).")
@click.option("--checkpoint", type=click.Choice(["last", "best"]), default=None,
              help="Which checkpoint to export (best = by val mIoU, which uses ground truth).  [default: last]")
@click.option("--device", default=None, help="Device for the distillation epochs.")
@click.option("--data", type=click.Path(file_okay=False), default=None,
              help="The store the run was trained on, when it has moved.  [default: the path in RUN/run.json]")
@recipe_options
@handle_errors
def distill(run: str, epochs: int | None, export: str | None, checkpoint: str | None, device: str | None,
            data: str | None, recipe: str | None, overrides: tuple[str, ...]) -> None:
    """Feedback-distil RUN (from its checkpoint with the transformers) and/or export its 3D model.

    An interrupted `--epochs N` resumes when the same command is run again, to the same last epoch."""
    from hiclr.config import load_section
    from hiclr.distill import DistillConfig
    from hiclr.distill import distill as run_distill

    cfg = load_section(DistillConfig, "distill", recipe, overrides, epochs=epochs, checkpoint=checkpoint)
    res = run_distill(run, epochs=cfg.epochs, export=export, checkpoint=cfg.checkpoint, device=device, progress=True,
                      data=data)
    if res.trained is not None and res.trained.skipped:
        click.echo(f"already distilled to epoch {res.trained.epochs_done} by this command: nothing to train "
                   "(another --epochs N starts a new feedback phase)")
    elif res.trained is not None:
        click.echo(f"distilled to epoch {res.trained.epochs_done}: " + ", ".join(f"{k} {v:.4f}" for k, v in res.trained.last.items()))
    if res.model_path is not None:
        click.echo(f"exported {res.checkpoint} (epoch {res.epoch}) → {res.model_path}")
