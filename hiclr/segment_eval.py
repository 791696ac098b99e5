"""How good are the geometric consistency sets? Segment quality against ground truth.

Two numbers say how much an over-segmentation can help or hurt intra-set refinement:

- **purity**: the fraction of labelled points whose segment's majority ground-truth label is their
  own label, i.e. the accuracy of labelling every segment with its majority label. Since a
  segment gets one label, no per-segment labelling can have higher accuracy.
- **oracle mIoU**: the mIoU (ScanNet convention, :mod:`hiclr.evaluate`) of that same majority
  labelling. It is an upper-bound *proxy*, not the exact optimum over per-segment labellings:
  the majority labelling maximises accuracy, and mIoU can occasionally be raised a little by
  giving a mixed segment to a rare class instead. It is the number to compare refined
  pseudo-label mIoU against.

Points whose segment id is negative (unsegmented) count as misses (wrong, never pure).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hiclr.errors import HiclrError
from hiclr.evaluate import confusion_matrix, scores_from_confusion
from hiclr.refine import group_mode

__all__ = ["majority_labelling", "segment_quality", "segment_quality_store"]


def majority_labelling(
    segments: np.ndarray, gt_labels: np.ndarray, num_classes: int, ignore: int = -1
) -> np.ndarray:
    """Label every point with its segment's majority ground-truth label.

    Args:
        segments: (N,) int segment id per point; negative = unsegmented.
        gt_labels: (N,) int ground-truth class index per point; ``ignore`` or outside
            ``[0, num_classes)`` does not vote.
        num_classes: C.
        ignore: the ignore label.
    Returns:
        (N,) int64 labels; -1 for unsegmented points and for segments without a labelled point.
        Ties go to the smallest class index.
    """
    segments = np.asarray(segments).reshape(-1)
    gt = np.asarray(gt_labels).reshape(-1).astype(np.int64)
    if segments.shape != gt.shape:
        raise HiclrError(
            f"segments has {segments.size} points but the ground truth {gt.size}",
            "segments.npy and label.npy come from different versions of the scene: rerun oversegment",
        )
    out = np.full(len(gt), -1, dtype=np.int64)
    vote = (segments >= 0) & (gt >= 0) & (gt < num_classes) & (gt != ignore)
    if not vote.any():
        return out
    keys, _, mode, _ = group_mode(segments[vote], gt[vote])
    # map every segmented point (voter or not) to its segment's mode, when that segment has one
    seg = segments[segments >= 0]
    pos = np.clip(np.searchsorted(keys, seg), 0, len(keys) - 1)
    found = keys[pos] == seg
    out[np.flatnonzero(segments >= 0)[found]] = mode[pos[found]]
    return out


def _quality_from(conf: np.ndarray, num_segments: int, class_names: Sequence[str]) -> dict[str, Any]:
    scores = scores_from_confusion(conf, class_names)
    return {
        "num_segments": int(num_segments),
        "num_points": scores["num_points"],
        "purity": scores["overall_acc"],
        "oracle_miou": scores["miou"],
        "oracle_iou": {k: v["iou"] for k, v in scores["per_class"].items()},
        "absent": scores["absent"],
    }


def segment_quality(
    segments: np.ndarray,
    gt_labels: np.ndarray,
    num_classes: int,
    ignore: int = -1,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Segment quality of one scene.

    Args:
        segments: (N,) int segment id per point (negative = unsegmented).
        gt_labels: (N,) int ground truth per point, ``ignore`` = unlabelled.
        num_classes: C.
        ignore: the ignore label.
        class_names: names for ``oracle_iou`` (default ``"0".."C-1"``).
    Returns:
        dict with ``num_segments`` (distinct non-negative ids), ``num_points`` (labelled points
        scored), ``purity`` (fraction in [0, 1]), ``oracle_miou`` (in [0, 1], mean over classes
        present), ``oracle_iou`` (per class, None when absent) and ``absent`` (class names).
    """
    names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
    oracle = majority_labelling(segments, gt_labels, num_classes, ignore)
    conf = confusion_matrix(gt_labels, oracle, num_classes, ignore)
    seg = np.asarray(segments)
    return _quality_from(conf, len(np.unique(seg[seg >= 0])), names)


def segment_quality_store(
    store: Any, scene_ids: Sequence[str] | None = None, split: str = "val", progress: bool = True
) -> dict[str, Any]:
    """Segment quality over scenes, accumulated in one confusion matrix (as :mod:`hiclr.evaluate`).

    Args:
        store: an open :class:`hiclr.store.Store` whose scenes have ``segments`` and ``label``.
        scene_ids: the scenes to score; None scores the scenes of ``split``.
        split: the split used when ``scene_ids`` is None (``"all"`` for every scene).
        progress: show a progress bar.
    Returns:
        the dict of :func:`segment_quality` over all scenes (``num_segments`` summed), plus
        ``scenes`` (ids) and ``mean_segment_size`` (points per segment, all points counted).
    """
    from tqdm import tqdm

    ids = list(scene_ids) if scene_ids is not None else store.scene_ids(split)
    if not ids:
        raise HiclrError(
            f"{store.root}: no scenes in split {split!r}", "choose another --split, or prepare scenes first"
        )
    c = store.num_classes
    conf = np.zeros((c, c + 1), dtype=np.int64)
    num_segments = num_points = 0
    for sid in tqdm(ids, desc="evaluate segments", unit="scene", disable=not progress, leave=False):
        scene = store.scene(sid)
        if not scene.has("label"):
            raise HiclrError(
                f"{scene.path}: scene {sid} has no ground truth", "evaluate a split with labels (e.g. val)"
            )
        segments, gt = scene.read("segments"), scene.read("label")
        conf += confusion_matrix(
            gt, majority_labelling(segments, gt, c, store.ignore_index), c, store.ignore_index
        )
        num_segments += len(np.unique(segments[segments >= 0]))
        num_points += len(segments)
    out = _quality_from(conf, num_segments, store.classes)
    out["scenes"] = ids
    out["mean_segment_size"] = num_points / max(num_segments, 1)
    return out
