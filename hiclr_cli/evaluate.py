"""`hiclr evaluate`: score label sources of the store (or a model's predictions) with mIoU, like for like."""

from __future__ import annotations

from pathlib import Path

import click

from hiclr_cli.common import echo_table, handle_errors, recipe_options

SOURCES = ("gt", "pseudo", "refined", "pred", "model")


def _parse_compare(text: str, model: str | None) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in names if s not in SOURCES]
    if bad or not names:
        raise click.UsageError(f"--compare: unknown source {bad[0] if bad else text!r}; use a comma list of {', '.join(SOURCES)}")
    if "model" in names and not model:
        raise click.UsageError("--compare ...,model needs --model MODEL_FILE (the file from 'hiclr distill')")
    return ["pred" if s == "model" else s for s in names]


@click.command()
@click.argument("data", type=click.Path(file_okay=False))
@click.option("--labels", type=click.Choice(["gt", "pseudo", "refined", "pred"]), default=None,
              help="Which labels to score: ground truth (sanity check), pseudo-labels (majority over views), "
                   "refined pseudo-labels, or model predictions.  [default: gt, or pred with --model]")
@click.option("--compare", "compare", default=None, metavar="SOURCES",
              help="Score several sources in one table on the same points, e.g. pseudo,refined,model "
                   "(model = the predictions of --model).")
@click.option("--split", default=None, help="Split to score (train, val, test, all).  [default: val]")
@click.option("--model", "model", type=click.Path(dir_okay=False), default=None,
              help="Model file from 'hiclr distill': predict every point first (writes pred.npy per scene).")
@click.option("--segments", is_flag=True, help="Also report segment quality (count, purity, best reachable mIoU).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Where to write metrics.json.  [default: DATA/metrics/<labels>-<split>.json, "
                   "compare-<split>.json with --compare]")
@click.option("--device", default="auto", show_default=True, help="Device for --model predictions.")
@click.option("--figures", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Also draw PNGs into DIR: per-class IoU bars of the sources, the refinement picture of one "
                   "view (Fig. 3), and the feature space (Fig. 7) of --model and every --feature-model.")
@click.option("--feature-model", "feature_models", multiple=True, type=click.Path(dir_okay=False, exists=True),
              help="A model file drawn as one more panel of the feature-space figure (repeatable: EXP I … V).")
@recipe_options
@handle_errors
def evaluate(data: str, labels: str | None, compare: str | None, split: str | None, model: str | None, segments: bool,
             out: str | None, device: str, figures: str | None, feature_models: tuple[str, ...], recipe: str | None,
             overrides: tuple[str, ...]) -> None:
    """Score DATA's LABELS on SPLIT: per-class IoU, mIoU over present classes, accuracies.

    Every source is scored on the same points: all labelled points of the split (a point the
    source leaves unlabelled, e.g. one no view sees, is a miss) and, in the same run, the labelled
    points seen by at least one view."""
    from hiclr.config import EvaluateConfig, load_section
    from hiclr.evaluate import compare_table, evaluate_sources, format_table, write_comparison, write_metrics
    from hiclr.store import Store

    if model and labels not in (None, "pred"):
        raise click.UsageError("--model scores its predictions: drop --labels or use --labels pred")
    if compare and labels:
        raise click.UsageError("--compare lists the sources itself: drop --labels")
    sources = _parse_compare(compare, model) if compare else None
    cfg = load_section(EvaluateConfig, "evaluate", recipe, overrides, split=split,
                       labels=labels or ("pred" if model else None))
    store = Store.open(data)
    if model:
        from hiclr.predict import predict_store

        predict_store(store, Path(model), split=cfg.split, device=device)
    evs = evaluate_sources(store, sources or [cfg.labels], split=cfg.split)
    ev = evs[0]
    if segments:
        from hiclr.segment_eval import segment_quality_store

        ev.extra["segments"] = segment_quality_store(store, ev.scenes)
    if sources:
        path = Path(out) if out else Path(data) / "metrics" / f"compare-{cfg.split}.json"
        write_comparison(evs, path)
        n = ev.scores["num_points"]
        click.echo(f"split {cfg.split}: {len(ev.scenes)} scenes, {n:,} labelled points; every row on the same points")
        names = {"pred": "model" if model else "pred"}
        rows = [(names.get(r[0], r[0]), *r[1:]) for r in compare_table(evs)]
        echo_table(rows, header=("labels", "mIoU all %", "mIoU seen %", "acc all %", "acc seen %"))
    else:
        path = Path(out) if out else Path(data) / "metrics" / f"{cfg.labels}-{cfg.split}.json"
        write_metrics(ev, path)
        s = ev.scores
        click.echo(f"{cfg.labels} labels, split {cfg.split}: {len(ev.scenes)} scenes, {s['num_points']:,} labelled points")
        echo_table(format_table(ev), header=("class", "IoU %", "acc %", "points"))
        click.echo(f"mIoU {100 * s['miou']:.2f} over {s['classes_present']} present classes"
                   f" | overall acc {100 * s['overall_acc']:.2f} | mean class acc {100 * s['mean_class_acc']:.2f}"
                   " (all labelled points; unlabelled = miss)")
        if ev.scores_seen is not None:
            click.echo(f"mIoU {100 * ev.scores_seen['miou']:.2f} | overall acc {100 * ev.scores_seen['overall_acc']:.2f}"
                       " on the labelled points seen by at least one view")
        if s["absent"]:
            click.echo(f"absent from ground truth (not counted): {', '.join(s['absent'])}")
    if ev.coverage is not None:
        click.echo(f"coverage: {100 * ev.coverage:.1f}% of labelled points seen in at least one view")
    if "segments" in ev.extra:
        g = ev.extra["segments"]
        click.echo(f"segments: {g['num_segments']:,} | purity {100 * g['purity']:.1f}% | "
                   f"best per-segment mIoU {100 * g['oracle_miou']:.1f}")
    click.echo(f"wrote {path}")
    if figures:
        from hiclr.figures import write_figures

        for fig in write_figures(store, evs, figures, [*([model] if model else []), *feature_models], device):
            click.echo(f"figure: {fig}")
