"""Per-view label maps made by any 2D model (OpenSeg, LSeg, a SAM pipeline, …) as a labeler.

Layout of the folder given as ``--labels-from DIR`` (``pseudolabel.labels_from``)::

    DIR/
      classes.txt               optional: the class names, one per line; must equal the store's
      <scene_id>/
        000000.png              label map of view 0 of the scene
        000000_conf.png         optional: its confidence map
        000001.png …            one per view, numbered like the store's views/color/ frames

- A label map is a single-channel PNG of class indices in the store's class order
  (``dataset.yaml`` ``classes``): 8-bit (mode ``L``, or a palette PNG whose indices are the classes)
  or 16-bit (mode ``I;16``). The value 255 (8-bit) or 65535 (16-bit), :data:`IGNORE_8` /
  :data:`IGNORE_16`, means "no label": such pixels make no pair. Any other value must be below the
  store's class count.
- A confidence map, when present, has the label map's size: 8-bit (value / 255) or 16-bit
  (value / 65535); it becomes the pairs' score. Without one every score is 1.
- A map is expected on the view's label grid: the depth frame's size (the colour frame's when the
  dataset has no depth). A map of the same aspect ratio but another size is resized
  nearest-neighbour, and the scene's result carries a note saying so; any other size is an error.

Pairs are then made exactly as for MaskCLIP (:func:`hiclr.pseudolabel.label_scene`), so refine and
train work unchanged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hiclr.errors import HiclrError

__all__ = [
    "IGNORE_8",
    "IGNORE_16",
    "ImageLabeler",
    "check_label_dir",
    "conf_path",
    "label_files_digest",
    "label_path",
    "read_label_map",
]

IGNORE_8 = 255
IGNORE_16 = 65535
_ASPECT_TOL = 0.01  # relative aspect-ratio difference still resized rather than refused
_HINT_LAYOUT = "write one PNG per view as DIR/<scene_id>/<view:06d>.png (see 'hiclr pseudolabel --help')"


def label_path(root: Path | str, scene_id: str, view: int) -> Path:
    return Path(root) / scene_id / f"{view:06d}.png"


def conf_path(root: Path | str, scene_id: str, view: int) -> Path:
    return Path(root) / scene_id / f"{view:06d}_conf.png"


def _read_png(path: Path) -> tuple[np.ndarray, int]:
    """A single-channel PNG → (array (H, W) int64, ignore value of its bit depth)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            mode = im.mode
            arr = np.asarray(im)
    except OSError as e:
        raise HiclrError(f"{path}: not a readable PNG ({e})", _HINT_LAYOUT) from e
    if arr.ndim != 2 or mode not in ("L", "P", "I;16", "I;16B", "I"):
        raise HiclrError(
            f"{path}: a label/confidence map must be a single-channel 8- or 16-bit PNG, got mode {mode}",
            "save class indices as a grayscale PNG (PIL mode 'L' or 'I;16'), not as colours",
        )
    if mode == "I" and (arr.min() < 0 or arr.max() > IGNORE_16):
        raise HiclrError(f"{path}: values outside 0–65535", "save the map as an 8- or 16-bit PNG")
    ignore = IGNORE_8 if arr.dtype == np.uint8 else IGNORE_16
    return arr.astype(np.int64), ignore


def _resize_nearest(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of (h, w) to (H, W): output pixel i takes source ⌊(i + ½)·h/H⌋."""
    h, w = arr.shape
    rows = np.minimum(((np.arange(size[0]) + 0.5) * h / size[0]).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(size[1]) + 0.5) * w / size[1]).astype(np.int64), w - 1)
    return arr[rows[:, None], cols[None, :]]


def read_label_map(
    root: Path | str, scene_id: str, view: int, num_classes: int, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, str | None]:
    """The label and score maps of one view on its (H, W) label grid.

    Returns:
        labels (H, W) int64 in [0, C) or -1 (ignore), scores (H, W) float32 in [0, 1], and a note
        when the map was resized (else None).

    Raises:
        HiclrError naming the file: missing, not single-channel, a class index ≥ C, a confidence map
        of another size, or a size whose aspect ratio differs from the view's.
    """
    path = label_path(root, scene_id, view)
    if not path.is_file():
        raise HiclrError(f"{path}: no label map for view {view} of scene {scene_id}", _HINT_LAYOUT)
    lab, ignore = _read_png(path)
    bad = (lab != ignore) & (lab >= num_classes)
    if bad.any():
        raise HiclrError(
            f"{path}: class index {int(lab[bad].max())} but the store has {num_classes} classes",
            f"label maps hold indices 0–{num_classes - 1} in the store's class order, {ignore} = no label",
        )
    scores = np.ones(lab.shape, dtype=np.float32)
    cpath = conf_path(root, scene_id, view)
    if cpath.is_file():
        conf, top = _read_png(cpath)
        if conf.shape != lab.shape:
            raise HiclrError(
                f"{cpath}: confidence map {conf.shape[1]}×{conf.shape[0]} but its label map is "
                f"{lab.shape[1]}×{lab.shape[0]}",
                "write the confidence map at its label map's size",
            )
        scores = (conf / float(top)).astype(np.float32)
    labels = np.where(lab == ignore, -1, lab)
    note = None
    if labels.shape != tuple(size):
        (h, w), (H, W) = labels.shape, size
        if abs((w / h) / (W / H) - 1.0) > _ASPECT_TOL:
            raise HiclrError(
                f"{path}: label map {w}×{h} does not fit view {view} of scene {scene_id}, whose label grid is {W}×{H}",
                f"write the maps at {W}×{H} (the depth frame's size), or at the same aspect ratio",
            )
        labels, scores = _resize_nearest(labels, size), _resize_nearest(scores, size)
        note = f"scene {scene_id}: label maps of {w}×{h} resized nearest-neighbour to the {W}×{H} view grid"
    return labels, scores, note


def _read_classes(root: Path) -> list[str] | None:
    path = root / "classes.txt"
    if not path.is_file():
        return None
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def check_label_dir(root: Path | str, classes: Sequence[str], scenes: Iterable[tuple[str, int]]) -> None:
    """Refuse, before any work, a folder that lacks a scene's label maps or names other classes.

    Args:
        root: the ``--labels-from`` folder.
        classes: the store's class names, in order.
        scenes: (scene id, number of views) of every scene to label.
    """
    root = Path(root)
    if not root.is_dir():
        raise HiclrError(
            f"{root}: label-map folder does not exist", "give --labels-from DIR (pseudolabel.labels_from)"
        )
    names = _read_classes(root)
    if names is not None and names != list(classes):
        raise HiclrError(
            f"{root / 'classes.txt'}: {len(names)} classes {names[:4]}… differ from the store's {len(classes)} "
            f"{list(classes)[:4]}…",
            "export the maps in the store's class order (dataset.yaml 'classes') and list those names",
        )
    missing = [label_path(root, sid, v) for sid, views in scenes for v in range(views)]
    missing = [p for p in missing if not p.is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise HiclrError(f"{missing[0]}: label map missing{more}", _HINT_LAYOUT)


def label_files_digest(root: Path | str, scene_id: str, views: int) -> str:
    """A digest of a scene's label and confidence files (contents), so re-exported maps are redone."""
    h = hashlib.sha256()
    for v in range(views):
        for path in (label_path(root, scene_id, v), conf_path(root, scene_id, v)):
            h.update(path.name.encode())
            h.update(path.read_bytes() if path.is_file() else b"-")
    return h.hexdigest()[:16]


class ImageLabeler:
    """Labels of the views read from per-view label maps (layout in the module docstring).

    Args:
        root: the label-map folder.
        num_classes: the store's class count.
    """

    def __init__(self, root: Path | str, num_classes: int) -> None:
        self.root = Path(root)
        self.num_classes = int(num_classes)
        self._notes: dict[str, set[str]] = {}

    def label_views(
        self, scene: Any, views: Sequence[int], out_size: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(labels (B, H, W) int64 with -1 = no label, scores (B, H, W) float32) of ``views``."""
        size = (int(out_size[0]), int(out_size[1]))
        labels = np.empty((len(views), *size), dtype=np.int64)
        scores = np.empty((len(views), *size), dtype=np.float32)
        for i, v in enumerate(views):
            labels[i], scores[i], note = read_label_map(self.root, scene.id, v, self.num_classes, size)
            if note:
                self._notes.setdefault(scene.id, set()).add(note)
        return labels, scores

    def pop_notes(self, scene_id: str) -> list[str]:
        """What was adapted while labelling ``scene_id`` (resized maps), once."""
        return sorted(self._notes.pop(scene_id, set()))
