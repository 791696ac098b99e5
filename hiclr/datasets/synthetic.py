"""`hiclr prepare synthetic`: procedural indoor rooms with ground truth and rendered RGB-D views.

A room (see :mod:`hiclr.datasets.rooms`) is a labelled triangle mesh at a ScanNet-like vertex
spacing; its views are ray cast (:mod:`hiclr.render`: open3d, or hiclr's torch ray caster where open3d
does not import) from cameras at hand-held height looking down at the furniture, with ScanNet's
depth intrinsics and 640×480 frames by default. Room ``i`` of a dataset uses seed ``cfg.seed + i``
and is named ``room_<seed>``; the same seed gives byte-identical arrays and frames with the same
ray caster (the two differ on the few pixels whose rays pass through a shared edge).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hiclr.config import SyntheticConfig, fingerprint, save_config
from hiclr.datasets.classes import NYU40_TO_SCANNET20, SCANNET20_CLASSES
from hiclr.datasets.rooms import ROOM_TYPES, Layout, Mesh, make_layout, room_mesh
from hiclr.errors import HiclrError
from hiclr.runner import RunSummary, run_scenes, select_shard
from hiclr.store import Store

GENERATOR_VERSION = 1  # bump when the generator's output changes for a given seed
STEP = "hiclr prepare synthetic"
OUTPUTS = ("coord", "color", "normal", "label", "faces", "views")
# ScanNet's depth camera (640×480): fx, fy, cx, cy in pixels.
SCANNET_DEPTH_INTRINSICS = (577.870605, 577.870605, 319.5, 239.5)


def intrinsics(width: int, height: int) -> np.ndarray:
    """ScanNet's depth intrinsics scaled to a ``width``×``height`` image: (3,3) float32, pixels."""
    fx, fy, cx, cy = SCANNET_DEPTH_INTRINSICS
    sx, sy = width / 640.0, height / 480.0
    return np.array([[fx * sx, 0, (cx + 0.5) * sx - 0.5], [0, fy * sy, (cy + 0.5) * sy - 0.5], [0, 0, 1]],
                    dtype=np.float32)


def look_at(eye: np.ndarray, target: np.ndarray, roll: float = 0.0) -> np.ndarray:
    """Camera-to-world (4,4) float64, OpenCV axes (x right, y down, z forward), z-up world,
    looking from ``eye`` at ``target`` and turned by ``roll`` radians about the viewing axis."""
    f = np.asarray(target, dtype=np.float64) - eye
    f /= np.linalg.norm(f)
    right = np.cross(f, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(f, right)
    c, s = math.cos(roll), math.sin(roll)
    T = np.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2], T[:3, 3] = c * right + s * down, -s * right + c * down, f, eye
    return T


@dataclass
class SyntheticScene:
    """One generated room and its views (V views of H×W pixels)."""

    seed: int
    layout: Layout
    mesh: Mesh
    intrinsics: np.ndarray  # float32 (V,3,3)
    cam_to_world: np.ndarray  # float32 (V,4,4)
    colors: list[np.ndarray]  # V × uint8 (H,W,3)
    depths: list[np.ndarray]  # V × uint16 (H,W) millimetres, 0 = no hit
    labels: list[np.ndarray]  # V × int16 (H,W) ground truth per pixel, -1 = no hit / ignore


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), stream]))


def sample_cameras(layout: Layout, mesh: Mesh, renderer: Any, rng: np.random.Generator, n_views: int,
                   K: np.ndarray, tries: int = 60) -> tuple[np.ndarray, int]:
    """``n_views`` camera-to-world poses (V,4,4) float64 inside the room, at 1.25–1.65 m, each aimed
    near an object (objects taken in turn) that it sees unoccluded and well inside the frame,
    looking 8°–50° down. Also returns how many views fell back to the room centre."""
    size = layout.size
    objs = [i for i, o in enumerate(layout.objects) if o.name != "door"] or list(range(len(layout.objects)))
    order = [objs[i] for i in rng.permutation(len(objs))] if objs else []
    boxes = [o.bounds() for o in layout.objects]
    poses, fallbacks = [], 0
    for v in range(n_views):
        if not order:
            eye = np.array([size[0] / 2, size[1] / 2, 1.5])
            poses.append(look_at(eye, eye + np.array([1.0, 0.0, -0.5])))
            continue
        oi = order[v % len(order)]
        lo, hi = boxes[oi]
        target = (lo + hi) / 2
        target[2] = min(max(target[2], 0.25), 1.5)
        pose = None
        for _ in range(tries):
            dist, yaw = rng.uniform(1.2, 3.2), rng.uniform(0, 2 * math.pi)
            eye = np.array([target[0] - dist * math.cos(yaw), target[1] - dist * math.sin(yaw),
                            rng.uniform(1.25, 1.65)])
            aim = target + rng.uniform([-0.25, -0.25, -0.15], [0.25, 0.25, 0.15])
            roll = rng.uniform(-0.06, 0.06)
            if (eye[:2] < 0.3).any() or (eye[:2] > size[:2] - 0.3).any():
                continue
            if any((eye > blo - 0.2).all() and (eye < bhi + 0.2).all() for blo, bhi in boxes):
                continue
            hd = float(np.linalg.norm(aim[:2] - eye[:2]))  # keep the pitch 8°–50° down, as hand-held scans do
            pitch = min(max(math.atan2(eye[2] - aim[2], hd), math.radians(8)), math.radians(50))
            aim[2] = eye[2] - hd * math.tan(pitch)
            T = look_at(eye, aim, roll)
            p = T[:3, :3].T @ (target - eye)  # the target in camera coordinates: well inside the frame
            half_x, half_y = 0.8 * K[0, 2] / K[0, 0], 0.8 * K[1, 2] / K[1, 1]  # tangents of 80 % of the half-FOV
            if not (abs(p[0]) < half_x * p[2] and abs(p[1]) < half_y * p[2]):
                continue
            ray = np.concatenate([eye, target - eye])[None]
            ans = renderer.cast(ray)
            tri = int(ans["primitive_ids"][0])
            if tri == 0xFFFFFFFF or mesh.instances[mesh.faces[tri, 0]] != oi + 1:
                continue
            centre = renderer.cast(np.concatenate([eye, T[:3, 2]])[None])
            if not centre["t_hit"][0] > 0.5:
                continue
            pose = T
            break
        if pose is None:  # fall back to the room centre, looking down at the object
            eye = np.array([size[0] / 2, size[1] / 2, 1.5])
            if np.linalg.norm((eye - target)[:2]) < 0.3:
                eye[0] += 0.5
            pose = look_at(eye, np.array([target[0], target[1], min(target[2], 1.0)]))
            fallbacks += 1
        poses.append(pose)
    return (np.stack(poses) if poses else np.zeros((0, 4, 4))), fallbacks


def generate_scene(seed: int, cfg: SyntheticConfig) -> SyntheticScene:
    """Build room ``seed`` (type ``ROOM_TYPES[seed % 4]``) and render ``cfg.views`` RGB-D views."""
    from hiclr.render import MeshRenderer

    kind = ROOM_TYPES[seed % len(ROOM_TYPES)]
    layout = make_layout(_rng(seed, 0), kind)
    mesh = room_mesh(layout, _rng(seed, 1), cfg.spacing, cfg.ceiling)
    renderer = MeshRenderer(mesh.vertices, mesh.faces)
    K = intrinsics(cfg.width, cfg.height)
    poses, _ = sample_cameras(layout, mesh, renderer, _rng(seed, 2), cfg.views, K)
    colors, depths, labels = [], [], []
    for T in poses:
        view = renderer.render(mesh.colors, mesh.labels, K, T, cfg.width, cfg.height)
        colors.append(view.color)
        depths.append(np.clip(np.rint(view.depth * 1000.0), 0, 65535).astype(np.uint16))
        labels.append(view.label)
    Ks = np.repeat(K[None], len(poses), axis=0)
    return SyntheticScene(seed, layout, mesh, Ks, poses.astype(np.float32), colors, depths, labels)


# ------------------------------------------------------------------------------------------------
# the dataset


def scene_id(seed: int) -> str:
    return f"room_{seed:04d}"


def scene_fingerprint(cfg: SyntheticConfig, seed: int) -> str:
    """What one room depends on: its seed and the settings that shape it (not the room count)."""
    return fingerprint(dataclasses.replace(cfg, scenes=0, seed=0, val_fraction=0.0), room_seed=seed,
                       generator=GENERATOR_VERSION)


def splits_for(cfg: SyntheticConfig) -> dict[str, list[str]]:
    """train/val split of the config's rooms: the last ``round(scenes · val_fraction)`` rooms are val
    (at least one when the fraction is positive and there are two rooms or more)."""
    ids = [scene_id(cfg.seed + i) for i in range(cfg.scenes)]
    n_val = round(len(ids) * cfg.val_fraction)
    if cfg.val_fraction > 0 and n_val == 0 and len(ids) > 1:
        n_val = 1
    n_val = min(n_val, len(ids))
    return {"train": ids[: len(ids) - n_val], "val": ids[len(ids) - n_val :]}


def _check(cfg: SyntheticConfig) -> None:
    problems = [
        (cfg.scenes < 1, "synthetic.scenes", "at least 1"),
        (cfg.seed < 0, "synthetic.seed", "a non-negative integer"),
        (cfg.views < 0, "synthetic.views", "0 or more"),
        (cfg.width < 8 or cfg.height < 8, "synthetic.width/height", "at least 8 pixels"),
        (not 0.005 <= cfg.spacing <= 0.5, "synthetic.spacing", "between 0.005 and 0.5 metres"),
        (not 0.0 <= cfg.val_fraction <= 1.0, "synthetic.val_fraction", "in [0, 1]"),
    ]
    for bad, name, want in problems:
        if bad:
            value = getattr(cfg, name.split(".")[1].split("/")[0])
            raise HiclrError(f"{name} = {value!r} is invalid", f"give {want}")


def _prepare_one(sid: str, root: str, cfg: SyntheticConfig, overwrite: bool) -> dict[str, Any]:
    """Generate and write one room (runs in a worker process when --workers > 1)."""
    store = Store.open(root)
    seed = int(sid.split("_", 1)[1])
    fp = scene_fingerprint(cfg, seed)
    scene = store.scene(sid)
    scene.clean_temporaries()
    if not overwrite and scene.exists() and all(scene.fingerprint(n) == fp for n in OUTPUTS):
        return {"status": "skipped"}
    scene.remove()  # stale or partial; later steps' outputs are set aside until it is written again
    s = generate_scene(seed, cfg)
    scene = store.scene(sid)
    scene.set_meta(source="synthetic", seed=seed, room_type=s.layout.kind, image_size=[cfg.width, cfg.height],
                   units="m", room_size=[round(float(x), 4) for x in s.layout.size],
                   objects=[o.name for o in s.layout.objects])
    m = s.mesh
    scene.write("coord", m.vertices.astype(np.float32), STEP, fp)
    scene.write("color", m.colors, STEP, fp)
    scene.write("normal", m.normals, STEP, fp)
    scene.write("label", m.labels, STEP, fp)
    scene.write("faces", m.faces.astype(np.int32), STEP, fp)
    scene.write_views(s.intrinsics, s.cam_to_world, s.colors, s.depths, STEP, fp)
    return {"status": "done", "points": len(m.vertices), "views": len(s.colors), "notes": scene.restore_later()}


def prepare_synthetic(out: Path | str, cfg: SyntheticConfig, workers: int = 1, overwrite: bool = False,
                      progress: bool = True, shard: str | None = None) -> RunSummary:
    """Write ``cfg.scenes`` synthetic rooms into the store at ``out`` (created if absent).

    Rooms whose arrays exist with the same settings are skipped unless ``overwrite``. ``shard``
    ("k/n") makes only that share of the rooms; ``dataset.yaml`` always lists the whole dataset."""
    _check(cfg)
    root = Path(out)
    existing = Store.open(root) if (root / "dataset.yaml").is_file() else None
    if existing is not None and existing.name != "synthetic":
        raise HiclrError(f"{root}: holds the dataset '{existing.name}', not a synthetic one",
                         "choose another --out folder")
    if existing is not None and existing.classes == list(SCANNET20_CLASSES):
        existing.meta["splits"] = splits_for(cfg)  # keep whatever else later steps recorded
        existing.save_meta()
    else:
        Store.create(root, name="synthetic", classes=SCANNET20_CLASSES, source_map=NYU40_TO_SCANNET20,
                     splits=splits_for(cfg))
    save_config(cfg, root / "prepare_synthetic.yaml")
    ids = select_shard([scene_id(cfg.seed + i) for i in range(cfg.scenes)], shard)
    work = functools.partial(_prepare_one, root=str(root), cfg=cfg, overwrite=overwrite)
    return run_scenes(work, ids, workers=workers, desc="prepare synthetic", progress=progress)


def dataset_summary(store: Store) -> dict[str, Any]:
    """Scenes, points, views and the ground-truth class histogram (points per class) of a store."""
    ids = store.scene_ids()
    hist = np.zeros(store.num_classes, dtype=np.int64)
    points = views = ignored = 0
    for sid in ids:
        scene = store.scene(sid)
        points += scene.num_points
        views += scene.num_views
        if scene.has("label"):
            lab = scene.read("label", mmap=True)
            ignored += int((lab < 0).sum())
            counts = np.bincount(lab[lab >= 0].astype(np.int64), minlength=store.num_classes)
            hist += counts[: store.num_classes]
    return {
        "name": store.name,
        "scenes": len(ids),
        "splits": {k: len([s for s in v if s in set(ids)]) for k, v in store.splits.items()},
        "points": points,
        "views": views,
        "ignored_points": ignored,
        "classes": {name: int(n) for name, n in zip(store.classes, hist)},
    }
