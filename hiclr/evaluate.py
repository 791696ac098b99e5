"""The evaluator: ScanNet-benchmark mIoU over all points of all scenes of a split (PROTOCOL.md).

One confusion matrix is accumulated over every point of every evaluated scene. Ground truth
outside the classes (-1) is skipped; a prediction outside the classes (-1 included, e.g. an
unlabelled point) counts as a miss: a false negative of its true class and a false positive of
none. IoU_c = TP / (TP + FP + FN); mIoU is the mean over the classes present in the ground truth
(absent classes are listed and never counted, neither as 0 nor as 1).
"""

from __future__ import annotations

import json
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
    """The result of scoring one label source over one split."""

    labels: str
    split: str
    scenes: list[str]
    scores: dict[str, Any]
    confusion: np.ndarray
    coverage: float | None = None  # pseudo/refined: fraction of labelled points seen in some view
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"labels": self.labels, "split": self.split, "scenes": self.scenes, "coverage": self.coverage,
                **self.scores, "confusion": self.confusion.tolist(), **self.extra}


def scene_labels(scene: Any, source: str, num_classes: int) -> tuple[np.ndarray, int | None]:
    """The per-point labels of ``source`` for one scene; for pseudo/refined also the seen count.

    pseudo/refined: the per-point majority over views of the pairs (ties → smallest class index);
    points seen in no view get -1 and are excluded from scoring by the caller."""
    if source == "gt":
        return scene.read("label"), None
    if source == "pred":
        return scene.read("pred"), None
    if source in ("pseudo", "refined"):
        from hiclr.pseudolabel import majority_vote

        pairs = scene.read_pairs("pairs" if source == "pseudo" else "refined")
        votes = majority_vote(scene.num_points, pairs, num_classes)
        return votes, int((votes >= 0).sum())
    raise HiclrError(f"unknown label source {source!r}", f"one of {', '.join(LABEL_SOURCES)}")


def evaluate_store(store: Any, labels: str = "gt", split: str = "val", scene_ids: Sequence[str] | None = None,
                   progress: bool = True) -> Evaluation:
    """Score label array ``labels`` of every scene of ``split`` against ground truth, in one matrix.

    For pseudo/refined labels, points that no view sees are excluded (reported as coverage)."""
    from tqdm import tqdm

    ids = list(scene_ids) if scene_ids is not None else store.scene_ids(split)
    if not ids:
        raise HiclrError(f"{store.root}: no scenes in split {split!r}", "choose another --split, or prepare scenes first")
    c = store.num_classes
    conf = np.zeros((c, c + 1), dtype=np.int64)
    labelled = seen = 0
    for sid in tqdm(ids, desc=f"evaluate {labels}", unit="scene", disable=not progress, leave=False):
        scene = store.scene(sid)
        if not scene.has("label"):
            raise HiclrError(f"{scene.path}: scene {sid} has no ground truth", "evaluate a split with labels (e.g. val)")
        gt = scene.read("label")
        pred, n_seen = scene_labels(scene, labels, c)
        if n_seen is not None:
            mask = pred >= 0
            labelled += int((gt >= 0).sum())
            seen += int(((gt >= 0) & mask).sum())
            gt = np.where(mask, gt, -1)
        conf += confusion_matrix(gt, pred, c, store.ignore_index)
    coverage = seen / labelled if labels in ("pseudo", "refined") and labelled else None
    return Evaluation(labels, split, ids, scores_from_confusion(conf, store.classes), conf, coverage)


def write_metrics(evaluation: Evaluation, path: Path) -> Path:
    """Write ``metrics.json`` atomically."""
    from hiclr.store import atomic_write_text

    atomic_write_text(Path(path), json.dumps(evaluation.to_json(), indent=1))
    return Path(path)


def format_table(evaluation: Evaluation) -> list[tuple[str, str, str, str]]:
    """Rows (class, IoU %, acc %, points) for printing; absent classes shown as '-'."""
    rows = []
    for name, s in evaluation.scores["per_class"].items():
        pct = (lambda x: "-" if x is None else f"{100 * x:.1f}")
        rows.append((name, pct(s["iou"]), pct(s["acc"]), str(s["support"])))
    return rows
