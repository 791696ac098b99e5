"""Pictures of the paper's arguments, as PNG files (matplotlib, the ``viz`` extra):

- ``iou_bars``: per-class IoU of every scored label source side by side (Table 1/2 as a picture);
- ``refinement_figure``: one view's pseudo-labels and refined labels side by side (Fig. 3);
- ``feature_figure``: a 2D embedding of sampled point features of one or more trained models,
  coloured by ground truth, one panel per model (Fig. 7: EXP I … V). t-SNE from scikit-learn when it
  imports, else PCA (numpy), named in each panel's title.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hiclr.errors import HiclrError

SOURCE_NAMES = {"pred": "model"}


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise HiclrError("the figures need matplotlib", "pip install 'hiclr[viz]'") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    import io

    from hiclr.store import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def _rgb(classes: Sequence[str]) -> np.ndarray:
    from hiclr.viz import palette

    return palette(len(classes)).astype(np.float64) / 255.0


# --------------------------------------------------------------------------------------------
# per-class IoU bars


def iou_bars(evaluations: Sequence[Any], path: Path | str, subset: str = "all") -> Path:
    """Grouped bars: per-class IoU (%) of every evaluation (``hiclr.evaluate.Evaluation``), classes
    present in the ground truth only; the legend gives each source's mIoU. ``subset``: "all"
    (every labelled point) or "seen" (points seen by a view)."""
    plt = _pyplot()
    if not evaluations:
        raise HiclrError("no evaluation to draw", "score at least one label source")
    scores = [ev.scores if subset == "all" else ev.scores_seen for ev in evaluations]
    if any(s is None for s in scores):
        raise HiclrError("no 'seen' scores: the scenes have no pairs", "draw subset='all'")
    classes = [c for c, v in scores[0]["per_class"].items() if v["support"]]
    k = len(evaluations)
    width = 0.8 / k
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(classes) * max(k, 2) / 2 + 2), 4.2))
    x = np.arange(len(classes))
    for j, (ev, sc) in enumerate(zip(evaluations, scores)):
        vals = [100 * (sc["per_class"][c]["iou"] or 0.0) for c in classes]
        name = SOURCE_NAMES.get(ev.labels, ev.labels)
        ax.bar(x + (j - (k - 1) / 2) * width, vals, width, label=f"{name} (mIoU {100 * sc['miou']:.1f})")
    ax.set_xticks(x, classes, rotation=45, ha="right")
    ax.set_ylabel("IoU %")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    pts = "all labelled points" if subset == "all" else "points seen by a view"
    ax.set_title(f"per-class IoU, split {evaluations[0].split} ({len(evaluations[0].scenes)} scenes, {pts})")
    ax.legend(fontsize=8)
    return _save(fig, Path(path))


# --------------------------------------------------------------------------------------------
# refinement (Fig. 3)


def view_label_image(coord: np.ndarray, labels: np.ndarray, K: np.ndarray, cam_to_world: np.ndarray,
                     width: int, height: int, radius: float = 3.0) -> np.ndarray:
    """(H, W) int label image of points seen in one view: each pixel takes the label of the nearest
    projected point (nearer to the camera first on the same pixel) within ``radius`` pixels, else -1."""
    from scipy.spatial import cKDTree

    T = np.asarray(cam_to_world, np.float64)
    cam = (np.asarray(coord, np.float64) - T[:3, 3]) @ T[:3, :3]  # world → camera: R^T (X - t)
    z = cam[:, 2]
    ok = z > 1e-6
    uv = np.stack([K[0, 0] * cam[ok, 0] / z[ok] + K[0, 2], K[1, 1] * cam[ok, 1] / z[ok] + K[1, 2]], 1)
    lab, depth = np.asarray(labels)[ok], z[ok]
    img = np.full((height, width), -1, np.int64)
    if not len(uv):
        return img
    order = np.argsort(-depth)  # far first, so the nearest point is written last
    px = np.floor(uv[order] + 0.5).astype(np.int64)
    inside = (px[:, 0] >= 0) & (px[:, 0] < width) & (px[:, 1] >= 0) & (px[:, 1] < height)
    img[px[inside, 1], px[inside, 0]] = lab[order][inside]
    hit = np.argwhere(img >= 0)  # (row, col) of pixels that got a point
    if len(hit):
        rows, cols = np.mgrid[0:height, 0:width]
        dist, idx = cKDTree(hit).query(np.c_[rows.ravel(), cols.ravel()], distance_upper_bound=radius)
        fill = np.isfinite(dist)
        flat = img.ravel().copy()
        flat[fill] = img[hit[idx[fill], 0], hit[idx[fill], 1]]
        img = flat.reshape(height, width)
    return img


def refinement_figure(store: Any, scene_id: str, path: Path | str, view: int | None = None) -> Path:
    """Fig. 3: one view's RGB frame, its pseudo-labels, the refined labels and the ground truth of
    the points it sees. ``view`` defaults to the view whose pair labels the refinement changed most.
    Each label panel's title gives the share of the view's labelled points it gets right."""
    plt = _pyplot()
    scene = store.scene(scene_id)
    pairs, refined = scene.read_pairs("pairs"), scene.read_pairs("refined")
    if len(pairs) != len(refined) or not np.array_equal(pairs.point, refined.point):
        raise HiclrError(f"scene {scene_id}: refined.npz does not hold the rows of pairs.npz", "rerun hiclr refine --overwrite")
    if view is None:
        changed = np.bincount(pairs.view[pairs.label != refined.label].astype(np.int64), minlength=scene.num_views)
        view = int(changed.argmax())
    rows = pairs.view == view
    if not rows.any():
        raise HiclrError(f"scene {scene_id}: view {view} sees no point", "choose another view")
    coord = scene.read("coord")[pairs.point[rows]]
    gt = scene.read("label")[pairs.point[rows]] if scene.has("label") else None
    K, T = scene.intrinsics()[view].astype(np.float64), scene.cam_to_world()[view]
    rgb = scene.read_color(view)
    h, w = rgb.shape[:2]
    pal = np.concatenate([_rgb(store.classes), np.ones((1, 3))])  # -1 → white
    panels: list[tuple[str, np.ndarray]] = [("RGB frame", rgb)]
    for name, lab in (("pseudo-labels", pairs.label[rows]), ("refined labels", refined.label[rows])):
        title = name
        if gt is not None:
            ok = gt >= 0
            title += f": {100 * float((lab[ok] == gt[ok]).mean()) if ok.any() else 0:.1f}% right"
        panels.append((title, pal[view_label_image(coord, lab, K, T, w, h)]))
    if gt is not None:
        panels.append(("ground truth", pal[view_label_image(coord, gt, K, T, w, h)]))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.6 * h / w + 0.6))
    for ax, (title, img) in zip(axes, panels):
        ax.imshow(img)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.suptitle(f"{scene_id}, view {view}: {int(rows.sum()):,} points seen; "
                 f"{int((pairs.label[rows] != refined.label[rows]).sum()):,} labels changed by the vote", fontsize=10)
    return _save(fig, Path(path))


# --------------------------------------------------------------------------------------------
# feature space (Fig. 7)


def embed_2d(x: np.ndarray, method: str = "auto", seed: int = 0) -> tuple[np.ndarray, str]:
    """(N, 2) embedding of (N, d) features and the method used: t-SNE (scikit-learn) for "auto"
    when it imports, else PCA (numpy SVD of the centred features)."""
    x = np.asarray(x, np.float64)
    if method in ("auto", "tsne"):
        try:
            from sklearn.manifold import TSNE
        except ImportError:
            if method == "tsne":
                raise HiclrError("t-SNE needs scikit-learn", "pip install 'hiclr[viz]', or use PCA") from None
        else:
            perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3)))
            # 500 iterations: the clusters have settled by then and it halves the minute on 2 cores
            tsne = TSNE(2, perplexity=perplexity, init="pca", random_state=seed, max_iter=500)
            return tsne.fit_transform(x), "t-SNE"
    c = x - x.mean(0)
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    return c @ vt[:2].T, "PCA"


def sample_points(store: Any, scene_ids: Sequence[str], samples: int, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """Up to ``samples`` labelled points over the scenes, seeded and spread in proportion to each
    scene's labelled points: [(scene id, sorted point indices)]."""
    rng = np.random.default_rng(seed)
    labelled = [(sid, np.flatnonzero(store.scene(sid).read("label") >= 0)) for sid in scene_ids]
    total = sum(len(i) for _, i in labelled)
    if total == 0:
        raise HiclrError("no labelled point to sample", "draw the feature space of a split with ground truth")
    out = []
    for sid, idx in labelled:
        k = min(len(idx), round(samples * len(idx) / total))
        if k:
            out.append((sid, np.sort(rng.choice(idx, size=k, replace=False))))
    return out


def point_features(model_path: Path | str, store: Any, picks: Sequence[tuple[str, np.ndarray]],
                   device: str = "auto") -> np.ndarray:
    """(M, d) unit-length features of the picked points under the model (each point's voxel feature)."""
    import torch

    from hiclr.device import resolve_device
    from hiclr.inference import input_features
    from hiclr.model_file import load_model

    dev = resolve_device(device, "device")
    model = load_model(model_path)
    net = model.network(dev)
    out = []
    with torch.no_grad():
        for sid, idx in picks:
            sc = store.scene(sid)
            coord = sc.read("coord")
            feats = input_features(sc.read("color") if sc.has("color") else None,
                                   sc.read("normal") if model.input == "color_normal" else None, model.input, len(coord))
            rows, index, _ = net.forward_rows([torch.as_tensor(coord, device=dev)], [torch.as_tensor(feats, device=dev)])
            f = rows.float()[index[torch.as_tensor(idx, device=dev)]]
            out.append(torch.nn.functional.normalize(f, dim=1).cpu().numpy())
    return np.concatenate(out)


def feature_figure(store: Any, models: Sequence[tuple[str, Path | str]], path: Path | str, split: str = "val",
                   samples: int = 1000, method: str = "auto", device: str = "auto", seed: int = 0) -> Path:
    """Fig. 7: one panel per (name, model file), the same sampled labelled points of ``split``
    embedded in 2D and coloured by their ground-truth class."""
    plt = _pyplot()
    if not models:
        raise HiclrError("no model to draw the feature space of", "give at least one model file")
    picks = sample_points(store, store.scene_ids(split), samples, seed)
    gt = np.concatenate([store.scene(sid).read("label")[idx] for sid, idx in picks]).astype(np.int64)
    pal = _rgb(store.classes)
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models) + 1.8, 4.4), squeeze=False)
    for ax, (name, model) in zip(axes[0], models):
        xy, used = embed_2d(point_features(model, store, picks, device), method, seed)
        ax.scatter(xy[:, 0], xy[:, 1], c=pal[gt], s=4, linewidths=0)
        ax.set_title(f"{name} ({used}, {len(gt):,} points)", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    present = sorted(set(gt.tolist()))
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=pal[c], label=store.classes[c]) for c in present]
    fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False)
    fig.subplots_adjust(right=1 - 1.6 / (4.2 * len(models) + 1.8))
    return _save(fig, Path(path))


def model_name(path: Path | str) -> str:
    """A panel name for a model file: its run folder for ``RUN/model.pt``, else its stem."""
    p = Path(path)
    return p.parent.name if p.stem == "model" and p.parent.name else p.stem


def write_figures(store: Any, evaluations: Sequence[Any], out_dir: Path | str, models: Sequence[Path | str] = (),
                  device: str = "auto") -> list[Path]:
    """What ``hiclr evaluate --figures DIR`` writes: the IoU bars of the scored sources, the
    refinement picture of the first scene of the split with pairs and refined labels, and, with
    model files, their feature space. Returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    split = evaluations[0].split
    written = [iou_bars(evaluations, out / f"iou-{split}.png")]
    for sid in evaluations[0].scenes:
        sc = store.scene(sid)
        if sc.has("pairs") and sc.has("refined"):
            written.append(refinement_figure(store, sid, out / f"refinement-{sid}.png"))
            break
    models = list(dict.fromkeys(str(m) for m in models))  # --model also given as --feature-model: one panel
    if models:
        written.append(feature_figure(store, [(model_name(m), m) for m in models], out / f"features-{split}.png",
                                      split=split, device=device))
    return written
