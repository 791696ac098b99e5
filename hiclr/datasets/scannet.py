"""ScanNet v2 scans into the store: mesh, normals, ScanNet-20 labels and RGB-D views.

Input, one folder per scan (``<raw>/<scan>/``), as ScanNet's download script leaves it:

- ``<scan>_vh_clean_2.ply``: the mesh we segment (vertices ``x y z`` float, ``red green blue
  alpha`` uchar; faces ``list uchar int vertex_indices``);
- ``<scan>_vh_clean_2.labels.ply``: same vertices with a ``label`` (NYU40 id, ushort) property;
  absent for test scans. Ids outside the 20 benchmark classes, stray ids (50, 149, …) included,
  become -1;
- frames, auto-detected: ``<scan>.sens`` (:mod:`hiclr.datasets.sens`), else exported folders
  ``color/<i>.jpg``, ``depth/<i>.png`` (uint16, millimetres), ``pose/<i>.txt`` (4×4
  camera-to-world) and ``intrinsic/intrinsic_{color,depth}.txt`` (4×4), as ScanNet's
  SensReader writes them, in the scan folder or in ``<frames>/<scan>/``.

Frames: frame ``i`` of the stream is kept when ``i % frame_stride == 0`` (for exported folders
``i`` is the number in the file name, which the official exporter sets to the stream index, so
both sources keep the same frames); a kept frame whose pose has a non-finite entry is dropped
and counted. Stored views are on a ``image_width × image_height`` grid (default the 640×480
depth grid) with the depth camera's intrinsics scaled to it; depth is copied (nearest sample);
colour is resampled from the colour camera onto that grid through both intrinsics (an affine
map between pixel centres: the two cameras of ScanNet share the pose), so a point projected
with the stored intrinsics lands where the colour camera saw it. A plain resize would misplace
it by ~4 rows, because ScanNet's colour and depth principal points differ in relative position.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from hiclr.config import ScanNetConfig, fingerprint
from hiclr.datasets.classes import NYU40_TO_SCANNET20, SCANNET20_CLASSES, map_nyu40
from hiclr.errors import HiclrError
from hiclr.runner import RunSummary, run_scenes, select_shard
from hiclr.store import Store, local_origin, read_image

STEP = "hiclr prepare scannet"
SPLITS = ("train", "val", "test")
_SCAN_ID = re.compile(r"^scene\d{4}_\d{2}$")


# --------------------------------------------------------------------------------------------
# splits


def read_scene_list(path: Path | str) -> list[str]:
    """Scene ids of a list file, one per line (blank lines and ``#`` comments skipped)."""
    path = Path(path)
    if not path.is_file():
        raise HiclrError(f"{path}: scene list not found", "give a text file with one scene id per line")
    ids = [ln.split("#")[0].strip() for ln in path.read_text().splitlines()]
    return [s for s in ids if s]


def official_split(name: str) -> list[str]:
    """The official ScanNet v2 split list ``scannetv2_<name>.txt`` shipped with hiclr
    (train 1201, val 312, test 100 scans)."""
    if name not in SPLITS:
        raise HiclrError(f"unknown ScanNet split {name!r}", f"one of {', '.join(SPLITS)}, or give a list file")
    text = resources.files("hiclr").joinpath("data", f"scannetv2_{name}.txt").read_text()
    return [s.strip() for s in text.splitlines() if s.strip()]


# --------------------------------------------------------------------------------------------
# geometry helpers


def vertex_normals(coord: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, int]:
    """Unit vertex normals of a triangle mesh: the area-weighted sum of adjacent face normals.

    Args:
        coord: (N, 3) vertex positions, metres.
        faces: (F, 3) int vertex indices, counter-clockwise seen from outside.
    Returns:
        ((N, 3) float32 unit normals, number of vertices without any face — given +z).
    """
    v = np.asarray(coord, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    n = np.zeros_like(v)
    if len(f):
        fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])  # (F,3), length = 2·area
        flat = f.reshape(-1)
        for c in range(3):
            n[:, c] = np.bincount(flat, weights=np.repeat(fn[:, c], 3), minlength=len(v))
    length = np.linalg.norm(n, axis=1)
    bad = length <= 1e-20
    n[bad] = (0.0, 0.0, 1.0)
    length[bad] = 1.0
    return (n / length[:, None]).astype(np.float32), int(bad.sum())


def scale_intrinsics(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Intrinsics of an image resized by ``sx`` (width) and ``sy`` (height), pixel centres at
    integers: ``u' = sx·(u + ½) − ½``. Returns (3, 3) float64."""
    K = np.asarray(K, dtype=np.float64)[:3, :3].copy()
    K[0, 0] *= sx
    K[0, 1] *= sx
    K[0, 2] = sx * (K[0, 2] + 0.5) - 0.5
    K[1, 1] *= sy
    K[1, 2] = sy * (K[1, 2] + 0.5) - 0.5
    return K


def _pixel_map(K_src: np.ndarray, K_dst: np.ndarray) -> tuple[float, float, float, float]:
    """(sx, tx, sy, ty) with ``u_src = sx·u_dst + tx``, ``v_src = sy·v_dst + ty`` (same pose, no skew)."""
    sx = K_src[0, 0] / K_dst[0, 0]
    sy = K_src[1, 1] / K_dst[1, 1]
    return sx, K_src[0, 2] - sx * K_dst[0, 2], sy, K_src[1, 2] - sy * K_dst[1, 2]


def resample_color(rgb: np.ndarray, K_src: np.ndarray, K_dst: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Colour image taken with ``K_src`` as seen by a camera with ``K_dst`` at the same pose.

    Args:
        rgb: (Hs, Ws, 3) uint8.
        K_src, K_dst: (3, 3) intrinsics in pixels of the source and target images.
        size: target (width, height).
    Returns:
        (height, width, 3) uint8, antialiased bilinear (PIL), edges replicated outside the source.
    """
    from PIL import Image

    W, H = size
    sx, tx, sy, ty = _pixel_map(K_src, K_dst)
    # PIL's box is in corner coordinates (pixel i spans [i, i+1]); ours are pixel centres.
    x0, y0 = tx + 0.5 - 0.5 * sx, ty + 0.5 - 0.5 * sy
    x1, y1 = x0 + sx * W, y0 + sy * H
    hs, ws = rgb.shape[:2]
    over = max(0.0, -x0, -y0, x1 - ws, y1 - hs)
    if over > 0.25 * max(ws, hs):
        raise HiclrError("colour and depth intrinsics do not describe overlapping images",
                         "check intrinsic_color / intrinsic_depth of this scan")
    pad = math.ceil(over) + 1 if over > 0 else 0
    img = np.pad(rgb, ((pad, pad), (pad, pad), (0, 0)), mode="edge") if pad else rgb
    box = (x0 + pad, y0 + pad, x1 + pad, y1 + pad)
    if (W, H) == (ws, hs) and np.allclose(box, (0, 0, ws, hs), atol=1e-6):
        return np.ascontiguousarray(rgb)
    out = Image.fromarray(np.ascontiguousarray(img)).resize((W, H), Image.Resampling.BILINEAR, box=box)
    return np.asarray(out)


def resample_depth(depth: np.ndarray, K_src: np.ndarray, K_dst: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Depth image (any dtype, 0 = no data) sampled by nearest pixel onto the ``K_dst`` grid.

    Returns (height, width) of the input dtype; target pixels outside the source get 0."""
    W, H = size
    sx, tx, sy, ty = _pixel_map(K_src, K_dst)
    hs, ws = depth.shape
    if (W, H) == (ws, hs) and np.allclose((sx, tx, sy, ty), (1, 0, 1, 0), atol=1e-9):
        return depth.copy()
    u = np.floor(sx * np.arange(W) + tx + 0.5).astype(np.int64)
    v = np.floor(sy * np.arange(H) + ty + 0.5).astype(np.int64)
    out = np.zeros((H, W), dtype=depth.dtype)
    cu, cv = (u >= 0) & (u < ws), (v >= 0) & (v < hs)
    out[np.ix_(cv, cu)] = depth[np.ix_(v[cv], u[cu])]
    return out


# --------------------------------------------------------------------------------------------
# frame sources


@dataclass
class Frames:
    """An RGB-D stream: indices of the frames, their poses, and per-frame decoders."""

    kind: str  # "sens" | "exported"
    ids: list[int]  # stream index of each frame
    poses: list[np.ndarray]  # (4, 4) camera-to-world
    K_color: np.ndarray  # (3, 3) pixels of the colour image
    K_depth: np.ndarray  # (3, 3) pixels of the depth image
    depth_size: tuple[int, int]  # (width, height)
    depth_shift: float  # raw depth units per metre
    color_note: str
    _color: Any
    _depth: Any
    pose_files: str = ""  # where the poses come from, for messages: ``<scan>/pose/<i>.txt`` or the .sens file

    def color(self, k: int) -> np.ndarray:
        return self._color(k)

    def depth(self, k: int) -> np.ndarray:
        return self._depth(k)


def _sens_frames(path: Path) -> Frames:
    from hiclr.datasets.sens import read_sens_header

    s = read_sens_header(path)
    check_intrinsics_fit(s.intrinsic_depth, (s.depth_width, s.depth_height), path, path)
    return Frames("sens", list(range(len(s.frames))), [f.camera_to_world for f in s.frames],
                  s.intrinsic_color[:3, :3].astype(np.float64), s.intrinsic_depth[:3, :3].astype(np.float64),
                  (s.depth_width, s.depth_height), s.depth_shift, "colour intrinsics from the .sens header",
                  s.color, s.depth, str(path))


def _numbered(folder: Path, ext: str) -> dict[int, Path]:
    out: dict[int, Path] = {}
    for p in folder.glob(f"*{ext}"):
        m = re.search(r"(\d+)", p.stem)
        if m:
            out[int(m.group(1))] = p
    return out


def _read_matrix(path: Path) -> np.ndarray:
    try:
        m = np.loadtxt(path, dtype=np.float64)
    except (OSError, ValueError) as exc:
        raise HiclrError(f"{path}: not a 4x4 matrix ({exc})", "the exported file is corrupt: export it again") from exc
    if m.shape != (4, 4):
        raise HiclrError(f"{path}: shape {m.shape}, expected 4x4", "the exported file is corrupt: export it again")
    return m


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, UnidentifiedImageError) as exc:
        raise HiclrError(f"{path}: unreadable image ({exc})", "export the frame again with SensReader") from exc


def check_intrinsics_fit(K: np.ndarray, size: tuple[int, int], image: Path, intrinsics: Path) -> None:
    """Refuse a depth image whose size does not match its intrinsics: the principal point of a
    real camera lies near the image centre (within 20 % of each side), which is where ``K`` puts
    it for an image of ``size`` (width, height) only if ``K`` was calibrated for that size. A frame
    exported at half or double size is caught; storing it would misplace every point."""
    w, h = size
    cx, cy = float(K[0, 2]), float(K[1, 2])
    if not (abs(cx / w - 0.5) <= 0.2 and abs(cy / h - 0.5) <= 0.2):
        raise HiclrError(f"{image}: depth frame is {w}x{h}, but {intrinsics} puts the principal point at "
                         f"({cx:g}, {cy:g}): it describes an image of about {2 * cx + 1:.0f}x{2 * cy + 1:.0f}",
                         "export depth frames and intrinsics together (SensReader), or scale intrinsic_depth.txt "
                         "to the frames' size")


def _exported_frames(root: Path) -> Frames:

    colors, depths, poses = _numbered(root / "color", ".jpg"), _numbered(root / "depth", ".png"), _numbered(root / "pose", ".txt")
    ids = sorted(set(colors) & set(depths))  # a frame without its pose/<i>.txt counts as an invalid pose
    if not ids:
        raise HiclrError(f"{root}: no frame has color/<i>.jpg and depth/<i>.png together",
                         "export frames with ScanNet's SensReader, or provide the .sens file")
    kd_path = root / "intrinsic" / "intrinsic_depth.txt"
    if not kd_path.is_file():
        raise HiclrError(f"{kd_path}: missing", "export intrinsics with ScanNet's SensReader (--export_intrinsics)")
    K_depth = _read_matrix(kd_path)[:3, :3]
    dsize, csize = _image_size(depths[ids[0]]), _image_size(colors[ids[0]])
    check_intrinsics_fit(K_depth, dsize, depths[ids[0]], kd_path)
    kc_path = root / "intrinsic" / "intrinsic_color.txt"
    K_color = _read_matrix(kc_path)[:3, :3] if kc_path.is_file() else None
    note = "colour intrinsics from intrinsic_color.txt"
    if K_color is None or K_color[0, 2] >= csize[0] or K_color[1, 2] >= csize[1]:
        # The exporter resized colour (its intrinsics describe the full-size image): treat the
        # colour as registered with depth, as tools that export 640x480 colour frames do.
        K_color = scale_intrinsics(K_depth, csize[0] / dsize[0], csize[1] / dsize[1])
        note = "colour treated as registered with depth (intrinsic_color missing or for another size)"

    def color(k: int) -> np.ndarray:
        return read_image(colors[ids[k]], "RGB", "export the frame again with SensReader")

    def depth(k: int) -> np.ndarray:
        d = read_image(depths[ids[k]], None, "export the frame again with SensReader")
        if d.dtype not in (np.uint16, np.int32, np.uint32) or d.ndim != 2:
            raise HiclrError(f"{depths[ids[k]]}: depth PNG is {d.dtype}, expected 16-bit", "export depth with SensReader")
        if d.shape != (dsize[1], dsize[0]):
            raise HiclrError(f"{depths[ids[k]]}: depth frame is {d.shape[1]}x{d.shape[0]}, the scan's first frame "
                             f"({depths[ids[0]].name}) and intrinsic_depth.txt are {dsize[0]}x{dsize[1]}",
                             "export every depth frame at one size (SensReader)")
        return d.astype(np.uint16)

    missing = np.full((4, 4), np.nan)
    return Frames("exported", ids, [_read_matrix(poses[i]) if i in poses else missing for i in ids], K_color, K_depth,
                  dsize, 1000.0, note, color, depth, str(root / "pose" / "<i>.txt"))


def find_frames(scan_dir: Path, scan_id: str, frames_root: Path | None = None) -> Frames | None:
    """The scan's RGB-D stream: ``<scan>.sens`` if present, else exported folders; None if neither."""
    sens = scan_dir / f"{scan_id}.sens"
    if sens.is_file():
        return _sens_frames(sens)
    for root in ([frames_root / scan_id] if frames_root else []) + [scan_dir]:
        if (root / "color").is_dir() and (root / "pose").is_dir() and (root / "depth").is_dir():
            return _exported_frames(root)
    return None


def select_frames(frames: Frames, stride: int) -> tuple[list[int], int]:
    """Positions in ``frames`` of the kept frames (stream index divisible by ``stride``, finite
    pose) and how many stride-selected frames were dropped for a non-finite or missing pose."""
    if stride < 1:
        raise HiclrError(f"frame_stride {stride}: must be ≥ 1", "set --frame-stride 20 (the default)")
    picked = [k for k, i in enumerate(frames.ids) if i % stride == 0]
    kept = [k for k in picked if np.isfinite(frames.poses[k]).all()]
    return kept, len(picked) - len(kept)


# --------------------------------------------------------------------------------------------
# one scan


def read_scan_mesh(scan_dir: Path, scan_id: str) -> dict[str, Any]:
    """coord (N,3) f64 (the file's frame, exact for georeferenced meshes), color (N,3) u8, faces (F,3)
    i32, if a label file exists label (N,) i16, and color_note when the colours were not 8-bit
    (how they were read: :func:`hiclr.datasets.plyio.vertex_colors`)."""
    from hiclr.datasets.plyio import read_ply, vertex_colors

    mesh_path = scan_dir / f"{scan_id}_vh_clean_2.ply"
    if not mesh_path.is_file():
        raise HiclrError(f"{mesh_path}: missing", "download the scan's _vh_clean_2.ply with ScanNet's download script")
    ply = read_ply(mesh_path)
    v = ply["vertex"]
    names = v.dtype.names or ()
    for need in ("x", "y", "z", "red", "green", "blue"):
        if need not in names:
            raise HiclrError(f"{mesh_path}: vertex property {need!r} missing", "is this a ScanNet _vh_clean_2.ply?")
    if len(v) == 0:
        raise HiclrError(f"{mesh_path}: the mesh has no vertices", "re-download the scan (or leave it out of the split list)")
    color, color_note = vertex_colors(mesh_path, v)
    out = {
        "coord": np.stack([v["x"], v["y"], v["z"]], axis=1).astype(np.float64),
        "color": color,
        "faces": ply["face"].astype(np.int32),
    }
    if color_note:
        out["color_note"] = color_note
    if not np.isfinite(out["coord"]).all():
        raise HiclrError(f"{mesh_path}: non-finite vertex coordinates", "re-download the scan")
    label_path = scan_dir / f"{scan_id}_vh_clean_2.labels.ply"
    if label_path.is_file():
        lv = read_ply(label_path)["vertex"]
        if "label" not in (lv.dtype.names or ()):
            raise HiclrError(f"{label_path}: no 'label' vertex property", "re-download the scan's labels file")
        if len(lv) != len(v):
            raise HiclrError(f"{label_path}: {len(lv)} vertices but the mesh has {len(v)}",
                             "the mesh and label files are from different scans or versions: re-download both")
        out["label"] = map_nyu40(lv["label"])
    return out


def _fingerprint(cfg: ScanNetConfig) -> str:
    return fingerprint(dataclasses.replace(cfg, splits=[]), format="scannet-1")


def _views(frames: Frames, kept: list[int], size: tuple[int, int]) -> tuple[np.ndarray, Iterator, Iterator]:
    dw, dh = frames.depth_size
    K = scale_intrinsics(frames.K_depth, size[0] / dw, size[1] / dh)

    def colors() -> Iterator[np.ndarray]:
        for k in kept:
            yield resample_color(frames.color(k), frames.K_color, K, size)

    def depths() -> Iterator[np.ndarray]:
        for k in kept:
            d = resample_depth(frames.depth(k), frames.K_depth, K, size)
            if frames.depth_shift == 1000.0:
                yield d.astype(np.uint16)  # already millimetres
            else:
                yield d.astype(np.float32) / np.float32(frames.depth_shift)  # metres; the store rounds to mm

    return K.astype(np.float32), colors(), depths()


def prepare_scan(raw: Path, out: Path, scan_id: str, cfg: ScanNetConfig, overwrite: bool = False,
                 frames_root: Path | None = None) -> dict[str, Any]:
    """Prepare one scan into ``<out>/scenes/<scan_id>`` (skipped when done with the same settings)."""
    store = Store.open(out)
    scene = store.scene(scan_id)
    fp = _fingerprint(cfg)
    if not overwrite and scene.exists() and scene.is_prepared(fp):
        return {"status": "skipped"}
    scene.remove()  # stale or partial; later steps' outputs are set aside until it is written again
    scene = store.scene(scan_id)
    scan_dir = Path(raw) / scan_id
    mesh = read_scan_mesh(scan_dir, scan_id)
    origin = local_origin(mesh["coord"])  # the store keeps points and poses relative to it
    normal, isolated = vertex_normals(mesh["coord"] - origin, mesh["faces"])
    scene.write("coord", mesh["coord"], STEP, fp)
    scene.write("color", mesh["color"], STEP, fp)
    scene.write("normal", normal, STEP, fp)
    scene.write("faces", mesh["faces"], STEP, fp)
    if "label" in mesh:
        scene.write("label", mesh["label"], STEP, fp)
    frames = find_frames(scan_dir, scan_id, frames_root)
    result: dict[str, Any] = {"status": "done", "points": len(mesh["coord"]), "views": 0, "dropped_invalid_pose": 0,
                              "notes": [mesh["color_note"]] if "color_note" in mesh else []}
    meta: dict[str, Any] = {"source": "scannet", "units": "metres", "isolated_vertices": isolated,
                            "has_label": "label" in mesh}
    if frames is None:
        result["warning"] = "no frames (.sens or exported color/depth/pose folders)"
        meta.update(frames="none")
    else:
        kept, dropped = select_frames(frames, cfg.frame_stride)
        if not kept:  # a scene without views would only fail at pseudolabel, far from the cause
            why = (f"all {dropped} frames selected (frame stride {cfg.frame_stride}) have a missing or non-finite "
                   "pose (-inf where tracking failed)" if dropped else
                   f"no frame number is a multiple of the frame stride {cfg.frame_stride}")
            raise HiclrError(f"{frames.pose_files}: {why}, so the scan would have no views",
                             "leave this scan out of the split list, export its poses again, or try another "
                             "--frame-stride")
        size = (cfg.image_width, cfg.image_height)
        K, colors, depths = _views(frames, kept, size)
        Ks = np.repeat(K[None], len(kept), axis=0)
        poses = np.stack([frames.poses[k] for k in kept]).astype(np.float64) if kept else np.zeros((0, 4, 4))
        scene.write_views(Ks, poses, colors, depths, STEP, fp)
        result.update(views=len(kept), dropped_invalid_pose=dropped)
        meta.update(frames=frames.kind, frame_ids=[frames.ids[k] for k in kept], frame_stride=cfg.frame_stride,
                    frames_in_stream=len(frames.ids), dropped_invalid_pose=dropped, image_size=list(size),
                    depth_shift=frames.depth_shift, color_intrinsics=frames.color_note)
    meta["prepared"] = fp
    scene.set_meta(**meta)
    result["notes"] += scene.restore_later()
    return result


# --------------------------------------------------------------------------------------------
# the dataset


def _open_or_create(out: Path) -> Store:
    if (Path(out) / "dataset.yaml").is_file():
        store = Store.open(out)
        if store.name != "scannet" or store.classes != list(SCANNET20_CLASSES):
            raise HiclrError(f"{out}: holds another dataset ({store.name}, {store.num_classes} classes)",
                             "give an empty or ScanNet --out folder")
        return store
    return Store.create(out, "scannet", SCANNET20_CLASSES, NYU40_TO_SCANNET20, {})


def scan_ids_for_splits(raw: Path, splits: list[str], split_files: dict[str, Path] | None = None
                        ) -> tuple[dict[str, list[str]], list[str]]:
    """Scans of ``raw`` in each requested split, and the listed scans missing from ``raw``.

    A split's list comes from ``split_files[split]`` when given, else the official list."""
    raw = Path(raw)
    if not raw.is_dir():
        raise HiclrError(f"{raw}: not a folder", "give --raw the ScanNet 'scans' (or 'scans_test') folder")
    present = {p.name for p in raw.iterdir() if p.is_dir()}
    found: dict[str, list[str]] = {}
    missing: list[str] = []
    for split in splits:
        listed = read_scene_list(split_files[split]) if split_files and split in split_files else official_split(split)
        found[split] = sorted(s for s in listed if s in present)
        missing += [s for s in listed if s not in present]
    return found, sorted(set(missing))


def prepare_scannet(raw: Path, out: Path, cfg: ScanNetConfig, workers: int = 1, shard: str | None = None,
                    overwrite: bool = False, progress: bool = True, split_files: dict[str, Path] | None = None,
                    frames_root: Path | None = None) -> RunSummary:
    """Prepare every scan of ``raw`` that belongs to ``cfg.splits`` into the store at ``out``.

    Resumable (finished scans are skipped unless ``overwrite``), parallel over ``workers``
    processes, restricted to ``shard`` "K/N". A broken scan is recorded in ``summary.failed``
    with its error and the rest go on. ``summary.results[scan]`` holds points, views and the
    number of frames dropped for invalid poses (listed scans absent from ``raw`` are not
    failures: :func:`scan_ids_for_splits` names them)."""
    raw, out = Path(raw), Path(out)
    stray = sorted(set(split_files or {}) - set(cfg.splits))
    if stray:
        raise HiclrError(f"a scene list is given for split {stray[0]!r}, which is not prepared",
                         f"add it: --splits {','.join([*cfg.splits, *stray])}")
    found, _ = scan_ids_for_splits(raw, list(cfg.splits), split_files)
    unlisted = unlisted_scans(raw, found)
    if unlisted and not any(found.values()):
        raise HiclrError(f"{raw}: no scan is in the {','.join(cfg.splits)} lists; not listed: {_names(unlisted)}",
                         f"list your scans in a file and pass --split-file {cfg.splits[0]}=FILE")
    store = _open_or_create(out)
    for split, ids in found.items():
        store.set_split(split, ids)
    ids = select_shard(sorted({s for v in found.values() for s in v}), shard)
    work = partial(prepare_scan, raw, out, cfg=cfg, overwrite=overwrite, frames_root=frames_root)
    summary = run_scenes(work, ids, workers=workers, desc="scannet", progress=progress)
    if unlisted:
        summary.notes.append(f"{len(unlisted)} scans in {raw} are in no {','.join(cfg.splits)} list and were not "
                             f"prepared: {_names(unlisted)} (add them with --split-file SPLIT=FILE)")
    return summary


def _names(ids: list[str], k: int = 5) -> str:
    return ", ".join(ids[:k]) + (" …" if len(ids) > k else "")


def unlisted_scans(raw: Path, found: dict[str, list[str]]) -> list[str]:
    """Scan folders of ``raw`` (those holding ``<scan>_vh_clean_2.ply``) that no requested split lists."""
    listed = {s for ids in found.values() for s in ids}
    return sorted(p.name for p in Path(raw).iterdir()
                  if p.is_dir() and p.name not in listed and (p / f"{p.name}_vh_clean_2.ply").is_file())
