"""Predictions of a trained model: for the scenes of a store (``predict_store``, used by
``hiclr evaluate --model``) and for any PLY point cloud or mesh (``predict_ply``, ``hiclr predict``).

The label of a point is argmax_c ⟨f, T̂_c⟩ (normalising f does not change the argmax). The network
predicts per point (voxel features are mapped back to every point inside PointNetwork), so every
vertex of the input gets a label.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hiclr.device import resolve_device
from hiclr.errors import HiclrError
from hiclr.inference import input_features, predict_labels
from hiclr.model_file import ModelFile, load_model


def model_fingerprint(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def predict_store(store: Any, model_file: Path | str, split: str = "val", batch: int = 1, device: str = "auto",
                  overwrite: bool = False, progress: bool = False) -> dict[str, dict[str, Any]]:
    """Label every point of every scene of ``split`` with the model; writes ``pred.npy`` per scene.

    A scene whose predictions were made by this exact model file (same content hash) is skipped
    unless ``overwrite``. Returns scene id → {"status": "done"|"skipped", "points": N}."""
    dev = resolve_device(device, "device")
    model = load_model(model_file)
    if list(model.classes) != list(store.classes):
        raise HiclrError(f"{model_file}: the model's classes {model.classes[:4]}… differ from the store's {store.classes[:4]}…",
                         "evaluate on a store prepared with the same class list")
    fp = model_fingerprint(model_file)
    net = model.network(dev)
    ids = store.scene_ids(split)
    todo = [s for s in ids if overwrite or not store.scene(s).is_done("pred", fp)]
    out: dict[str, dict[str, Any]] = {s: {"status": "skipped"} for s in ids if s not in todo}
    chunks = [todo[i: i + max(batch, 1)] for i in range(0, len(todo), max(batch, 1))]
    if progress:
        from tqdm import tqdm

        chunks = tqdm(chunks, desc="predict", unit="batch", leave=False)
    for chunk in chunks:
        scenes = [store.scene(s) for s in chunk]
        coords = [sc.read("coord") for sc in scenes]
        feats = [input_features(sc.read("color") if sc.has("color") else None,
                                sc.read("normal") if model.input == "color_normal" else None, model.input, len(c))
                 for sc, c in zip(scenes, coords)]
        for sc, pred in zip(scenes, predict_labels(net, model.text, coords, feats, dev)):
            sc.write("pred", pred.astype(np.int16), step="hiclr evaluate --model", fingerprint=fp)
            out[sc.id] = {"status": "done", "points": len(pred)}
    return out


# --------------------------------------------------------------------------------------------
# any PLY


@dataclass
class PointCloud:
    coord: np.ndarray  # (N, 3) float32, relative to ``origin``
    color: np.ndarray | None  # (N, 3) uint8
    normal: np.ndarray | None  # (N, 3) float32
    faces: np.ndarray | None  # (F, 3) int32
    origin: np.ndarray = field(default_factory=lambda: np.zeros(3))  # (3,) float64: file frame = coord + origin
    file_xyz: np.ndarray | None = None  # (N, 3) x y z exactly as the file stores them (float32 or float64)
    color_note: str | None = None  # how colours that were not 8-bit were read (plyio.vertex_colors)


def read_ply(path: Path | str) -> PointCloud:
    """A point cloud or triangle mesh from any PLY file (``hiclr.datasets.plyio``, NumPy only):
    x y z, and when present red green blue, nx ny nz and the faces.

    A georeferenced file (UTM coordinates) is shifted to a local origin (``hiclr.store.local_origin``)
    in float64 before its float32 cast, as ``prepare`` does, so no precision is lost."""
    from hiclr.datasets.plyio import read_ply as read
    from hiclr.datasets.plyio import vertex_colors
    from hiclr.store import local_origin

    path = Path(path)
    if not path.is_file():
        raise HiclrError(f"{path}: no such file", "give a .ply point cloud or mesh")
    ply = read(path)
    v = ply["vertex"]
    names = set(v.dtype.names or ())
    if not {"x", "y", "z"} <= names or len(v) == 0:
        raise HiclrError(f"{path}: no x/y/z vertices", "is it a PLY point cloud or mesh?")
    file_xyz = np.stack([v["x"], v["y"], v["z"]], 1)
    if file_xyz.dtype != np.float64:
        file_xyz = file_xyz.astype(np.float32)
    world = file_xyz.astype(np.float64)
    if not np.isfinite(world).all():
        raise HiclrError(f"{path}: non-finite vertex coordinates", "clean the point cloud first")
    origin = local_origin(world)
    coord = (world - origin).astype(np.float32)
    color, color_note = vertex_colors(path, v)
    normal = np.stack([v["nx"], v["ny"], v["nz"]], 1).astype(np.float32) if {"nx", "ny", "nz"} <= names else None
    faces = ply["face"] if len(ply["face"]) else None
    return PointCloud(coord, color, normal, faces, origin, file_xyz, color_note)


def compute_normals(cloud: PointCloud) -> np.ndarray:
    """Unit normals when the file has none: area-weighted face normals for a mesh, else PCA over the
    nearest neighbours (``hiclr.oversegment``)."""
    from hiclr.oversegment import estimate_normals, mesh_vertex_normals

    if cloud.faces is not None:
        return mesh_vertex_normals(cloud.coord, cloud.faces).astype(np.float32)
    return estimate_normals(cloud.coord).astype(np.float32)


def write_labelled_ply(path: Path, coord: np.ndarray, labels: np.ndarray, colors: np.ndarray,
                       faces: np.ndarray | None = None) -> None:
    """Binary little-endian PLY: x y z, red green blue (uchar), label (int) per vertex, and the faces
    when given. MeshLab and CloudCompare show the colours and ``label`` as a scalar field.

    x y z are written as double when ``coord`` is float64 (georeferenced input keeps every bit),
    else as float."""
    from hiclr.datasets.plyio import write_ply

    xyz = coord if coord.dtype == np.float64 else coord.astype(np.float32)
    vertices = {"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2],
                "red": colors[:, 0].astype(np.uint8), "green": colors[:, 1].astype(np.uint8),
                "blue": colors[:, 2].astype(np.uint8), "label": labels.astype(np.int32)}
    write_ply(path, vertices, faces)


def prompt_embeddings(model: ModelFile, names: list[str], device: str = "cpu", clip_weights: str | None = None,
                      progress: bool = False) -> torch.Tensor:
    """Embed new class names with the model's own CLIP text tower and the 85 templates: (C', d).

    ``clip_weights`` (an open_clip tag, a checkpoint path, or ``random``) overrides the model file's,
    which is only a tag: when pseudolabel used a local checkpoint file, give its path here. A model
    trained on labels of random CLIP weights (``--clip-weights random``, smoke tests) gets the same
    seeded random text tower by default."""
    if model.anchors == "random" or model.clip_model is None:
        raise HiclrError("this model was trained against seeded random anchors, not CLIP text embeddings",
                         "open-vocabulary --prompts needs a model trained on MaskCLIP pseudo-labels")
    wid = str(model.extra.get("clip_weights_id") or "")
    weights = clip_weights or model.clip_weights or ("random" if wid.startswith("random:") else None)
    if not weights:
        raise HiclrError(f"{model.source or 'the model'}: its CLIP weights were a local file ({wid}) whose path is not recorded",
                         "pass --clip-weights PATH (the checkpoint used by hiclr pseudolabel)")
    from hiclr.vlm.maskclip import MaskCLIP
    from hiclr.vlm.text import embed_class_names

    clip = MaskCLIP.load(model.clip_model, weights, device=device)
    if wid.startswith("random:") and clip.weights_id != wid and not clip_weights:
        raise HiclrError(f"{model.source or 'the model'}: it was trained against randomly initialised CLIP weights "
                         f"({wid}), which this open_clip builds differently ({clip.weights_id})",
                         "use the open_clip version it was trained with, or retrain with real CLIP weights")
    emb = embed_class_names(clip, names, progress=progress).float()
    if emb.shape[1] != model.text.shape[1]:
        raise HiclrError(f"CLIP {model.clip_model} gives {emb.shape[1]}-d text embeddings, the model {model.text.shape[1]}-d",
                         "use the CLIP model the network was trained with")
    return emb


def read_prompts(path: Path | str) -> list[str]:
    """Class names, one per line (UTF-8; blank lines and # comments skipped; no duplicates)."""
    from hiclr.vlm.prompts import read_class_names

    return read_class_names(path)


@dataclass
class PredictResult:
    out_dir: Path
    points: int
    classes: list[str]
    counts: dict[str, int]  # points per class
    files: dict[str, Path]
    warnings: list[str] = field(default_factory=list)  # the output was written, but read these


def predict_ply(ply: Path | str, model_path: Path | str, out_dir: Path | str, prompts: Path | str | None = None,
                device: str = "auto", clip_weights: str | None = None, progress: bool = False) -> PredictResult:
    """Label every vertex of ``ply``; write ``<stem>_labels.ply``, ``labels.npy``, ``legend.json``/``.txt``
    and ``<stem>_labels.png`` into ``out_dir``.

    Every model takes the points' colour (``input`` color, color_normal: + unit normals, computed
    when the file has none). A file without colour is labelled from mid-grey input, with a warning
    in the result: such labels are much less reliable."""
    from hiclr.store import atomic_save_npy, atomic_write_text
    from hiclr.viz import palette, render_labels

    dev = resolve_device(device, "device")
    model = load_model(model_path)
    cloud = read_ply(ply)
    classes = list(model.classes)
    text = model.text
    if prompts is not None:
        classes = read_prompts(prompts)
        text = prompt_embeddings(model, classes, str(dev), clip_weights, progress=progress)
    warnings = [cloud.color_note] if cloud.color_note else []
    random_clip = ((clip_weights or "").strip().lower() in ("random", "none")
                   or (not clip_weights and str(model.extra.get("clip_weights_id", "")).startswith("random:")))
    if prompts is not None and random_clip:
        warnings.append("the prompts were embedded by randomly initialised CLIP weights: their labels mean nothing "
                        "(a smoke test)")
    if cloud.color is None:
        warnings.append(f"{ply}: no red/green/blue vertex colours, but the model's input is '{model.input}': "
                        "every point was given mid-grey, so the labels rest on geometry alone and are unreliable "
                        "(give a coloured PLY)")
    normal = cloud.normal
    if model.input == "color_normal" and normal is None:
        normal = compute_normals(cloud)
    net = model.network(dev)
    feats = input_features(cloud.color, normal, model.input, len(cloud.coord))
    (labels,) = predict_labels(net, text, [cloud.coord], [feats], dev)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(ply).stem
    colors = palette(len(classes))[labels]
    files = {"ply": out / f"{stem}_labels.ply", "labels": out / "labels.npy", "legend": out / "legend.json",
             "legend_txt": out / "legend.txt", "png": out / f"{stem}_labels.png"}
    xyz = cloud.file_xyz if cloud.file_xyz is not None else cloud.coord.astype(np.float64) + cloud.origin
    write_labelled_ply(files["ply"], xyz, labels, colors, cloud.faces)  # the input's frame
    atomic_save_npy(files["labels"], labels.astype(np.int32))
    counts = {name: int((labels == i).sum()) for i, name in enumerate(classes)}
    pal = palette(len(classes))
    legend = [{"label": i, "name": n, "color": pal[i].tolist(), "points": counts[n]} for i, n in enumerate(classes)]
    atomic_write_text(files["legend"], json.dumps(legend, indent=1))
    atomic_write_text(files["legend_txt"], "".join(f"{e['label']}\t{e['name']}\t#{bytes(e['color']).hex()}\t{e['points']}\n"
                                                   for e in legend))
    render_labels(cloud.coord, labels, classes, files["png"])
    return PredictResult(out, len(labels), classes, counts, files, warnings)
