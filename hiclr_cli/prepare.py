"""`hiclr prepare`: turn a dataset into the hiclr store. One subcommand per source."""

from __future__ import annotations

from pathlib import Path

import click

from hiclr_cli.common import (
    echo_failures,
    echo_table,
    exit_if_failed,
    handle_errors,
    recipe_options,
    run_options,
)


@click.group()
def prepare() -> None:
    """Turn a dataset (synthetic rooms, ScanNet v2, nuScenes) into the hiclr store."""


@prepare.command()
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Store folder to write (created if absent).")
@click.option("--scenes", type=int, default=None, help="Number of rooms.  [default: 4]")
@click.option("--seed", type=int, default=None, help="Base seed; room i uses seed + i.  [default: 0]")
@click.option("--views", type=int, default=None, help="RGB-D views rendered per room.  [default: 12]")
@recipe_options
@run_options
@handle_errors
def synthetic(out: str, scenes: int | None, seed: int | None, views: int | None, recipe: str | None,
              overrides: tuple[str, ...], workers: int, shard: str | None, overwrite: bool) -> None:
    """Procedural indoor rooms with ground truth and rendered RGB-D views (the test bed and demo).

    Example: hiclr prepare synthetic --scenes 4 --out data/synthetic --seed 0 --workers 2
    """
    from hiclr.config import SyntheticConfig, load_section
    from hiclr.datasets.synthetic import dataset_summary, prepare_synthetic
    from hiclr.store import Store

    cfg = load_section(SyntheticConfig, "synthetic", recipe, overrides, scenes=scenes, seed=seed, views=views)
    summary = prepare_synthetic(Path(out), cfg, workers=workers, overwrite=overwrite, shard=shard)
    click.echo(f"prepare synthetic: {summary.line()}")
    echo_failures(summary)
    if not summary.failed:  # a failed scene is half-written: the failures above are the news, not its counts
        _print_summary(dataset_summary(Store.open(out)))
    exit_if_failed(summary)


def _print_summary(s: dict) -> None:
    """Print a dataset summary (see hiclr.datasets.synthetic.dataset_summary)."""
    splits = ", ".join(f"{k} {v}" for k, v in s["splits"].items())
    click.echo(f"dataset '{s['name']}': {s['scenes']} scenes ({splits}), {s['points']:,} points, "
               f"{s['views']} views")
    total = max(1, sum(s["classes"].values()) + s["ignored_points"])
    rows = [(name, f"{n:,}", f"{100 * n / total:.1f}") for name, n in s["classes"].items() if n]
    if s["ignored_points"]:
        rows.append(("(ignored)", f"{s['ignored_points']:,}", f"{100 * s['ignored_points'] / total:.1f}"))
    echo_table(rows, header=("class", "points", "%"))


def _report(name: str, summary, extra: list[str]) -> None:
    """Print a real-dataset prepare summary: counts, then failed scenes by name, then notes."""
    click.echo(f"prepare {name}: {summary.line()}")
    echo_failures(summary)
    for line in extra:
        click.echo(f"  {line}")


@prepare.command()
@click.option("--raw", required=True, type=click.Path(exists=True, file_okay=False),
              help="ScanNet 'scans' (or 'scans_test') folder: one folder per scan with <scan>_vh_clean_2.ply, "
                   "<scan>_vh_clean_2.labels.ply and <scan>.sens or exported color/depth/pose/intrinsic folders.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Store folder to write (created if absent).")
@click.option("--splits", default=None, help="Comma-separated splits to prepare: train,val,test.  [default: train,val]")
@click.option("--split-file", "split_files", multiple=True, metavar="SPLIT=FILE",
              help="Use your own scene list (one id per line) for a split instead of the official one (repeatable).")
@click.option("--frame-stride", type=int, default=None, help="Keep every n-th frame of the RGB-D stream.  [default: 20]")
@click.option("--frames", "frames_root", type=click.Path(exists=True, file_okay=False), default=None,
              help="Exported frames kept apart from the scans: <frames>/<scan>/{color,depth,pose,intrinsic}.")
@recipe_options
@run_options
@handle_errors
def scannet(raw: str, out: str, splits: str | None, split_files: tuple[str, ...], frame_stride: int | None,
            frames_root: str | None, recipe: str | None, overrides: tuple[str, ...], workers: int, shard: str | None,
            overwrite: bool) -> None:
    """ScanNet v2 scans: mesh vertices, normals, ScanNet-20 labels and RGB-D views (every 20th frame).

    Example: hiclr prepare scannet --raw ScanNet/scans --out data/scannet --workers 8
    """
    from hiclr.config import ScanNetConfig, load_section
    from hiclr.datasets.scannet import prepare_scannet, scan_ids_for_splits
    from hiclr.errors import HiclrError

    lists: dict[str, Path] = {}
    for item in split_files:
        if "=" not in item:
            raise HiclrError(f"--split-file {item!r}: expected SPLIT=FILE", "for example --split-file train=my_train.txt")
        k, v = item.split("=", 1)
        lists[k.strip()] = Path(v)
    cfg = load_section(ScanNetConfig, "scannet", recipe, overrides, splits=splits, frame_stride=frame_stride)
    summary = prepare_scannet(Path(raw), Path(out), cfg, workers=workers, shard=shard, overwrite=overwrite,
                              split_files=lists, frames_root=Path(frames_root) if frames_root else None)
    _, missing = scan_ids_for_splits(Path(raw), list(cfg.splits), lists)
    res = [summary.results[s] for s in summary.done]
    views, dropped = sum(r.get("views", 0) for r in res), sum(r.get("dropped_invalid_pose", 0) for r in res)
    notes = [f"views stored: {views}; frames dropped for invalid poses: {dropped} (missing or non-finite)"]
    no_frames = [s for s in summary.done if "warning" in summary.results[s]]
    if no_frames:
        notes.append(f"{len(no_frames)} scans have no frames (.sens or exported folders): {', '.join(no_frames[:5])}"
                     + (" …" if len(no_frames) > 5 else ""))
    if missing:
        notes.append(f"{len(missing)} scans of the {','.join(cfg.splits)} lists are not in {raw} (not downloaded?)")
    _report("scannet", summary, notes)
    exit_if_failed(summary)


@prepare.command()
@click.option("--dataroot", required=True, type=click.Path(exists=True, file_okay=False),
              help="nuScenes root: v1.0-trainval/ (tables incl. lidarseg.json), samples/, lidarseg/, maps/.")
@click.option("--version", default=None, help="Table version: v1.0-trainval, v1.0-test or v1.0-mini.  [default: v1.0-trainval]")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Store folder to write (created if absent).")
@click.option("--splits", default=None, help="Comma-separated splits to prepare.  [default: train,val]")
@recipe_options
@run_options
@handle_errors
def nuscenes(dataroot: str, version: str | None, out: str, splits: str | None, recipe: str | None,
             overrides: tuple[str, ...], workers: int, shard: str | None, overwrite: bool) -> None:
    """nuScenes keyframes: LiDAR points (ego frame), intensity, lidarseg labels, 6 camera views.

    Needs the optional nuscenes-devkit: pip install 'hiclr[nuscenes]'.
    Example: hiclr prepare nuscenes --dataroot /data/nuscenes --version v1.0-trainval --out data/nuscenes
    """
    from hiclr.config import NuScenesConfig, load_section
    from hiclr.datasets.nuscenes import prepare_nuscenes

    cfg = load_section(NuScenesConfig, "nuscenes", recipe, overrides, version=version, splits=splits)
    summary = prepare_nuscenes(Path(dataroot), Path(out), cfg, workers=workers, shard=shard, overwrite=overwrite)
    labelled = sum(1 for s in summary.done if summary.results[s].get("labelled"))
    _report("nuscenes", summary, [f"{labelled} of {len(summary.done)} prepared samples have lidarseg labels"])
    exit_if_failed(summary)
