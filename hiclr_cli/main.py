"""The `hiclr` command group. Subcommands are imported lazily so `hiclr --help` never imports torch."""

from __future__ import annotations

import importlib

import click

from hiclr import __version__

# name → "module:attribute", in pipeline order. Only commands that do something are registered.
COMMANDS: dict[str, str] = {
    "env": "hiclr_cli.env:env",
    "prepare": "hiclr_cli.prepare:prepare",
    "pseudolabel": "hiclr_cli.pseudolabel:pseudolabel",
    "oversegment": "hiclr_cli.oversegment:oversegment",
    "refine": "hiclr_cli.refine:refine",
    "evaluate": "hiclr_cli.evaluate:evaluate",
    "train": "hiclr_cli.train:train",
    "distill": "hiclr_cli.distill:distill",
    "predict": "hiclr_cli.predict:predict",
    "view": "hiclr_cli.view:view",
}

# One-line help for each command, so `hiclr --help` can list them without importing them.
SHORT_HELP: dict[str, str] = {
    "env": "Print versions, devices and the sparse backends that import.",
    "prepare": "Turn a dataset (synthetic, ScanNet, nuScenes) into the hiclr store.",
    "pseudolabel": "Label every view with MaskCLIP (or the synthetic oracle) and pair points with pixels.",
    "oversegment": "Group points into geometric consistency sets (normal-based graph segmentation).",
    "refine": "Replace pseudo-labels by the mode of each (segment, view) group.",
    "train": "Train the 3D network with hierarchical intra-modal correlation learning.",
    "distill": "Feedback distillation and export of the final 3D-only model.",
    "evaluate": "Score a label array of the store (or a model's predictions): per-class IoU and mIoU.",
    "predict": "Label a PLY point cloud or mesh with a trained model, optionally with new prompts.",
    "view": "Write an interactive 3D page of a scene (every label source, IoU, errors) that opens offline.",
}
ORDER = ["env", "prepare", "pseudolabel", "oversegment", "refine", "train", "distill", "evaluate", "predict", "view"]


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(n, SHORT_HELP.get(n, "")) for n in self.list_commands(ctx)]
        with formatter.section("Commands (in pipeline order)"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hiclr")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """hiclr: label-free 3D semantic segmentation, distilled from CLIP and cleaned by geometry.

    Steps share one on-disk store; chain them or run any one alone.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def main() -> None:
    cli(obj={})


if __name__ == "__main__":
    main()
