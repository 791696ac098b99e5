"""`hiclr train`: hierarchical intra-modal correlation learning on a store."""

from __future__ import annotations

from pathlib import Path

import click

from hiclr_cli.common import echo_table, handle_errors, recipe_options


@click.command()
@click.option("--data", required=True, type=click.Path(file_okay=False), help="The store (from hiclr prepare …).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder: config, log, checkpoints.")
@click.option("--stages", default=None, metavar="LIST",
              help="baseline | I..V (Table 2 rows) | all | comma list of intraset,intrascene,interscene,feedback. "
                   "[default: the recipe's, else all]")
@click.option("--epochs", type=int, default=None, help="Override train.epochs.")
@click.option("--device", default=None, help="auto | cpu | cuda | cuda:N (override train.device).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from ckpt/last.pt with its own settings.")
@recipe_options
@handle_errors
def train(data: str, out: str, stages: str | None, epochs: int | None, device: str | None, resume: bool,
          recipe: str | None, overrides: tuple[str, ...]) -> None:
    """Train the 3D network of a recipe on DATA's train split into run folder OUT.

    Multi-GPU: torchrun --nproc_per_node=4 -m hiclr_cli.main train … (one process per GPU, same recipe;
    batch_size is per process)."""
    from hiclr.config import load_section
    from hiclr.train.config import TrainConfig, parse_stages
    from hiclr.train.loop import read_config
    from hiclr.train.loop import train as run_train

    stage_list = parse_stages(stages) if stages is not None else None
    if resume and recipe is None and not overrides and (Path(out) / "config.yaml").is_file():
        import dataclasses

        cfg = read_config(Path(out))
        changes = {k: v for k, v in {"epochs": epochs, "device": device, "stages": stage_list}.items() if v is not None}
        cfg = dataclasses.replace(cfg, **changes)
    else:
        cfg = load_section(TrainConfig, "train", recipe, overrides, epochs=epochs, device=device, stages=stage_list)
    res = run_train(data, out, cfg, resume=resume, progress=True)
    verb = "already trained (same settings; nothing to do)" if res.skipped else "trained"
    click.echo(f"{verb} {res.epochs_done} epochs, stages: {', '.join(cfg.stages) or 'baseline'} → {res.run_dir}")
    rows = [(k, f"{v:.4f}") for k, v in res.last.items()]
    echo_table(rows, header=("last epoch", "value"))
    if res.best_miou is not None:
        click.echo(f"best val mIoU {100 * res.best_miou:.2f} at epoch {res.best_epoch} (ckpt/best.pt)")
    click.echo(f"next: hiclr distill {out} --export {Path(out) / 'model.pt'}")
