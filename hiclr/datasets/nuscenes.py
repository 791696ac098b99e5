"""nuScenes keyframes (LiDAR + 6 cameras, lidarseg labels) into the store, through nuscenes-devkit.

One store scene per keyframe sample; its id is the sample token.

Frame: every array of a scene is in the **ego-vehicle frame at the LIDAR_TOP timestamp** (x
forward, y left, z up, metres; origin at the rear axle on the ground plane). LiDAR points are
moved there from the sensor with LIDAR_TOP's calibrated_sensor; each camera's pose is the chain
``inv(ego_pose[lidar]) · ego_pose[camera] · calibrated_sensor[camera]``, i.e. through the global
frame with the ego pose at each camera's own timestamp, so the ego motion between the LiDAR sweep
and each exposure (up to ~50 ms, ~1 m at speed) is compensated.

Per scene: ``coord`` (N,3), ``intensity`` (N,) as in the .bin file (0–255), ``label`` from the
lidarseg ``.bin`` (uint8 raw ids → 16 classes, others → -1; absent for the test split),
``normal`` (PCA of the k nearest neighbours, pointing towards the LiDAR), ``color`` (each point
painted from the first camera, in CAM_FRONT … order, that sees it in front of it ≥ 1 m; black
when none: for display only), and 6 views (images, intrinsics, camera-to-ego poses) without
depth maps. Splits come from ``nuscenes.utils.splits.create_splits_scenes()``.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from hiclr.config import NuScenesConfig, fingerprint
from hiclr.datasets.classes import LIDARSEG_TO_NUSCENES16, NUSCENES16_CLASSES, map_lidarseg
from hiclr.errors import HiclrError, MissingDependencyError
from hiclr.runner import RunSummary, run_scenes, select_shard
from hiclr.store import Store

STEP = "hiclr prepare nuscenes"
CAMERAS = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_RIGHT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_FRONT_LEFT")
PAINT_MIN_DEPTH = 1.0  # metres: points nearer to a camera are not painted from it (as for pairing)
_NUSC: dict[tuple[str, str], Any] = {}  # loaded databases, shared with forked workers


def load_nuscenes(dataroot: Path | str, version: str) -> Any:
    """``nuscenes.NuScenes(version, dataroot)``, loaded once per process (and inherited by forked workers)."""
    key = (str(Path(dataroot).resolve()), version)
    if key not in _NUSC:
        try:
            from nuscenes.nuscenes import NuScenes
        except ImportError as exc:
            raise MissingDependencyError("nuscenes-devkit", "nuscenes", "Reading nuScenes") from exc
        table_root = Path(dataroot) / version
        if not table_root.is_dir():
            raise HiclrError(f"{table_root}: no nuScenes tables for version {version}",
                             "give --dataroot the folder holding v1.0-trainval/ (and samples/, lidarseg/)")
        try:
            _NUSC[key] = NuScenes(version=version, dataroot=str(dataroot), verbose=False)
        except (AssertionError, KeyError, FileNotFoundError) as exc:
            raise HiclrError(f"{table_root}: nuscenes-devkit cannot load it ({type(exc).__name__}: {exc})",
                             "check the download is complete (tables, lidarseg tables and label files)") from exc
    return _NUSC[key]


def pose_matrix(translation: Any, rotation: Any) -> np.ndarray:
    """4×4 rigid transform from a nuScenes record: translation (3,) metres, rotation quaternion
    (w, x, y, z). Returns float64 ``[R t; 0 1]``."""
    w, x, y, z = np.asarray(rotation, dtype=np.float64) / np.linalg.norm(rotation)
    T = np.eye(4)
    T[:3, :3] = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    T[:3, 3] = translation
    return T


def _record_pose(nusc: Any, sd: dict) -> tuple[np.ndarray, np.ndarray]:
    """(sensor → ego, ego → global) of a sample_data record."""
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    ep = nusc.get("ego_pose", sd["ego_pose_token"])
    return pose_matrix(cs["translation"], cs["rotation"]), pose_matrix(ep["translation"], ep["rotation"])


def pca_normals(coord: np.ndarray, k: int, viewpoint: np.ndarray) -> np.ndarray:
    """Unit normals (N,3) float32: smallest-eigenvalue direction of each point's k-NN covariance,
    flipped to face ``viewpoint`` (3,). Points with fewer than 3 neighbours get the direction to
    the viewpoint."""
    from scipy.spatial import cKDTree

    n = len(coord)
    out = np.zeros((n, 3), dtype=np.float64)
    if n >= 3:
        kk = min(k, n)
        _, idx = cKDTree(coord).query(coord, k=kk)
        nb = coord[idx].astype(np.float64)  # (N,k,3)
        nb -= nb.mean(axis=1, keepdims=True)
        cov = np.matmul(nb.transpose(0, 2, 1), nb)  # (N,3,3)
        _, vecs = np.linalg.eigh(cov)  # ascending eigenvalues
        out = vecs[:, :, 0]
    to_view = np.asarray(viewpoint, dtype=np.float64)[None] - coord
    bad = np.linalg.norm(out, axis=1) < 0.5
    out[bad] = to_view[bad]
    out[np.einsum("ij,ij->i", out, to_view) < 0] *= -1
    length = np.linalg.norm(out, axis=1, keepdims=True)
    out = np.where(length > 1e-12, out / np.maximum(length, 1e-12), np.array([0.0, 0.0, 1.0]))
    return out.astype(np.float32)


def _lidarseg_record(nusc: Any, lidar_token: str) -> dict | None:
    """The lidarseg record of a LiDAR sample_data (its token is the sample_data token), or None."""
    if not hasattr(nusc, "lidarseg"):
        return None
    try:
        return nusc.get("lidarseg", lidar_token)
    except KeyError:
        return None


def _load_image(path: str, scale: float) -> tuple[np.ndarray, tuple[float, float]]:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        if scale != 1.0:
            w, h = im.size
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            im = im.resize(size, Image.Resampling.BILINEAR)
            return np.asarray(im), (size[0] / w, size[1] / h)
        return np.asarray(im), (1.0, 1.0)


def _paint(coord: np.ndarray, images: list[np.ndarray], Ks: np.ndarray, poses: np.ndarray) -> tuple[np.ndarray, int]:
    """Colour each point from the first camera that sees it (z ≥ PAINT_MIN_DEPTH, inside the image)."""
    color = np.zeros((len(coord), 3), dtype=np.uint8)
    done = np.zeros(len(coord), dtype=bool)
    for img, K, T in zip(images, Ks.astype(np.float64), poses.astype(np.float64)):
        cam = (coord - T[:3, 3]) @ T[:3, :3]  # R^T (p − t)
        z = cam[:, 2]
        ok = ~done & (z >= PAINT_MIN_DEPTH)
        u = np.floor(K[0, 0] * cam[:, 0] / np.where(ok, z, 1) + K[0, 2] + 0.5).astype(np.int64)
        v = np.floor(K[1, 1] * cam[:, 1] / np.where(ok, z, 1) + K[1, 2] + 0.5).astype(np.int64)
        h, w = img.shape[:2]
        ok &= (u >= 0) & (u < w) & (v >= 0) & (v < h)
        color[ok] = img[v[ok], u[ok]]
        done |= ok
    return color, int(done.sum())


def prepare_sample(dataroot: Path, out: Path, token: str, cfg: NuScenesConfig, overwrite: bool = False) -> dict[str, Any]:
    """Prepare one keyframe sample into ``<out>/scenes/<token>``."""
    nusc = load_nuscenes(dataroot, cfg.version)  # raises MissingDependencyError without the devkit
    from nuscenes.utils.data_classes import LidarPointCloud

    store = Store.open(out)
    scene = store.scene(token)
    fp = fingerprint(dataclasses.replace(cfg, splits=[]), format="nuscenes-1")
    if not overwrite and scene.exists() and scene.is_prepared(fp):
        return {"status": "skipped"}
    scene.remove()  # stale or partial; later steps' outputs are set aside until it is written again
    scene = store.scene(token)
    sample = nusc.get("sample", token)
    lidar_sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    lidar_to_ego, ego_l = _record_pose(nusc, lidar_sd)
    pc = LidarPointCloud.from_file(nusc.get_sample_data_path(lidar_sd["token"]))  # (4, N): x y z intensity
    pts = pc.points[:3].T.astype(np.float64)
    coord = (pts @ lidar_to_ego[:3, :3].T + lidar_to_ego[:3, 3]).astype(np.float32)
    intensity = pc.points[3].astype(np.float32)
    origin = lidar_to_ego[:3, 3]

    ego_l_inv = np.linalg.inv(ego_l)
    Ks, poses, images, cam_meta = [], [], [], {}
    for cam in CAMERAS:
        if cam not in sample["data"]:
            raise HiclrError(f"sample {token}: no {cam} keyframe", "the sample is incomplete in this nuScenes version")
        sd = nusc.get("sample_data", sample["data"][cam])
        cam_to_ego, ego_c = _record_pose(nusc, sd)
        img, (sx, sy) = _load_image(nusc.get_sample_data_path(sd["token"]), cfg.image_scale)
        K = np.asarray(nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])["camera_intrinsic"], np.float64)
        if (sx, sy) != (1.0, 1.0):
            from hiclr.datasets.scannet import scale_intrinsics

            K = scale_intrinsics(K, sx, sy)
        Ks.append(K)
        poses.append(ego_l_inv @ ego_c @ cam_to_ego)
        images.append(img)
        cam_meta[cam] = {"timestamp": sd["timestamp"], "file": sd["filename"], "size": [img.shape[1], img.shape[0]]}
    Ks_a, poses_a = np.stack(Ks).astype(np.float32), np.stack(poses).astype(np.float32)

    color, painted = _paint(coord.astype(np.float64), images, Ks_a, poses_a)
    scene.write("coord", coord, STEP, fp)
    scene.write("intensity", intensity, STEP, fp)
    scene.write("color", color, STEP, fp)
    scene.write("normal", pca_normals(coord.astype(np.float64), cfg.normal_knn, origin), STEP, fp)
    seg = _lidarseg_record(nusc, lidar_sd["token"])
    has_label = seg is not None
    if seg is not None:
        from nuscenes.utils.data_io import load_bin_file

        raw = load_bin_file(str(Path(nusc.dataroot) / seg["filename"]), "lidarseg")
        if len(raw) != len(coord):
            raise HiclrError(f"sample {token}: {len(raw)} lidarseg labels for {len(coord)} points",
                             "the lidarseg download does not match this LiDAR sweep: re-download it")
        scene.write("label", map_lidarseg(raw), STEP, fp)
    scene.write_views(Ks_a, poses_a, images, None, STEP, fp)
    scene.set_meta(source="nuscenes", version=cfg.version, scene_name=nusc.get("scene", sample["scene_token"])["name"],
                   frame="ego vehicle at the LIDAR_TOP timestamp", units="metres", timestamp=sample["timestamp"],
                   lidar_timestamp=lidar_sd["timestamp"], lidar_origin=[float(x) for x in origin],
                   cameras=list(CAMERAS), camera_info=cam_meta, painted_points=painted, has_label=has_label,
                   prepared=fp)
    return {"status": "done", "points": len(coord), "views": len(CAMERAS), "labelled": has_label,
            "notes": scene.restore_later()}


def devkit_splits(version: str) -> dict[str, str]:
    """Store split → devkit split name for a nuScenes version."""
    if "mini" in version:
        return {"train": "mini_train", "val": "mini_val"}
    if version.endswith("test"):
        return {"test": "test"}
    return {"train": "train", "val": "val"}


def sample_tokens_for_splits(nusc: Any, version: str, splits: list[str]) -> dict[str, list[str]]:
    """Keyframe sample tokens of each requested split (official scene splits of the devkit)."""
    from nuscenes.utils.splits import create_splits_scenes

    names = devkit_splits(version)
    unknown = [s for s in splits if s not in names]
    if unknown:
        raise HiclrError(f"{version} has no split {unknown[0]!r}", f"use --splits {','.join(names)}")
    official = create_splits_scenes()
    scene_split = {name: split for split in splits for name in official[names[split]]}
    out: dict[str, list[str]] = {s: [] for s in splits}
    for sample in nusc.sample:
        split = scene_split.get(nusc.get("scene", sample["scene_token"])["name"])
        if split is not None:
            out[split].append(sample["token"])
    return {k: sorted(v) for k, v in out.items()}


def prepare_nuscenes(dataroot: Path, out: Path, cfg: NuScenesConfig, workers: int = 1, shard: str | None = None,
                     overwrite: bool = False, progress: bool = True) -> RunSummary:
    """Prepare every keyframe of ``cfg.splits`` of nuScenes ``cfg.version`` at ``dataroot`` into ``out``.

    The database is loaded once in this process (about a minute and a few GB for v1.0-trainval)
    and shared with forked workers."""
    dataroot, out = Path(dataroot), Path(out)
    if cfg.image_scale <= 0:
        raise HiclrError(f"image_scale {cfg.image_scale}: must be > 0", "e.g. --set prepare.image_scale=0.5")
    nusc = load_nuscenes(dataroot, cfg.version)
    found = sample_tokens_for_splits(nusc, cfg.version, list(cfg.splits))
    if (out / "dataset.yaml").is_file():
        store = Store.open(out)
        if store.name != "nuscenes" or store.classes != list(NUSCENES16_CLASSES):
            raise HiclrError(f"{out}: holds another dataset ({store.name})", "give an empty or nuScenes --out folder")
    else:
        store = Store.create(out, "nuscenes", NUSCENES16_CLASSES, LIDARSEG_TO_NUSCENES16, {})
    for split, ids in found.items():
        store.set_split(split, ids)
    ids = select_shard(sorted({t for v in found.values() for t in v}), shard)
    work = partial(prepare_sample, dataroot, out, cfg=cfg, overwrite=overwrite)
    return run_scenes(work, ids, workers=workers, desc="nuscenes", progress=progress)
