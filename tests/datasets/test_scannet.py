"""`prepare_scannet` on a 3-scan ScanNet folder written here in the real formats.

Geometry we know: a flat wall 2 m in front of the camera (fronto-parallel), meshed as a grid;
the camera moves 0.1 m towards it per frame, so frame k sees depth 2 − 0.1k everywhere. A red
marker is painted in the *colour* image where the colour camera sees one mesh vertex P. The colour
camera's principal point sits lower than the depth camera's (as in ScanNet), so only a correct
colour→depth-grid resampling puts the marker where P projects with the stored intrinsics.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from hiclr.config import ScanNetConfig
from hiclr.datasets.scannet import (
    official_split,
    prepare_scannet,
    scale_intrinsics,
    select_frames,
    vertex_normals,
)
from hiclr.errors import HiclrError
from hiclr.store import Store

K_C = np.array([[292.0, 0, 161.6], [0, 291.0, 145.0], [0, 0, 1]])  # colour camera, 324x242
K_D = np.array([[144.4, 0, 79.7], [0, 144.4, 59.6], [0, 0, 1]])  # depth camera, 160x120
CW, CH, DW, DH = 324, 242, 160, 120
P_CAM = np.array([0.25, 0.25, 2.0])  # the marked vertex, in frame-0 camera coordinates
R = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # camera looks along world +y, image-down = world −z
T0 = np.array([1.0, -0.5, 1.4])
RED, GREY = (230, 20, 20), (200, 200, 200)
NYU = np.array([1, 2, 149, 50, 0, 40, 39, 33], np.uint16)
NYU_TO_20 = np.array([0, 1, -1, -1, -1, -1, 19, 16])


def pose(k: int) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, T0 + 0.1 * k * R[:, 2]
    return T


def world(p_cam: np.ndarray) -> np.ndarray:
    return p_cam @ R.T + T0


def colour_frame(k: int) -> np.ndarray:
    img = np.zeros((CH, CW, 3), np.uint8)
    img[:] = GREY
    p = P_CAM - (0, 0, 0.1 * k)
    u, v = K_C[0, 0] * p[0] / p[2] + K_C[0, 2], K_C[1, 1] * p[1] / p[2] + K_C[1, 2]
    yy, xx = np.mgrid[:CH, :CW]
    img[(np.abs(xx - u) <= 8) & (np.abs(yy - v) <= 8)] = RED
    return img


def depth_frame(k: int) -> np.ndarray:
    return np.full((DH, DW), round(1000 * (2.0 - 0.1 * k)), np.uint16)


def mesh() -> tuple[np.ndarray, np.ndarray]:
    xs, ys = np.arange(-1.5, 1.51, 0.25), np.arange(-1.0, 1.01, 0.25)
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    cam = np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, 2.0)], 1)
    idx = np.arange(gx.size).reshape(gx.shape)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel()
    faces = np.concatenate([np.stack([a, c, b], 1), np.stack([b, c, d], 1)])  # wound to face the camera
    return world(cam).astype(np.float32), faces.astype(np.int32)


def write_mesh_ply(path, xyz, faces, labels=None):
    props = ["x", "y", "z"]
    dt = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1"), ("alpha", "u1")]
    if labels is not None:
        dt.append(("label", "<u2"))
    v = np.zeros(len(xyz), dt)
    for i, n in enumerate(props):
        v[n] = xyz[:, i]
    v["red"], v["green"], v["blue"], v["alpha"] = np.arange(len(xyz)) % 256, 7, 9, 255
    if labels is not None:
        v["label"] = labels
    f = np.zeros(len(faces), [("n", "u1"), ("i", "<i4", (3,))])
    f["n"], f["i"] = 3, faces
    head = ("ply\nformat binary_little_endian 1.0\ncomment VCGLIB generated\n"
            f"element vertex {len(xyz)}\nproperty float x\nproperty float y\nproperty float z\n"
            "property uchar red\nproperty uchar green\nproperty uchar blue\nproperty uchar alpha\n"
            + ("property ushort label\n" if labels is not None else "")
            + f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n")
    path.write_bytes(head.encode() + v.tobytes() + f.tobytes())


def write_sens_file(path, n, bad):
    b = struct.pack("<IQ", 4, 15) + b"StructureSensor"
    for m in (K_C, np.eye(3), K_D, np.eye(3)):
        M = np.eye(4)
        M[:3, :3] = m
        b += M.astype("<f4").tobytes()
    b += struct.pack("<ii4IfQ", 2, 1, CW, CH, DW, DH, 1000.0, n)
    for k in range(n):
        buf = io.BytesIO()
        Image.fromarray(colour_frame(k)).save(buf, format="JPEG", quality=98)
        T = pose(k)
        if k in bad:
            T[:] = -np.inf
        db = zlib.compress(depth_frame(k).astype("<u2").tobytes())
        b += T.astype("<f4").tobytes() + struct.pack("<4Q", k, k, len(buf.getvalue()), len(db)) + buf.getvalue() + db
    path.write_bytes(b)


def write_exported(root, n, bad):
    for sub in ("color", "depth", "pose", "intrinsic"):
        (root / sub).mkdir(parents=True)
    for k in range(n):
        Image.fromarray(colour_frame(k)).save(root / "color" / f"{k}.jpg", quality=98)
        Image.fromarray(depth_frame(k)).save(root / "depth" / f"{k}.png")
        T = pose(k)
        if k in bad:
            T[0, 0] = -np.inf
        np.savetxt(root / "pose" / f"{k}.txt", T, fmt="%f")
    for name, K in (("intrinsic_color.txt", K_C), ("intrinsic_depth.txt", K_D)):
        M = np.eye(4)
        M[:3, :3] = K
        np.savetxt(root / "intrinsic" / name, M, fmt="%f")


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("scans")
    xyz, faces = mesh()
    labels = NYU[np.arange(len(xyz)) % len(NYU)]
    a = root / "scene0000_00"  # train: mesh, labels, .sens with frame 2 invalid
    a.mkdir()
    write_mesh_ply(a / "scene0000_00_vh_clean_2.ply", xyz, faces)
    write_mesh_ply(a / "scene0000_00_vh_clean_2.labels.ply", xyz, faces, labels)
    write_sens_file(a / "scene0000_00.sens", 4, bad={2})
    b = root / "scene0011_00"  # val: mesh without labels, exported frames with frame 2 invalid
    b.mkdir()
    write_mesh_ply(b / "scene0011_00_vh_clean_2.ply", xyz, faces)
    write_exported(b, 5, bad={2})
    c = root / "scene0001_00"  # train: a truncated mesh
    c.mkdir()
    write_mesh_ply(c / "scene0001_00_vh_clean_2.ply", xyz, faces)
    (c / "scene0001_00_vh_clean_2.ply").write_bytes((c / "scene0001_00_vh_clean_2.ply").read_bytes()[:-100])
    (root / "scene0707_00").mkdir()  # a test scan: not in train/val, ignored
    return root


def _pixel(scene, v, p_world):
    K, T = scene.intrinsics()[v].astype(np.float64), scene.cam_to_world()[v].astype(np.float64)
    c = (p_world - T[:3, 3]) @ T[:3, :3]
    u, vv = K[0, 0] * c[0] / c[2] + K[0, 2], K[1, 1] * c[1] / c[2] + K[1, 2]
    return int(np.floor(vv + 0.5)), int(np.floor(u + 0.5)), c[2]


def _is_red(px):
    return px[0] > 150 and px[1] < 90 and px[2] < 90


def test_official_lists_shipped():
    tr, va, te = official_split("train"), official_split("val"), official_split("test")
    assert (len(tr), len(va), len(te)) == (1201, 312, 100)
    assert not (set(tr) & set(va)) and not ((set(tr) | set(va)) & set(te))
    assert "scene0000_00" in tr and "scene0011_00" in va and "scene0707_00" in te


def test_prepare_store_contents(raw, tmp_path):
    out = tmp_path / "store"
    cfg = ScanNetConfig(frame_stride=1, image_width=DW, image_height=DH)
    summary = prepare_scannet(raw, out, cfg, progress=False)
    assert summary.done == ["scene0000_00", "scene0011_00"]
    assert list(summary.failed) == ["scene0001_00"] and "truncated" in summary.failed["scene0001_00"]
    store = Store.open(out)
    assert store.splits["train"] == ["scene0000_00", "scene0001_00"] and store.splits["val"] == ["scene0011_00"]
    with pytest.raises(HiclrError, match="scene0001_00"):  # listed, failed to prepare: named, never skipped
        store.scene_ids("train")

    xyz, faces = mesh()
    a = store.scene("scene0000_00")
    np.testing.assert_array_equal(a.read("coord"), xyz)
    np.testing.assert_array_equal(a.read("faces"), faces)
    np.testing.assert_array_equal(a.read("color")[:, 0], np.arange(len(xyz)) % 256)
    np.testing.assert_array_equal(a.read("label"), NYU_TO_20[np.arange(len(xyz)) % len(NYU)])
    np.testing.assert_allclose(a.read("normal"), np.tile(-R[:, 2], (len(xyz), 1)), atol=1e-6)  # towards the camera
    # frames 0, 1, 3 kept; frame 2 (-inf pose) dropped and counted
    assert a.num_views == 3 and a.meta["frame_ids"] == [0, 1, 3] and a.meta["dropped_invalid_pose"] == 1
    assert summary.results["scene0000_00"]["dropped_invalid_pose"] == 1
    np.testing.assert_array_equal(a.intrinsics(), np.repeat(K_D[None].astype(np.float32), 3, 0))
    np.testing.assert_array_equal(a.cam_to_world(), np.stack([pose(k) for k in (0, 1, 3)]).astype(np.float32))
    for v, k in enumerate((0, 1, 3)):
        np.testing.assert_array_equal(a.read_depth(v), depth_frame(k) / np.float32(1000))
    assert not store.scene("scene0011_00").has("label")


@pytest.mark.parametrize("scan", ["scene0000_00", "scene0011_00"])
def test_marked_vertex_projects_onto_marker(raw, tmp_path, scan):
    out = tmp_path / "store"
    prepare_scannet(raw, out, ScanNetConfig(frame_stride=1, image_width=DW, image_height=DH), progress=False)
    scene = Store.open(out).scene(scan)
    p = world(P_CAM)
    for v in range(scene.num_views):
        i, j, z = _pixel(scene, v, p)
        img = scene.read_color(v)
        assert img.shape == (DH, DW, 3)
        assert _is_red(img[i, j]), (v, i, j, img[i, j])
        assert abs(scene.read_depth(v)[i, j] - z) < 1e-3  # the depth grid agrees with the geometry
        # A plain resize of the colour frame would have put the marker ~12 rows lower:
        plain = (K_C[1, 1] * (P_CAM[1]) / z + K_C[1, 2] + 0.5) * DH / CH - 0.5
        assert plain - i > 10 and not _is_red(img[i + 10, j])


def test_smaller_grid_and_stride(raw, tmp_path):
    out = tmp_path / "small"
    cfg = ScanNetConfig(frame_stride=2, image_width=80, image_height=60)
    s = prepare_scannet(raw, out, cfg, progress=False)
    a = Store.open(out).scene("scene0000_00")
    b = Store.open(out).scene("scene0011_00")
    assert a.meta["frame_ids"] == [0] and a.meta["dropped_invalid_pose"] == 1  # 0, 2 picked; 2 invalid
    assert b.meta["frame_ids"] == [0, 4] and b.meta["dropped_invalid_pose"] == 1  # 0, 2, 4 picked
    assert s.results["scene0011_00"]["views"] == 2
    K = a.intrinsics()[0]
    np.testing.assert_allclose(K, [[72.2, 0, 39.6], [0, 72.2, 29.55], [0, 0, 1]], atol=1e-5)  # ½·(c + ½) − ½
    i, j, _ = _pixel(a, 0, world(P_CAM))
    assert a.read_color(0).shape == (60, 80, 3) and _is_red(a.read_color(0)[i, j])
    np.testing.assert_array_equal(a.read_depth(0), np.full((60, 80), 2.0, np.float32))


def test_resume_overwrite_and_workers(raw, tmp_path):
    out = tmp_path / "store"
    cfg = ScanNetConfig(frame_stride=3, image_width=DW, image_height=DH)
    first = prepare_scannet(raw, out, cfg, workers=2, progress=False)
    assert first.done == ["scene0000_00", "scene0011_00"] and list(first.failed) == ["scene0001_00"]
    again = prepare_scannet(raw, out, cfg, progress=False)
    assert again.skipped == ["scene0000_00", "scene0011_00"] and not again.done
    shard = prepare_scannet(raw, out, cfg, shard="1/2", overwrite=True, progress=False)
    assert shard.done == ["scene0000_00", "scene0011_00"] and not shard.failed  # ids 1 and 3 of 3
    other = prepare_scannet(raw, out, cfg, shard="2/2", progress=False)
    assert not other.done and not other.skipped and list(other.failed) == ["scene0001_00"]
    changed = prepare_scannet(raw, out, ScanNetConfig(frame_stride=1, image_width=DW, image_height=DH),
                              progress=False)
    assert changed.done == ["scene0000_00", "scene0011_00"]  # a new setting redoes the scans
    assert Store.open(out).scene("scene0000_00").num_views == 3


def test_split_file_and_select_frames(raw, tmp_path):
    lst = tmp_path / "mine.txt"
    lst.write_text("# my scans\nscene0011_00\n\nscene9999_00\n")
    s = prepare_scannet(raw, tmp_path / "o", ScanNetConfig(splits=["train"], frame_stride=4, image_width=DW,
                                                           image_height=DH),
                        split_files={"train": lst}, progress=False)
    assert s.done == ["scene0011_00"] and not s.failed
    assert Store.open(tmp_path / "o").splits == {"train": ["scene0011_00"]}


def test_vertex_normals_area_weighted():
    # Two triangles sharing vertex 0: a big one in the xy-plane, a small one in the xz-plane.
    v = np.array([[0, 0, 0], [2, 0, 0], [0, 2, 0], [0, 0, 0.1], [0.1, 0, 0]], np.float32)
    f = np.array([[0, 1, 2], [0, 3, 4]])
    n, isolated = vertex_normals(v, f)
    expect = np.array([0, 2 * 0.1 * 0.1 / 2, 2 * 2 * 2 / 2])  # areas 0.005 (n=+y) and 2 (n=+z), ×2
    np.testing.assert_allclose(n[0], expect / np.linalg.norm(expect), atol=1e-6)
    assert isolated == 0
    assert vertex_normals(np.zeros((1, 3)), np.zeros((0, 3), int))[1] == 1


def test_scale_intrinsics_pixel_centres():
    K = scale_intrinsics(np.array([[10.0, 0, 3.5], [0, 10.0, 1.5], [0, 0, 1]]), 0.5, 0.25)
    # an 8-pixel-wide image halved: centre 3.5 stays the centre of the 4-pixel image (1.5);
    # a 4-row image (centre 1.5) quartered is one row, whose centre is 0
    np.testing.assert_allclose(K, [[5, 0, 1.5], [0, 2.5, 0.0], [0, 0, 1]])


def test_select_frames_rejects_bad_stride():
    from hiclr.datasets.scannet import Frames
    from hiclr.errors import HiclrError

    fr = Frames("x", [0, 1], [np.eye(4), np.eye(4)], np.eye(3), np.eye(3), (1, 1), 1000.0, "", None, None)
    assert select_frames(fr, 1) == ([0, 1], 0)
    with pytest.raises(HiclrError):
        select_frames(fr, 0)


def test_cli_reports_done_failed_and_dropped(raw, tmp_path):
    from click.testing import CliRunner

    from hiclr_cli.main import cli

    out = tmp_path / "cli"
    args = ["prepare", "scannet", "--raw", str(raw), "--out", str(out), "--frame-stride", "1",
            "--set", f"scannet.image_width={DW}", "--set", f"scannet.image_height={DH}"]
    r = CliRunner().invoke(cli, args, obj={})
    assert r.exit_code == 1, r.output  # one scan is broken
    assert "2 done, 0 skipped (up to date), 1 failed" in r.output
    assert "failed scene0001_00" in r.output and "frames dropped for invalid poses: 2" in r.output
    r = CliRunner().invoke(cli, args[:-4] + ["--split-file", "test=x.txt"], obj={})
    assert r.exit_code == 1 and "not prepared" in r.output


def test_exported_colour_already_on_depth_grid(tmp_path):
    """Colour exported at 160x120 with the full-size intrinsic_color.txt: treated as registered with depth."""
    from hiclr.datasets.scannet import find_frames

    root = tmp_path / "scene0002_00"
    write_exported(root, 1, bad=set())
    small = np.asarray(Image.fromarray(colour_frame(0)).resize((DW, DH)))
    Image.fromarray(small).save(root / "color" / "0.jpg", quality=98)
    fr = find_frames(root, "scene0002_00")
    assert fr.kind == "exported" and "registered" in fr.color_note
    np.testing.assert_allclose(fr.K_color, K_D)
    assert fr.color(0).shape == (DH, DW, 3) and fr.depth(0).dtype == np.uint16


def test_refuses_a_store_of_another_dataset(raw, tmp_path):
    from hiclr.errors import HiclrError

    Store.create(tmp_path / "o", "synthetic", ["a", "b"])
    with pytest.raises(HiclrError, match="another dataset"):
        prepare_scannet(raw, tmp_path / "o", ScanNetConfig(), progress=False)
