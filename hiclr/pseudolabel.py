"""`hiclr pseudolabel`: label every view, pair every visible point with its pixel (paper §3.1, Eq. 1).

For each scene and each of its views, a labeler gives a label and a score per pixel on the depth
grid — dense CLIP (:mod:`hiclr.vlm.maskclip`; last block ``dense`` = maskclip, sclip, clearclip or
naclip, :mod:`hiclr.vlm.dense`, optionally PAMR-refined), label maps exported by any 2D model
(``images``, :mod:`hiclr.vlm.labelmaps`) or, on synthetic data only, the oracle
(:mod:`hiclr.vlm.oracle`) — and :func:`hiclr.geometry.pair_points_with_view` finds the points the
view sees. Each visible point × view becomes one row (point, view, label, score) of the scene's
``pairs.npz``; pixels without a label (the oracle's -1) make no row.

The CLIP model is loaded once per process and the class text embeddings are cached in
``<store>/cache/`` (keyed by model name, weights id and class list). Frames are labelled in batches
of ``batch_frames``; the work runs on ``device`` (``auto``: CUDA when available). A scene whose
``pairs`` exist with the same settings and inputs is skipped, and it is skipped before any model
is loaded.

:func:`majority_vote` turns pairs into one label per point (the pseudo-label that
``hiclr evaluate --labels pseudo|refined`` scores); :func:`coverage` is the share of points seen.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from hiclr.config import PseudolabelConfig, fingerprint
from hiclr.errors import HiclrError

if TYPE_CHECKING:
    from hiclr.runner import RunSummary
    from hiclr.store import Pairs, Scene, Store

STEP = "hiclr pseudolabel"
LABELERS = ("maskclip", "images", "oracle")
DENSE = ("maskclip", "sclip", "clearclip", "naclip")  # hiclr.vlm.dense.DENSE_MODES, without importing torch
RANDOM_WEIGHTS = ("random", "none")  # --clip-weights values that mean random initialisation (tests, benchmarks)

__all__ = ["LABELERS", "MaskCLIPLabeler", "coverage", "label_scene", "majority_vote", "pseudolabel_fingerprint", "resolve_device",
           "run_pseudolabel"]


# --------------------------------------------------------------------------------------------
# votes


def majority_vote(num_points: int, pairs: Any, num_classes: int) -> np.ndarray:
    """The most frequent pair label of every point over all views that see it.

    Args:
        num_points: N, the scene's point count.
        pairs: anything with ``point`` (P,) and ``label`` (P,) integer columns
            (:class:`hiclr.store.Pairs`); rows with a label outside [0, C) do not vote.
        num_classes: C.
    Returns:
        (N,) int16: the majority label, ties to the smallest class index; -1 for points no pair
        names (unseen).
    """
    point = np.asarray(pairs.point, dtype=np.int64)
    label = np.asarray(pairs.label, dtype=np.int64)
    ok = (label >= 0) & (label < num_classes)
    point, label = point[ok], label[ok]
    if point.size and (point.min() < 0 or point.max() >= num_points):
        raise HiclrError(f"pairs name point {int(point.max())} but the scene has {num_points} points",
                         "pairs.npz is stale: rerun 'hiclr pseudolabel' with --overwrite")
    counts = np.bincount(point * num_classes + label, minlength=num_points * num_classes)
    counts = counts.reshape(num_points, num_classes)  # (N, C) votes
    votes = counts.argmax(axis=1)  # first maximum: the smallest class index on ties
    return np.where(counts.sum(axis=1) > 0, votes, -1).astype(np.int16)


def coverage(votes: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Share of points with a vote (``votes >= 0``), optionally among ``mask`` (e.g. labelled points)."""
    votes = np.asarray(votes)
    seen = votes >= 0
    if mask is not None:
        seen = seen[np.asarray(mask, dtype=bool)]
    return float(seen.mean()) if seen.size else 0.0


# --------------------------------------------------------------------------------------------
# labelers


class Labeler(Protocol):
    def label_views(self, scene: Any, views: Sequence[int], out_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """(labels (B,H,W) int64, -1 = none; scores (B,H,W) float32) of ``views`` on the (H, W) grid."""
        ...


def resolve_device(name: str) -> Any:
    """``pseudolabel.device`` as a torch device (:func:`hiclr.device.resolve_device`; torch imported here)."""
    from hiclr.device import resolve_device as resolve

    return resolve(name, "pseudolabel.device")


class MaskCLIPLabeler:
    """MaskCLIP labels of the colour frames.

    Args:
        clip: a :class:`hiclr.vlm.maskclip.MaskCLIP`.
        text: (C, D) unit-norm class text embeddings, in the store's class order.
    """

    def __init__(self, clip: Any, text: Any) -> None:
        self.clip = clip
        self.text = text

    @classmethod
    def from_config(cls, store: Any, cfg: PseudolabelConfig, device: Any) -> MaskCLIPLabeler:
        """The model of ``cfg`` (built once per process, see :func:`_clip`) and the store's classes'
        text embeddings, read from or added to ``<store>/cache/``."""
        from hiclr.vlm.maskclip import cached_text_embeddings

        clip = _clip(cfg.clip, cfg.clip_weights, str(device), cfg.key_smoothing, cfg.prompt_denoising,
                     cfg.batch_frames, cfg.dense, cfg.pamr_steps)
        return cls(clip, cached_text_embeddings(Path(store.root) / "cache", clip, store.classes))

    def label_views(self, scene: Any, views: Sequence[int], out_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        frames = [scene.read_color(v) for v in views]
        if len({f.shape for f in frames}) > 1:
            raise HiclrError(f"scene {scene.id}: colour frames of different sizes", "rerun 'hiclr prepare' with --overwrite")
        labels, scores = self.clip.label_images(np.stack(frames), self.text, out_size=out_size)
        return labels.cpu().numpy(), scores.cpu().numpy()


@functools.lru_cache(maxsize=2)
def _clip(model: str, weights: str, device: str, key_smoothing: bool, prompt_denoising: bool, batch: int,
          dense: str = "maskclip", pamr_steps: int = 0) -> Any:
    """One dense CLIP per process and setting (fp16 on CUDA, fp32 on CPU); ``random`` weights give a
    seeded random initialisation (smoke tests: its labels mean nothing)."""
    from hiclr.vlm.maskclip import MaskCLIP

    w = None if weights.lower() in RANDOM_WEIGHTS else weights
    precision = "fp16" if device.startswith("cuda") else "fp32"
    return MaskCLIP.load(model_name=model, weights=w, device=device, precision=precision,
                         key_smoothing=key_smoothing, prompt_denoising=prompt_denoising, batch_size=batch,
                         dense=dense, pamr_steps=pamr_steps)


_LABELERS: dict[tuple[str, str, str], Labeler] = {}  # (store, settings, device) → labeler


def _labeler(store: Any, cfg: PseudolabelConfig, device: Any) -> Labeler:
    key = (str(Path(store.root).resolve()), pseudolabel_fingerprint(cfg, store), str(device))
    if key not in _LABELERS:
        if cfg.labeler == "oracle":
            from hiclr.vlm.oracle import OracleLabeler

            _LABELERS[key] = OracleLabeler(store, cfg.noise, cfg.seed, systematic=cfg.systematic)
        elif cfg.labeler == "images":
            from hiclr.vlm.labelmaps import ImageLabeler

            _LABELERS[key] = ImageLabeler(cfg.labels_from, store.num_classes)
        else:
            _LABELERS[key] = MaskCLIPLabeler.from_config(store, cfg, device)
    return _LABELERS[key]


# --------------------------------------------------------------------------------------------
# one scene


def check_config(cfg: PseudolabelConfig) -> None:
    problems = [
        (cfg.labeler not in LABELERS, "labeler", f"one of {', '.join(LABELERS)}"),
        (cfg.dense not in DENSE, "dense", f"one of {', '.join(DENSE)}"),
        (cfg.pamr_steps < 0, "pamr_steps", "0 (off) or more steps"),
        (cfg.labeler == "images" and not cfg.labels_from, "labels_from",
         "the folder of label maps (--labels-from DIR) for --labeler images"),
        (cfg.depth_test not in ("absolute", "relative"), "depth_test", "absolute or relative"),
        (not cfg.depth_tolerance > 0, "depth_tolerance", "a positive number of metres"),
        (not cfg.depth_relative > 0, "depth_relative", "a positive fraction"),
        (cfg.min_distance < 0, "min_distance", "0 or more metres"),
        (not 0.0 <= cfg.noise <= 1.0, "noise", "a level in [0, 1]"),
        (not 0.0 <= cfg.systematic <= 1.0, "systematic", "a probability in [0, 1]"),
        (cfg.batch_frames < 1, "batch_frames", "1 or more"),
    ]
    for bad, name, want in problems:
        if bad:
            raise HiclrError(f"pseudolabel.{name} = {getattr(cfg, name)!r} is invalid", f"give {want}")


def pseudolabel_fingerprint(cfg: PseudolabelConfig, store: Store, scene: Scene | None = None) -> str:
    """What a scene's pairs depend on: the settings that matter for its labeler, the class list and
    (with ``scene``) the fingerprints of the scene's points, views and, for the oracle, labels, for
    the images labeler the contents of its label maps."""
    no_clip = {"clip": "", "clip_weights": "", "key_smoothing": False, "prompt_denoising": False, "dense": "",
               "pamr_steps": 0}
    no_oracle = {"noise": 0.0, "seed": 0, "systematic": 0.0}
    if cfg.labeler == "oracle":
        cfg = dataclasses.replace(cfg, labels_from="", **no_clip)
    elif cfg.labeler == "images":
        cfg = dataclasses.replace(cfg, labels_from=str(Path(cfg.labels_from).resolve()), **no_clip, **no_oracle)
    else:
        cfg = dataclasses.replace(cfg, labels_from="", **no_oracle)
    inputs: dict[str, Any] = {}
    if scene is not None:
        names = ("coord", "views") + (("label", "faces") if cfg.labeler == "oracle" else ())
        inputs = {n: scene.fingerprint(n) for n in names}
        if cfg.labeler == "images":
            from hiclr.vlm.labelmaps import label_files_digest

            inputs["label_maps"] = label_files_digest(cfg.labels_from, scene.id, scene.num_views)
    return fingerprint(cfg, classes=list(store.classes), **inputs)


def label_scene(scene: Scene, labeler: Labeler, cfg: PseudolabelConfig, device: Any = "cpu") -> Pairs:
    """All pairs of one scene: label each view, pair the visible points with their pixels.

    Returns :class:`hiclr.store.Pairs` ordered by view, then point index."""
    import torch

    from hiclr.geometry import pair_points_with_view
    from hiclr.store import Pairs

    points = torch.as_tensor(scene.read("coord"), device=device)  # (N,3) float32, uploaded once
    K_all = torch.as_tensor(scene.intrinsics(), device=device)
    T_all = torch.as_tensor(scene.cam_to_world(), device=device)
    cols: dict[str, list[np.ndarray]] = {"point": [], "view": [], "label": [], "score": []}
    V = scene.num_views
    for start in range(0, V, cfg.batch_frames):
        views = list(range(start, min(V, start + cfg.batch_frames)))
        depths = [scene.read_depth(v) for v in views]
        if depths[0] is not None:
            sizes = {d.shape for d in depths}
            if len(sizes) > 1:
                raise HiclrError(f"scene {scene.id}: depth frames of different sizes {sorted(sizes)}",
                                 "rerun 'hiclr prepare' with --overwrite")
            out_size = depths[0].shape
        else:
            out_size = scene.read_color(views[0]).shape[:2]
        labels, scores = labeler.label_views(scene, views, out_size)  # (B,H,W) each
        for b, v in enumerate(views):
            depth = None if depths[b] is None else torch.as_tensor(depths[b], device=device)
            idx, pu, pv = pair_points_with_view(
                points, K_all[v], T_all[v], depth, width=out_size[1], height=out_size[0], mode=cfg.depth_test,
                tol=cfg.depth_tolerance, rel=cfg.depth_relative, min_distance=cfg.min_distance,
            )
            idx, pu, pv = idx.cpu().numpy(), pu.cpu().numpy(), pv.cpu().numpy()
            lab = labels[b][pv, pu]
            keep = lab >= 0
            cols["point"].append(idx[keep])
            cols["view"].append(np.full(int(keep.sum()), v, dtype=np.int64))
            cols["label"].append(lab[keep])
            cols["score"].append(scores[b][pv, pu][keep])
    if not V:
        return Pairs(*(np.zeros(0) for _ in range(4)))
    return Pairs(**{k: np.concatenate(v) for k, v in cols.items()})


def _needs_work(store: Any, cfg: PseudolabelConfig, scene_id: str, overwrite: bool) -> bool:
    try:
        scene = store.scene(scene_id)
        return overwrite or not scene.is_done("pairs", pseudolabel_fingerprint(cfg, store, scene))
    except HiclrError:  # a broken scene fails on its own in the loop
        return False


def _pseudolabel_scene(root: str, cfg: PseudolabelConfig, overwrite: bool, scene_id: str) -> dict[str, Any]:
    from hiclr.store import Store

    store = Store.open(root)
    scene = store.scene(scene_id)
    fp = pseudolabel_fingerprint(cfg, store, scene)
    if not overwrite and scene.is_done("pairs", fp):
        return {"status": "skipped"}
    if scene.num_views == 0:
        raise HiclrError(f"scene {scene_id} has no views", "prepare the dataset with frames (views) for this scene")
    t0 = time.perf_counter()
    device = resolve_device(cfg.device)
    pairs = label_scene(scene, _labeler(store, cfg, device), cfg, device)
    scene.write_pairs("pairs", pairs, STEP, fp)
    seen = int(np.count_nonzero(np.bincount(pairs.point, minlength=scene.num_points)))
    labeler = _labeler(store, cfg, device)
    notes = labeler.pop_notes(scene_id) if hasattr(labeler, "pop_notes") else []
    return {
        "notes": notes,
        "status": "done",
        "views": scene.num_views,
        "pairs": len(pairs),
        "points_seen": seen,
        "coverage": seen / max(scene.num_points, 1),
        "seconds": time.perf_counter() - t0,
    }


def _view_counts(store: Any, ids: Sequence[str]) -> list[tuple[str, int]]:
    """(scene id, views) of the scenes that open (a broken scene fails on its own in the loop)."""
    out = []
    for sid in ids:
        try:
            out.append((sid, store.scene(sid).num_views))
        except HiclrError:
            continue
    return out


def run_pseudolabel(
    store: Store,
    cfg: PseudolabelConfig,
    scene_ids: Sequence[str] | None = None,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> RunSummary:
    """Write ``pairs.npz`` for every scene.

    Args:
        store: an open :class:`hiclr.store.Store`.
        cfg: the pseudolabel settings.
        scene_ids: scenes to process (default: all scenes of the store).
        workers: scenes processed in parallel (each process loads its own CLIP model: keep 1 on
            one GPU).
        overwrite: redo scenes whose pairs exist with the same fingerprint.
        progress: show a progress bar.
    Returns:
        :class:`hiclr.runner.RunSummary`; each done scene's result has ``views``, ``pairs``,
        ``points_seen``, ``coverage`` (share of the scene's points seen by some view), ``seconds``
        and ``notes`` (what the labeler adapted, e.g. resized label maps).
    """
    from hiclr.runner import run_scenes

    check_config(cfg)
    if cfg.labeler == "oracle":
        from hiclr.vlm.oracle import check_synthetic

        check_synthetic(store)  # refuse real data up front, not scene by scene
    ids = list(store.scene_ids() if scene_ids is None else scene_ids)
    if cfg.labeler == "images":  # a missing label map fails once, naming the file, before any work
        from hiclr.vlm.labelmaps import check_label_dir

        check_label_dir(cfg.labels_from, store.classes, _view_counts(store, ids))
    if workers <= 1 and any(_needs_work(store, cfg, sid, overwrite) for sid in ids):
        # build the labeler here so that missing CLIP weights fail once, clearly, not once per scene
        _labeler(store, cfg, resolve_device(cfg.device))
    work = functools.partial(_pseudolabel_scene, str(Path(store.root)), cfg, overwrite)
    return run_scenes(work, ids, workers=workers, desc="pseudolabel", progress=progress)
