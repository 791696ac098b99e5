"""`hiclr view`: one self-contained HTML page per scene, to see what every label source says.

The page shows the points coloured by a switchable source (RGB, ground truth, pseudo-labels, refined
labels, model prediction, errors of one source, geometric segments), a legend with each class's IoU
on this scene, hover/click info per point (its class under every source and the views that saw it)
and the views' camera frustums. It is rendered with three.js (r180, vendored from the npm registry
in ``hiclr/data/vendor/three``), inlined into the page, so the file opens offline from ``file://``.

The IoU of the legend is ``hiclr.evaluate``'s scoring applied to this one scene on all its points
(before decimation): the numbers equal ``hiclr evaluate --compare … --split`` restricted to the
scene. Arrays travel gzip-compressed and base64-encoded inside the page; the browser inflates them
with ``DecompressionStream`` (Chrome 80+, Firefox 113+, Safari 16.4+).
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from hiclr.errors import HiclrError

# label sources in the order the page offers them; "pred" is the model's prediction
LABEL_SOURCES = ("gt", "pseudo", "refined", "pred")
SOURCE_TITLES = {"rgb": "RGB", "gt": "ground truth", "pseudo": "pseudo-labels (majority over views)",
                 "refined": "refined labels", "pred": "model prediction", "errors": "errors",
                 "segments": "segments"}
DEFAULT_MAX_POINTS = 300_000
FRUSTUM_DEPTH = 0.25  # metres from the camera to the drawn image plane
_VENDOR = ("three.core.min.js", "three.module.min.js", "OrbitControls.js")


@dataclass
class SceneData:
    """Everything one page shows, at full resolution (decimation happens when the page is written).

    ``labels``: source → (N,) int16 class index, -1 = no label from that source (unseen / ignore).
    ``pairs``: (point (P,), view (P,), pseudo label (P,)) rows of ``pairs.npz``, or None.
    ``frustums``: (V, 5, 3) float32 camera centre then the image-plane corners at FRUSTUM_DEPTH."""

    title: str
    coord: np.ndarray  # (N, 3) float32 metres
    classes: list[str]
    color: np.ndarray | None = None  # (N, 3) uint8
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    segments: np.ndarray | None = None  # (N,) int32
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    frustums: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)  # said on the page and returned to the caller

    @property
    def num_points(self) -> int:
        return len(self.coord)


@dataclass
class PageResult:
    path: Path
    bytes: int
    points_total: int
    points_shown: int
    sources: list[str]
    miou: dict[str, float | None]  # source → this scene's mIoU on all labelled points (evaluate's rule)
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# gathering a scene


def scene_scores(gt: np.ndarray, labels: np.ndarray, classes: list[str], ignore_index: int = -1,
                 seen: np.ndarray | None = None) -> dict[str, Any]:
    """This scene's scores of one label source, exactly as ``hiclr evaluate`` scores a split of one
    scene: its confusion matrix and ``scores_from_confusion``; with ``seen`` (N,) bool, also on the
    points seen by at least one view (key ``seen``)."""
    from hiclr.evaluate import confusion_matrix, scores_from_confusion

    c = len(classes)
    out = scores_from_confusion(confusion_matrix(gt, labels, c, ignore_index), classes)
    if seen is not None:
        out["seen"] = scores_from_confusion(confusion_matrix(np.where(seen, gt, -1), labels, c, ignore_index), classes)
    return out


def camera_frustums(intrinsics: np.ndarray, cam_to_world: np.ndarray, width: int, height: int,
                    depth: float = FRUSTUM_DEPTH) -> np.ndarray:
    """(V, 5, 3) float32: each view's camera centre, then its image corners (0,0) (W,0) (W,H) (0,H)
    unprojected to ``depth`` metres (OpenCV pinhole, x right, y down, z forward)."""
    K = np.asarray(intrinsics, np.float64)
    T = np.asarray(cam_to_world, np.float64)
    uv = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64) - 0.5  # pixel edges
    x = (uv[None, :, 0] - K[:, None, 0, 2]) / K[:, None, 0, 0] * depth  # (V, 4)
    y = (uv[None, :, 1] - K[:, None, 1, 2]) / K[:, None, 1, 1] * depth
    cam = np.stack([x, y, np.full_like(x, depth)], -1)  # (V, 4, 3)
    corners = np.einsum("vij,vkj->vki", T[:, :3, :3], cam) + T[:, None, :3, 3]
    return np.concatenate([T[:, None, :3, 3], corners], 1).astype(np.float32)


def model_labels(model_path: Path | str, coord: np.ndarray, color: np.ndarray | None, normal: np.ndarray | None,
                 device: str = "auto") -> tuple[np.ndarray, list[str]]:
    """The model's class per point, (N,) int16, and its class names (``hiclr.inference``, as ``predict``)."""
    from hiclr.device import resolve_device
    from hiclr.inference import input_features, predict_labels
    from hiclr.model_file import load_model

    dev = resolve_device(device, "device")
    model = load_model(model_path)
    if model.input == "color_normal" and normal is None:
        raise HiclrError(f"{model_path}: the model reads normals but the points have none", "give a scene with normals")
    feats = input_features(color, normal if model.input == "color_normal" else None, model.input, len(coord))
    (lab,) = predict_labels(model.network(dev), model.text, [coord], [feats], dev)
    return lab.astype(np.int16), list(model.classes)


def store_scene(store: Any, scene_id: str, model: Path | str | None = None, device: str = "auto") -> SceneData:
    """Gather one store scene: its points, every label source it has, segments, pairs and frustums.

    With ``model``, the model's prediction is computed here (nothing is written to the store);
    without, a ``pred.npy`` left by ``hiclr evaluate --model`` is shown when present."""
    from hiclr.pseudolabel import majority_vote

    scene = store.scene(scene_id)
    if not scene.exists():
        raise HiclrError(f"{store.root}: no scene {scene_id!r}", f"one of {', '.join(store.scene_ids('all')[:8])}")
    coord = scene.read("coord")
    c = store.num_classes
    data = SceneData(title=f"{store.name} / {scene_id}", coord=coord, classes=list(store.classes),
                     color=scene.read("color") if scene.has("color") else None)
    if scene.has("label"):
        data.labels["gt"] = scene.read("label").astype(np.int16)
    if scene.has("pairs"):
        pairs = scene.read_pairs("pairs")
        data.labels["pseudo"] = majority_vote(len(coord), pairs, c)
        data.pairs = (pairs.point.astype(np.int64), pairs.view.astype(np.int64), pairs.label.astype(np.int16))
    if scene.has("refined"):
        data.labels["refined"] = majority_vote(len(coord), scene.read_pairs("refined"), c)
    if model is not None:
        normal = scene.read("normal") if scene.has("normal") else None
        pred, names = model_labels(model, coord, data.color, normal, device)
        if names != data.classes:
            raise HiclrError(f"{model}: the model's classes {names[:4]}… differ from the store's {data.classes[:4]}…",
                             "view a store prepared with the same class list")
        data.labels["pred"] = pred
    elif scene.has("pred"):
        data.labels["pred"] = scene.read("pred").astype(np.int16)
        data.notes.append("model prediction: the pred.npy stored by the last 'hiclr evaluate --model'")
    if scene.has("segments"):
        data.segments = scene.read("segments")
    if scene.num_views:
        w, h = _image_size(scene)
        data.frustums = camera_frustums(scene.intrinsics(), scene.cam_to_world(), w, h)
    return data


def _image_size(scene: Any) -> tuple[int, int]:
    size = scene.meta.get("image_size")
    if size:
        return int(size[0]), int(size[1])
    h, w = scene.read_color(0).shape[:2]
    return w, h


def ply_scene(ply: Path | str, model: Path | str, device: str = "auto") -> SceneData:
    """A user's own PLY (point cloud or mesh) labelled by ``model``: RGB and the model's prediction."""
    from hiclr.predict import compute_normals, read_ply

    cloud = read_ply(ply)
    normal = cloud.normal
    from hiclr.model_file import load_model

    if load_model(model).input == "color_normal" and normal is None:
        normal = compute_normals(cloud)
    pred, names = model_labels(model, cloud.coord, cloud.color, normal, device)
    data = SceneData(title=Path(ply).name, coord=cloud.coord, classes=names, color=cloud.color, labels={"pred": pred})
    if cloud.color is None:
        data.notes.append("the PLY has no vertex colours: RGB shows grey and the prediction rests on geometry alone")
    return data


# --------------------------------------------------------------------------------------------
# the page


def decimate(n: int, max_points: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``max_points`` of ``n`` points, a seeded uniform sample (all when n fits)."""
    if max_points <= 0 or n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


def point_size(coord: np.ndarray) -> float:
    """A splat size in metres that closes the gaps between neighbours: 1.2 × the median distance
    to the nearest neighbour over up to 2000 sampled points."""
    if len(coord) < 2:
        return 0.02
    from scipy.spatial import cKDTree

    probe = coord[np.random.default_rng(0).choice(len(coord), size=min(2000, len(coord)), replace=False)]
    dist, _ = cKDTree(coord).query(probe, k=2)
    return float(np.clip(1.2 * np.median(dist[:, 1]), 1e-3, 1.0))


def _blob(arr: np.ndarray) -> dict[str, Any]:
    """A typed array for the page: dtype, shape and gzip+base64 bytes (little-endian)."""
    a = np.ascontiguousarray(arr)
    a = a.astype(a.dtype.newbyteorder("<"), copy=False)
    return {"dtype": a.dtype.name, "shape": list(a.shape),
            "gz": base64.b64encode(gzip.compress(a.tobytes(), compresslevel=6, mtime=0)).decode("ascii")}


def page_payload(data: SceneData, max_points: int = DEFAULT_MAX_POINTS, seed: int = 0,
                 ignore_index: int = -1) -> dict[str, Any]:
    """The JSON the page reads: metadata, per-scene scores and the (decimated) per-point arrays."""
    from hiclr.viz import palette

    n = data.num_points
    keep = decimate(n, max_points, seed)
    coord = data.coord[keep].astype(np.float64)
    lo, hi = coord.min(0), coord.max(0)
    step = np.maximum(hi - lo, 1e-6) / 65535.0  # uint16 grid: 0.15 mm on a 10 m room
    qpos = np.round((coord - lo) / step).astype(np.uint16)

    gt = data.labels.get("gt")
    seen = (data.labels["pseudo"] >= 0) if "pseudo" in data.labels else None
    scores = {}
    if gt is not None:
        for s, lab in data.labels.items():
            sc = scene_scores(gt, lab, data.classes, ignore_index, seen)
            scores[s] = {"miou": _finite(sc["miou"]), "overall_acc": _finite(sc["overall_acc"]),
                         "iou": [sc["per_class"][c]["iou"] for c in data.classes],
                         "support": [sc["per_class"][c]["support"] for c in data.classes],
                         "seen_miou": _finite(sc["seen"]["miou"]) if "seen" in sc else None}
    arrays: dict[str, Any] = {"pos": _blob(qpos)}
    if data.color is not None:
        arrays["rgb"] = _blob(data.color[keep].astype(np.uint8))
    label_dtype = np.int8 if len(data.classes) < 127 else np.int16
    for s, lab in data.labels.items():
        arrays[f"label_{s}"] = _blob(np.asarray(lab)[keep].astype(label_dtype))
    if data.segments is not None:
        arrays["segments"] = _blob(data.segments[keep].astype(np.int32))
    if data.pairs is not None:
        point, view, plab = data.pairs
        new = np.full(n, -1, np.int64)
        new[keep] = np.arange(len(keep))
        mine = new[point] >= 0
        order = np.lexsort((view[mine], new[point[mine]]))  # by shown point, then view
        rows = new[point[mine]][order]
        arrays["views_count"] = _blob(np.bincount(rows, minlength=len(keep)).astype(np.uint16))
        arrays["views_view"] = _blob(view[mine][order].astype(np.uint16))
        arrays["views_label"] = _blob(plab[mine][order].astype(label_dtype))
    if data.frustums is not None:
        arrays["frustums"] = _blob(data.frustums.astype(np.float32))
    sources = ["rgb"] + [s for s in LABEL_SOURCES if s in data.labels]
    if gt is not None and any(s in data.labels for s in ("pseudo", "refined", "pred")):
        sources.append("errors")
    if data.segments is not None:
        sources.append("segments")
    return {
        "title": data.title, "classes": data.classes, "palette": palette(len(data.classes)).tolist(),
        "points_total": n, "points_shown": len(keep), "origin": lo.tolist(), "step": step.tolist(),
        "point_size": point_size(data.coord[keep]), "sources": sources,
        "source_titles": {s: SOURCE_TITLES[s] for s in sources}, "label_sources": [s for s in LABEL_SOURCES if s in data.labels],
        "scores": scores, "views": 0 if data.frustums is None else len(data.frustums), "notes": data.notes,
        "arrays": arrays,
    }


def _finite(x: float | None) -> float | None:
    """JSON has no NaN: an undefined score (no labelled point) travels as null."""
    return None if x is None or math.isnan(x) else float(x)


def _vendor(name: str) -> str:
    return (resources.files("hiclr") / "data" / "vendor" / "three" / name).read_text(encoding="utf-8")


def _script_safe(text: str) -> str:
    """Text that cannot end the <script> element holding it."""
    return text.replace("</", "<\\/")


def render_html(payload: dict[str, Any]) -> str:
    """The whole page: template, three.js, the viewer script and the payload, one string."""
    template = (resources.files("hiclr") / "data" / "view" / "page.html").read_text(encoding="utf-8")
    app = (resources.files("hiclr") / "data" / "view" / "viewer.js").read_text(encoding="utf-8")
    libs = []
    for name in _VENDOR:
        src = _vendor(name)
        if "</script" in src.lower():
            raise HiclrError(f"vendored {name} contains '</script'", "it cannot be inlined; vendor another build")
        libs.append(f'<script type="text/plain" id="lib-{name}">{src}</script>')
    parts = {"TITLE": _html_escape(payload["title"]), "LIBS": "\n".join(libs),
             "DATA": _script_safe(json.dumps(payload, separators=(",", ":"))), "APP": app}
    # one pass, so a placeholder-like string inside a library or the data is never replaced
    return re.sub(r"\{\{(TITLE|LIBS|DATA|APP)\}\}", lambda m: parts[m.group(1)], template)


def _html_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def write_page(data: SceneData, out: Path | str, max_points: int = DEFAULT_MAX_POINTS, seed: int = 0,
               ignore_index: int = -1) -> PageResult:
    """Write the page of ``data`` to ``out`` (atomically) and say what it holds."""
    from hiclr.store import atomic_write_text

    payload = page_payload(data, max_points, seed, ignore_index)
    size = atomic_write_text(Path(out), render_html(payload))
    notes = list(data.notes)
    if payload["points_shown"] < payload["points_total"]:
        notes.append(f"decimated: {payload['points_shown']:,} of {payload['points_total']:,} points shown "
                     "(IoU on all points)")
    return PageResult(Path(out), size, payload["points_total"], payload["points_shown"], payload["sources"],
                      {s: v["miou"] for s, v in payload["scores"].items()}, notes)
