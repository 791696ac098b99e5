"""The oracle labeler: ground truth rendered per view and corrupted like MaskCLIP, synthetic data only.

It lets the demo and the benchmarks measure every later stage (refine, train, evaluate) without
CLIP weights, with a noise level that can be turned up or down. It needs the scene's mesh and its
ground truth, so it refuses any store that is not the synthetic dataset: it must never stand in
for a real labeler silently.

Noise model (``noise`` = n in [0, 1] scales every part; n = 0 gives the ground truth exactly). For
each view, in this order, on the ground-truth label image (H, W) rendered from the mesh:

1. **Class confusion, varying from view to view.** Every class present in the view that has
   look-alikes in :data:`CONFUSABLE` (table↔desk, cabinet↔other furniture/bookshelf, wall↔picture/
   window/door, bed↔sofa, chair↔sofa, …) is, with probability ``0.7·n``, relabelled as one of its
   look-alikes (uniform choice): in half of the cases all its pixels, otherwise the pixels on one
   side of a random line through its centroid. The same object gets different labels in
   different views, as CLIP's do.
2. **Blobs of wrong labels.** ``Poisson(8·n)`` random ellipses (semi-axes 4–15 % of the image
   width/height, random orientation); each paints a look-alike of the class under its centre
   (probability 0.6, when that class has one) or a uniformly drawn other class.
3. **Bleeding across object boundaries.** Each class present is, with probability 0.5 and in
   random order, dilated by ``round(n·W/64)`` pixels (10 px at 640 px width and n = 1) over its
   neighbours.
4. **Coarse resolution.** Labels are decided per square patch of ``round(16·min(1, 2n))`` pixels
   (16, MaskCLIP's ViT-B/16 patch, from n = 0.5 on) by majority over the patch's labelled pixels
   (ties → smallest class index) and upsampled by repetition.

**Systematic confusion** (``systematic`` = s in [0, 1], default 0, independent of ``noise``): the
per-view noise above is drawn anew in every view, so a network that averages views removes it;
MaskCLIP's real errors are also systematic, the same look-alike chosen in every view of a scene
and in every scene. So, before step 1, each class with look-alikes has one fixed look-alike for the
whole dataset (:func:`systematic_partner`, drawn from ``(seed, class name)``), and in each scene
each present class is, with probability s, replaced by that look-alike in *every* view of the
scene (drawn from ``(seed, scene)``, never from the view). Multi-view voting and refinement cannot
undo it; only a model that learned the class from the scenes where it was not swapped can.

Pixels that hit nothing, or whose surface carries the ignore label, stay -1 throughout (no pair
is made from them). Scores (float32 in (0, 1]) imitate a softmax confidence that is lower where
the label is unreliable: the fraction of the pixel's patch that voted for the winning label
(1 inside an object, lower along boundaries), times 0.6 where steps 1–3 changed the pixel.

Randomness: one generator per view, seeded by (seed, CRC-32 of the scene id, view index), so a
view's corruption does not depend on which other views or scenes are processed, or in what order.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from hiclr.errors import HiclrError

__all__ = ["CONFUSABLE", "OracleLabeler", "check_synthetic", "confusion_partners", "corrupt_labels", "scene_swaps",
           "systematic_partner", "view_rng"]

# Look-alikes that CLIP confuses in indoor scenes (ScanNet-20 names, spaces and case ignored).
CONFUSABLE: dict[str, tuple[str, ...]] = {
    "wall": ("picture", "window", "door", "curtain"),
    "cabinet": ("otherfurniture", "bookshelf", "counter", "refrigerator"),
    "bed": ("sofa",),
    "chair": ("sofa",),
    "sofa": ("bed", "chair"),
    "table": ("desk", "counter"),
    "door": ("wall", "cabinet"),
    "window": ("wall", "curtain", "picture"),
    "bookshelf": ("cabinet", "otherfurniture"),
    "picture": ("wall", "window"),
    "counter": ("table", "cabinet", "desk"),
    "desk": ("table",),
    "curtain": ("window", "showercurtain", "wall"),
    "refrigerator": ("cabinet", "door"),
    "showercurtain": ("curtain",),
    "toilet": ("sink", "bathtub"),
    "sink": ("counter", "toilet", "bathtub"),
    "bathtub": ("sink", "toilet"),
    "otherfurniture": ("cabinet", "table", "bookshelf"),
}
_CONFUSE_P = 0.7  # per class and view, times noise
_BLOBS = 8.0  # mean number of blobs per view, times noise
_BLOB_SIZE = (0.04, 0.15)  # semi-axes as a fraction of the image width / height
_BLOB_LOOKALIKE_P = 0.6
_BLEED_P = 0.5  # per class and view
_BLEED_PX_PER_WIDTH = 1.0 / 64.0  # dilation radius at noise 1, as a fraction of the image width
_PATCH = 16  # pixels: MaskCLIP ViT-B/16's patch
_CORRUPT_SCORE = 0.6


def _key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def confusion_partners(class_names: Sequence[str]) -> list[list[int]]:
    """For each class index, the indices of its look-alikes present in ``class_names``."""
    index = {_key(n): i for i, n in enumerate(class_names)}
    return [[index[p] for p in CONFUSABLE.get(_key(n), ()) if p in index] for n in class_names]


def view_rng(seed: int, scene_id: str, view: int) -> np.random.Generator:
    """The generator of one view: seeded by (seed, CRC-32 of the scene id, view)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(scene_id.encode()), int(view)]))


def systematic_partner(seed: int, class_names: Sequence[str]) -> np.ndarray:
    """The fixed look-alike of every class for the whole dataset, (C,) int64 (-1: no look-alike).

    Drawn per class from (seed, CRC-32 of the class name), so it is the same in every scene."""
    partners = confusion_partners(class_names)
    out = np.full(len(class_names), -1, dtype=np.int64)
    for c, ps in enumerate(partners):
        if ps:
            rng = np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(_key(class_names[c]).encode()), 1]))
            out[c] = ps[int(rng.integers(len(ps)))]
    return out


def scene_swaps(seed: int, scene_id: str, class_names: Sequence[str], systematic: float) -> np.ndarray:
    """The class map of one scene's systematic confusion, (C,) int64: ``swap[c]`` is the label every
    view of the scene gives class ``c`` before the per-view noise (``c`` itself when not swapped).

    Class ``c`` is swapped for :func:`systematic_partner` with probability ``systematic``, drawn
    from (seed, CRC-32 of the scene id) and never from a view."""
    if not 0.0 <= systematic <= 1.0:
        raise HiclrError(f"oracle systematic confusion {systematic} is outside [0, 1]",
                         "set pseudolabel.systematic between 0 and 1")
    partner = systematic_partner(seed, class_names)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(scene_id.encode()), 1 << 30]))
    draws = rng.random(len(class_names))  # one draw per class, whatever the probability
    swap = np.arange(len(class_names), dtype=np.int64)
    hit = (partner >= 0) & (draws < systematic)
    swap[hit] = partner[hit]
    return swap


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    from scipy.ndimage import maximum_filter

    return maximum_filter(mask.view(np.uint8), size=2 * r + 1, mode="constant").astype(bool)


def _patch_majority(labels: np.ndarray, num_classes: int, p: int) -> tuple[np.ndarray, np.ndarray]:
    """Majority label per p×p patch (labelled pixels only; ties → smallest index), upsampled.

    Returns (labels (H,W) int64, -1 for patches with no labelled pixel; purity (H,W) float32, the
    share of the patch's labelled pixels that carry the winner)."""
    H, W = labels.shape
    rows, cols = np.arange(H) // p, np.arange(W) // p
    gh, gw = rows[-1] + 1, cols[-1] + 1
    patch = rows[:, None] * gw + cols[None, :]  # (H,W) patch id
    ok = labels >= 0
    counts = np.bincount(patch[ok] * num_classes + labels[ok], minlength=gh * gw * num_classes)
    counts = counts.reshape(gh * gw, num_classes)
    total = counts.sum(axis=1)
    win = counts.argmax(axis=1)  # first maximum: smallest class index on ties
    purity = counts[np.arange(len(win)), win] / np.maximum(total, 1)
    win = np.where(total > 0, win, -1)
    return win[patch], purity[patch].astype(np.float32)


def corrupt_labels(
    gt: np.ndarray, class_names: Sequence[str], noise: float, rng: np.random.Generator, patch: int = _PATCH,
    swap: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Apply the module's noise model to one ground-truth label image.

    Args:
        gt: (H, W) integer labels, -1 = no hit / ignore.
        class_names: the store's classes (look-alikes are found by name).
        noise: in [0, 1]; 0 returns ``gt`` unchanged with scores 1.
        rng: the view's generator (:func:`view_rng`).
        patch: the patch size at ``noise >= 0.5``.
        swap: (C,) the scene's systematic class map (:func:`scene_swaps`), applied first; None = none.
    Returns:
        ``(labels, scores)``: (H, W) int64 (-1 where ``gt`` is -1) and (H, W) float32 in (0, 1].
    """
    if not 0.0 <= noise <= 1.0:
        raise HiclrError(f"oracle noise {noise} is outside [0, 1]", "set --noise (pseudolabel.noise) between 0 and 1")
    gt = np.asarray(gt).astype(np.int64)
    H, W = gt.shape
    C = len(class_names)
    valid = gt >= 0
    lab = gt.copy()
    if swap is not None:
        lab[valid] = np.asarray(swap, dtype=np.int64)[gt[valid]]
    base = lab.copy()  # what this scene's views agree on; scores drop only where the per-view noise changed it
    partners = confusion_partners(class_names)
    present = np.flatnonzero(np.bincount(gt[valid], minlength=C)).tolist()

    # 1. view-varying confusion between look-alikes
    for c in present:
        if not partners[c] or rng.random() >= _CONFUSE_P * noise:
            continue
        target = partners[c][rng.integers(len(partners[c]))]
        ys, xs = np.nonzero(gt == c)
        if rng.random() < 0.5:  # only one side of a random line through the class's centroid
            a = rng.uniform(0, 2 * np.pi)
            side = (xs - xs.mean()) * np.cos(a) + (ys - ys.mean()) * np.sin(a) >= 0
            ys, xs = ys[side], xs[side]
        lab[ys, xs] = target

    # 2. blobs of wrong labels
    for _ in range(rng.poisson(_BLOBS * noise)):
        cy, cx = rng.uniform(0, H), rng.uniform(0, W)
        ay, ax = rng.uniform(*_BLOB_SIZE) * H, rng.uniform(*_BLOB_SIZE) * W
        a = rng.uniform(0, np.pi)
        reach = max(ax, ay)  # the ellipse lies inside this square around its centre
        y0, y1 = max(0, int(cy - reach)), min(H, int(cy + reach) + 2)
        x0, x1 = max(0, int(cx - reach)), min(W, int(cx + reach) + 2)
        dy, dx = np.mgrid[y0:y1, x0:x1]
        dx, dy = dx - cx, dy - cy
        u = (dx * np.cos(a) + dy * np.sin(a)) / ax
        v = (-dx * np.sin(a) + dy * np.cos(a)) / ay
        under = int(gt[min(int(cy), H - 1), min(int(cx), W - 1)])
        if under >= 0 and partners[under] and rng.random() < _BLOB_LOOKALIKE_P:
            fill = partners[under][rng.integers(len(partners[under]))]
        else:
            fill = int(rng.integers(C - 1)) if C > 1 else 0
            fill += int(C > 1 and fill >= max(under, 0) and under >= 0)  # any class but the one underneath
        window = lab[y0:y1, x0:x1]  # a view: writes go to lab
        window[(u * u + v * v <= 1.0) & valid[y0:y1, x0:x1]] = fill

    # 3. bleeding across boundaries
    r = round(noise * W * _BLEED_PX_PER_WIDTH)
    if r > 0:
        for c in rng.permutation(np.flatnonzero(np.bincount(lab[valid], minlength=C))):
            if rng.random() < _BLEED_P:
                ys, xs = np.nonzero(lab == c)
                if not len(ys):  # covered by an earlier class's bleeding
                    continue
                y0, y1 = max(0, ys.min() - r), min(H, ys.max() + r + 1)
                x0, x1 = max(0, xs.min() - r), min(W, xs.max() + r + 1)
                window = lab[y0:y1, x0:x1]
                window[_dilate(window == c, r) & valid[y0:y1, x0:x1]] = c
    changed = lab != base

    # 4. coarse resolution: one label per patch
    p = max(1, round(patch * min(1.0, 2.0 * noise)))
    if p > 1:
        lab, purity = _patch_majority(lab, C, p)
    else:
        purity = np.ones((H, W), dtype=np.float32)
    lab[~valid] = -1
    changed |= lab != base
    scores = np.where(changed, _CORRUPT_SCORE, 1.0).astype(np.float32) * np.maximum(purity, 1e-3)
    return lab, scores


def check_synthetic(store: Any, scene: Any | None = None) -> None:
    """Raise :class:`HiclrError` unless ``store`` (and ``scene``) come from the synthetic generator."""
    source = None if scene is None else scene.meta.get("source")
    ok = store.name == "synthetic" and source in (None, "synthetic")
    if not ok:
        what = f"dataset '{store.name}'" + (f", scene {scene.id} from '{source}'" if source not in (None, "synthetic") else "")
        raise HiclrError(
            f"{store.root}: {what} is not synthetic: the oracle labeler needs ground truth rendered from a "
            "synthetic mesh and must never label real data",
            "use --labeler maskclip (pseudolabel.labeler: maskclip) for real datasets",
        )


class OracleLabeler:
    """Label the views of synthetic scenes from their ground truth, corrupted by the noise model.

    Args:
        store: an open :class:`hiclr.store.Store` of the synthetic dataset (else HiclrError).
        noise: noise level in [0, 1].
        seed: base seed of the per-view generators.
        patch: patch size in pixels at noise ≥ 0.5.
        systematic: probability of a scene-wide swap per (scene, class) (see the module doc).
    """

    def __init__(self, store: Any, noise: float, seed: int = 0, patch: int = _PATCH, systematic: float = 0.0) -> None:
        check_synthetic(store)
        if not 0.0 <= noise <= 1.0:
            raise HiclrError(f"oracle noise {noise} is outside [0, 1]", "set --noise (pseudolabel.noise) between 0 and 1")
        self.store = store
        self.class_names = store.classes
        self.noise = float(noise)
        self.seed = int(seed)
        self.patch = int(patch)
        self.systematic = float(systematic)
        scene_swaps(self.seed, "", self.class_names, self.systematic)  # validates the probability

    def label_views(self, scene: Any, views: Sequence[int], out_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Labels and scores of ``views`` of ``scene`` on an ``out_size`` = (H, W) grid.

        The intrinsics of the scene are taken to be in pixels of that grid (the depth grid).
        Returns ``(labels (B,H,W) int64 with -1 = no label, scores (B,H,W) float32)``."""
        from hiclr.render import MeshRenderer

        check_synthetic(self.store, scene)
        for name in ("faces", "label"):
            if not scene.has(name):
                raise HiclrError(f"{scene.path}: scene {scene.id} has no {name}.npy, which the oracle needs",
                                 "prepare it with 'hiclr prepare synthetic', or use --labeler maskclip")
        renderer = MeshRenderer(scene.read("coord"), scene.read("faces"))
        vertex_labels = scene.read("label")
        K, T = scene.intrinsics(), scene.cam_to_world()
        H, W = out_size
        labels = np.empty((len(views), H, W), dtype=np.int64)
        scores = np.empty((len(views), H, W), dtype=np.float32)
        swap = scene_swaps(self.seed, scene.id, self.class_names, self.systematic) if self.systematic > 0 else None
        for i, v in enumerate(views):
            gt = renderer.labels(vertex_labels, K[v], T[v], W, H)
            labels[i], scores[i] = corrupt_labels(gt, self.class_names, self.noise, view_rng(self.seed, scene.id, v),
                                                  self.patch, swap)
        return labels, scores
