"""Intra-set label refinement (paper §3.2): the mode of the pseudo-labels per (segment, view).

For every geometric consistency set G_k and every view I, the pairs of points of G_k seen in I
form one group, and each pair's label is replaced by the group's most frequent label
(``l̂_ij = Mode({l_ij : I_ij ∈ Ĝ_k})``). Ties go to the smallest class index, so the result never
depends on the order of the pairs. Everything is vectorised (sort + unique + counts): no Python
loop over groups.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hiclr.config import RefineConfig, fingerprint
from hiclr.errors import HiclrError

STEP = "hiclr refine"

__all__ = ["group_mode", "refine_pairs", "run_refine"]


def group_mode(
    groups: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The most frequent label of each group; ties go to the smallest label.

    Args:
        groups: (P,) integer group keys (any values).
        labels: (P,) non-negative integer labels.
    Returns:
        ``(keys, inverse, mode, count)``: (G,) the distinct group keys, sorted; (P,) the index into
        ``keys`` of each member; (G,) int64 each group's mode; (G,) int64 how many members carry it.
    """
    groups = np.asarray(groups).reshape(-1)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if groups.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, empty
    keys, inverse = np.unique(groups, return_inverse=True)
    inverse = inverse.reshape(-1).astype(np.int64)
    # count every (group, label) combination through one int64 key; G * L stays far below 2**63
    n_labels = int(labels.max()) + 1
    combo, counts = np.unique(inverse * n_labels + labels, return_counts=True)
    g, lab = combo // n_labels, combo % n_labels
    # within each group: highest count first, then the smallest label
    order = np.lexsort((lab, -counts, g))
    g, lab, counts = g[order], lab[order], counts[order]
    first = np.ones(len(g), dtype=bool)
    first[1:] = g[1:] != g[:-1]
    # every group has at least one member, so the firsts are groups 0..G-1 in order
    return keys, inverse, lab[first], counts[first]


def refine_pairs(
    point: np.ndarray,
    view: np.ndarray,
    label: np.ndarray,
    segments: np.ndarray,
    per_view: bool = True,
) -> np.ndarray:
    """Replace each pair's label by the mode of its (segment, view) group.

    Args:
        point: (P,) int point index of each pair, into ``segments``.
        view: (P,) int view index of each pair.
        label: (P,) int pseudo-label (class index) of each pair.
        segments: (N,) int32 segment id per point; points with a negative id are unsegmented.
        per_view: vote within each (segment, view) (the paper); False votes once per segment
            over all its pairs in all views.
    Returns:
        (P,) refined labels, same dtype as ``label``. Ties go to the smallest class index. Pairs
        whose point has a negative segment id, and pairs with a negative label (which also do not
        vote), keep their label. A segment seen in no view has no pairs, so nothing changes.
    """
    point = np.asarray(point)
    view = np.asarray(view)
    label = np.asarray(label)
    segments = np.asarray(segments)
    if not (len(point) == len(view) == len(label)):
        raise HiclrError(
            f"pair columns differ in length (point {len(point)}, view {len(view)}, label {len(label)})",
            "pass the columns of one Pairs object",
        )
    out = label.copy()
    if len(point) == 0:
        return out
    if point.min() < 0 or point.max() >= len(segments):
        raise HiclrError(
            f"pair point index outside the {len(segments)} segmented points",
            "segments.npy and pairs.npz come from different versions of the scene: rerun oversegment/pseudolabel",
        )
    seg = segments[point].astype(np.int64)
    vote = (seg >= 0) & (label >= 0)
    if not vote.any():
        return out
    v = view[vote].astype(np.int64)
    if v.min() < 0:
        raise HiclrError("negative view index in pairs", "rerun 'hiclr pseudolabel' with --overwrite")
    # one int64 key per (segment, view) group
    key = seg[vote] * (int(v.max()) + 1) + v if per_view else seg[vote]
    _, inverse, mode, _ = group_mode(key, label[vote])
    out[vote] = mode[inverse].astype(label.dtype)
    return out


# --------------------------------------------------------------------------------------------
# the store step


def refine_fingerprint(config: RefineConfig, pairs_fp: str | None, segments_fp: str | None) -> str:
    """The config fingerprint chained with the inputs' fingerprints, so new inputs redo the step."""
    return fingerprint(config, pairs=pairs_fp, segments=segments_fp)


def _refine_scene(root: str, config: RefineConfig, overwrite: bool, scene_id: str) -> dict[str, Any]:
    from hiclr.store import Store

    scene = Store.open(root).scene(scene_id)
    fp = refine_fingerprint(config, scene.fingerprint("pairs"), scene.fingerprint("segments"))
    if not overwrite and scene.is_done("refined", fp):
        return {"status": "skipped"}
    t0 = time.perf_counter()
    pairs = scene.read_pairs("pairs")
    segments = scene.read("segments")
    refined = refine_pairs(pairs.point, pairs.view, pairs.label, segments, per_view=config.per_view)
    scene.write_pairs("refined", pairs.with_labels(refined), STEP, fp)
    return {
        "status": "done",
        "pairs": len(pairs),
        "changed": int((refined != pairs.label).sum()),
        "seconds": time.perf_counter() - t0,
    }


def run_refine(
    store: Any,
    config: RefineConfig,
    scene_ids: Sequence[str] | None = None,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> Any:
    """Refine the pairs of every scene and write ``refined.npz`` (scores are kept as they were).

    Args:
        store: an open :class:`hiclr.store.Store`.
        config: the refine settings.
        scene_ids: scenes to process (default: all scenes of the store).
        workers: scenes processed in parallel.
        overwrite: redo scenes whose ``refined`` exists with the same fingerprint.
        progress: show a progress bar.
    Returns:
        :class:`hiclr.runner.RunSummary`; each done scene's result has ``pairs``, ``changed``
        (pairs whose label the vote changed) and ``seconds``.
    """
    from hiclr.runner import run_scenes

    ids = list(store.scene_ids() if scene_ids is None else scene_ids)
    work = functools.partial(_refine_scene, str(Path(store.root)), config, overwrite)
    return run_scenes(work, ids, workers=workers, desc="refine", progress=progress)
