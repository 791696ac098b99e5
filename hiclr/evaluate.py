"""The evaluator: ScanNet-benchmark mIoU over all points of all scenes of a split (PROTOCOL.md).

One confusion matrix is accumulated over every point of every evaluated scene. Ground truth
outside the classes (-1) is skipped; a prediction outside the classes (-1 included, e.g. an
unlabelled point) counts as a miss: a false negative of its true class and a false positive of
none. IoU_c = TP / (TP + FP + FN); mIoU is the mean over the classes present in the ground truth
(absent classes are listed and never counted, neither as 0 nor as 1).

Like for like: every label source (gt, pseudo, refined, pred) is scored on the same two point sets
in one run: all labelled points of the split (a point seen by no view has no pseudo-label and is a
miss), and the labelled points seen by at least one view (``seen``), so a model, which labels every
point, and the pseudo-labels it learned from are never compared on different points.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hiclr.errors import HiclrError

LABEL_SOURCES = ("gt", "pseudo", "refined", "pred")


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, num_classes: int, ignore_index: int = -1) -> np.ndarray:
    """Confusion counts, shape (C, C + 1), int64: row = true class, column = predicted class.

    The extra last column counts predictions outside ``[0, C)`` (misses). Points whose ground
    truth is ``ignore_index`` or outside ``[0, C)`` are skipped."""
    gt = np.asarray(gt).reshape(-1).astype(np.int64)
    pred = np.asarray(pred).reshape(-1).astype(np.int64)
    if gt.shape != pred.shape:
        raise HiclrError(f"ground truth has {gt.size} points but predictions {pred.size}", "predict every point of the scene")
    keep = (gt >= 0) & (gt < num_classes) & (gt != ignore_index)
    gt, pred = gt[keep], pred[keep]
    pred = np.where((pred >= 0) & (pred < num_classes), pred, num_classes)
    flat = np.bincount(gt * (num_classes + 1) + pred, minlength=num_classes * (num_classes + 1))
    return flat.reshape(num_classes, num_classes + 1)


def scores_from_confusion(conf: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Per-class IoU and accuracy, mIoU over present classes, overall and mean class accuracy.

    ``conf`` is (C, C) or (C, C + 1) (the latter with a column of misses)."""
    conf = np.asarray(conf, dtype=np.int64)
    c = len(class_names)
    if conf.shape not in ((c, c), (c, c + 1)):
        raise HiclrError(f"confusion matrix of shape {conf.shape} for {c} classes", "build it with confusion_matrix()")
    tp = np.diag(conf[:, :c]).astype(np.float64)
    support = conf.sum(axis=1).astype(np.float64)  # TP + FN (misses included)
    fp = conf[:, :c].sum(axis=0) - tp
    fn = support - tp
    present = support > 0
    denom = tp + fp + fn
    iou = np.where(denom > 0, tp / np.maximum(denom, 1), 0.0)
    acc = np.where(present, tp / np.maximum(support, 1), 0.0)
    total = support.sum()
    per_class = {
        name: {"iou": float(iou[i]) if present[i] else None, "acc": float(acc[i]) if present[i] else None,
               "support": int(support[i]), "predicted": int(tp[i] + fp[i])}
        for i, name in enumerate(class_names)
    }
    return {
        "miou": float(iou[present].mean()) if present.any() else float("nan"),
        "overall_acc": float(tp.sum() / total) if total else float("nan"),
        "mean_class_acc": float(acc[present].mean()) if present.any() else float("nan"),
        "num_points": int(total),
        "classes_present": int(present.sum()),
        "absent": [n for i, n in enumerate(class_names) if not present[i]],
        "per_class": per_class,
    }


@dataclass
class Evaluation:
    """The result of scoring one label source over one split, on two point sets.

    ``scores`` / ``confusion``: every labelled point of the split (PROTOCOL's rule: a point the
    source gives no label, e.g. one no view sees, is a miss). ``scores_seen`` / ``confusion_seen``:
    the subset of those points seen by at least one view (a pair in ``pairs.npz``), the same
    subset for every source, so two sources are always compared on the same points. ``coverage``:
    that subset's share of the labelled points (None when no scene has pairs)."""

    labels: str
    split: str
    scenes: list[str]
    scores: dict[str, Any]
    confusion: np.ndarray
    coverage: float | None = None
    scores_seen: dict[str, Any] | None = None
    confusion_seen: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = {"labels": self.labels, "split": self.split, "scenes": self.scenes, "coverage": self.coverage,
               "points": "all labelled points; a point without a label from this source is a miss",
               **self.scores, "confusion": self.confusion.tolist()}
        if self.scores_seen is not None and self.confusion_seen is not None:
            out["seen"] = {"points": "labelled points seen by at least one view", **self.scores_seen,
                           "confusion": self.confusion_seen.tolist()}
        return {**out, **self.extra}


def scene_labels(scene: Any, source: str, num_classes: int) -> np.ndarray:
    """The per-point labels of ``source`` for one scene, (N,) int; -1 = no label from this source.

    pseudo/refined: the per-point majority over views of the pairs (ties → smallest class index);
    a point seen in no view gets -1 (scored as a miss)."""
    if source == "gt":
        return scene.read("label")
    if source == "pred":
        return scene.read("pred")
    if source in ("pseudo", "refined"):
        from hiclr.pseudolabel import majority_vote

        pairs = scene.read_pairs("pairs" if source == "pseudo" else "refined")
        return majority_vote(scene.num_points, pairs, num_classes)
    raise HiclrError(f"unknown label source {source!r}", f"one of {', '.join(LABEL_SOURCES)}")


def evaluate_store(store: Any, labels: str = "gt", split: str = "val", scene_ids: Sequence[str] | None = None,
                   progress: bool = True) -> Evaluation:
    """Score label source ``labels`` over every scene of ``split`` against ground truth.

    One confusion matrix over all labelled points (unlabelled = miss), and one over the points seen
    by at least one view, for every source alike (see :class:`Evaluation`)."""
    return evaluate_sources(store, [labels], split, scene_ids, progress)[0]


def evaluate_sources(store: Any, sources: Sequence[str], split: str = "val", scene_ids: Sequence[str] | None = None,
                     progress: bool = True) -> list[Evaluation]:
    """Score several label sources in one pass over the scenes, all on the same points."""
    from tqdm import tqdm

    ids = list(scene_ids) if scene_ids is not None else store.scene_ids(split)
    if not ids:
        raise HiclrError(f"{store.root}: no scenes in split {split!r}", "choose another --split, or prepare scenes first")
    c = store.num_classes
    conf = {s: np.zeros((c, c + 1), dtype=np.int64) for s in sources}
    conf_seen = {s: np.zeros((c, c + 1), dtype=np.int64) for s in sources}
    labelled = seen = 0
    with_pairs = 0
    for sid in tqdm(ids, desc=f"evaluate {','.join(sources)}", unit="scene", disable=not progress, leave=False):
        scene = store.scene(sid)
        if not scene.has("label"):
            raise HiclrError(f"{scene.path}: scene {sid} has no ground truth", "evaluate a split with labels (e.g. val)")
        gt = scene.read("label")
        # seen = a labelled pair in pairs.npz, i.e. a pseudo-label: one vote serves both
        pseudo = scene_labels(scene, "pseudo", c) if scene.has("pairs") else None
        mask = pseudo >= 0 if pseudo is not None else np.zeros(len(gt), dtype=bool)
        with_pairs += pseudo is not None
        ok = (gt >= 0) & (gt < c)
        labelled += int(ok.sum())
        seen += int((ok & mask).sum())
        gt_seen = np.where(mask, gt, -1)
        for s in sources:
            pred = pseudo if s == "pseudo" and pseudo is not None else scene_labels(scene, s, c)
            conf[s] += confusion_matrix(gt, pred, c, store.ignore_index)
            conf_seen[s] += confusion_matrix(gt_seen, pred, c, store.ignore_index)
    coverage = seen / labelled if with_pairs and labelled else None
    out = []
    for s in sources:
        scores_seen = scores_from_confusion(conf_seen[s], store.classes) if with_pairs else None
        out.append(Evaluation(s, split, ids, scores_from_confusion(conf[s], store.classes), conf[s], coverage,
                              scores_seen, conf_seen[s] if with_pairs else None))
    return out


def compare_table(evaluations: Sequence[Evaluation]) -> list[tuple[str, ...]]:
    """Rows (source, mIoU all, mIoU seen, acc all, acc seen) in %, for one like-for-like table."""
    rows = []
    for ev in evaluations:
        seen = ev.scores_seen or {}
        rows.append((ev.labels, _pct(ev.scores["miou"]), _pct(seen.get("miou")), _pct(ev.scores["overall_acc"]),
                     _pct(seen.get("overall_acc"))))
    return rows


def write_comparison(evaluations: Sequence[Evaluation], path: Path) -> Path:
    """One JSON file holding every source's metrics (same points, same split), atomically."""
    from hiclr.store import atomic_write_text

    body = {"split": evaluations[0].split if evaluations else None,
            "sources": {ev.labels: ev.to_json() for ev in evaluations}}
    atomic_write_text(Path(path), json.dumps(body, indent=1))
    return Path(path)


def write_metrics(evaluation: Evaluation, path: Path) -> Path:
    """Write ``metrics.json`` atomically."""
    from hiclr.store import atomic_write_text

    atomic_write_text(Path(path), json.dumps(evaluation.to_json(), indent=1))
    return Path(path)


def format_table(evaluation: Evaluation) -> list[tuple[str, str, str, str]]:
    """Rows (class, IoU %, acc %, points) for printing; absent classes shown as '-'."""
    return [(name, _pct(s["iou"]), _pct(s["acc"]), str(s["support"])) for name, s in evaluation.scores["per_class"].items()]


def _pct(x: float | None) -> str:
    """A score in % with one decimal; '-' for an absent class (None) or an undefined one (NaN)."""
    return "-" if x is None or math.isnan(x) else f"{100 * x:.1f}"
