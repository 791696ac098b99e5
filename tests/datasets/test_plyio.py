"""PLY reader/writer: ScanNet's exact binary layout, ascii, big-endian, polygons, and open3d as an oracle."""

from __future__ import annotations

import numpy as np
import pytest

from hiclr.datasets.plyio import read_ply, write_ply
from hiclr.errors import HiclrError

SCANNET_LABEL_HEADER = (
    "ply\nformat binary_little_endian 1.0\ncomment VCGLIB generated\nelement vertex {n}\n"
    "property float x\nproperty float y\nproperty float z\n"
    "property uchar red\nproperty uchar green\nproperty uchar blue\nproperty uchar alpha\n"
    "property ushort label\nelement face {f}\nproperty list uchar int vertex_indices\nend_header\n"
)


def _scannet_labels_ply(path, xyz, rgb, label, faces):
    """Bytes exactly as ScanNet's _vh_clean_2.labels.ply: packed little-endian records."""
    vdt = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"),
                    ("blue", "u1"), ("alpha", "u1"), ("label", "<u2")])
    v = np.zeros(len(xyz), vdt)
    v["x"], v["y"], v["z"] = xyz.T
    v["red"], v["green"], v["blue"] = rgb.T
    v["alpha"], v["label"] = 255, label
    f = np.zeros(len(faces), [("n", "u1"), ("i", "<i4", (3,))])
    f["n"], f["i"] = 3, faces
    path.write_bytes(SCANNET_LABEL_HEADER.format(n=len(xyz), f=len(faces)).encode() + v.tobytes() + f.tobytes())


def test_reads_scannet_label_ply_exactly(tmp_path):
    xyz = np.array([[0, 0, 0], [1.5, 0, 0], [0, 2.25, 0], [1, 1, -3.125]], np.float32)
    rgb = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9], [250, 251, 252]], np.uint8)
    label = np.array([1, 149, 40, 65535], np.uint16)
    faces = np.array([[0, 1, 2], [1, 3, 2]], np.int32)
    p = tmp_path / "s_vh_clean_2.labels.ply"
    _scannet_labels_ply(p, xyz, rgb, label, faces)
    ply = read_ply(p)
    v = ply["vertex"]
    assert v.dtype.names == ("x", "y", "z", "red", "green", "blue", "alpha", "label")
    np.testing.assert_array_equal(np.stack([v["x"], v["y"], v["z"]], 1), xyz)
    np.testing.assert_array_equal(v["label"], label)
    assert v["label"].dtype == np.uint16
    np.testing.assert_array_equal(v["blue"], rgb[:, 2])
    np.testing.assert_array_equal(ply["face"], faces)
    assert ply["face"].dtype == np.int32


def test_open3d_reads_what_we_write(tmp_path):
    o3d = pytest.importorskip("open3d")
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(50, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (50, 3)).astype(np.uint8)
    faces = rng.integers(0, 50, (20, 3)).astype(np.int32)
    p = tmp_path / "m.ply"
    write_ply(p, {"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2], "red": rgb[:, 0], "green": rgb[:, 1],
                  "blue": rgb[:, 2], "label": np.arange(50, dtype=np.uint16)}, faces)
    mesh = o3d.io.read_triangle_mesh(str(p))
    np.testing.assert_allclose(np.asarray(mesh.vertices), xyz, rtol=0, atol=0)
    np.testing.assert_array_equal(np.asarray(mesh.triangles), faces)
    np.testing.assert_allclose(np.asarray(mesh.vertex_colors) * 255, rgb, atol=1e-3)
    back = read_ply(p)
    np.testing.assert_array_equal(back["vertex"]["label"], np.arange(50))


@pytest.mark.parametrize("binary", [True, False])
def test_round_trip(tmp_path, binary):
    xyz = np.array([[0.1, -2.5, 3e-3], [7, 8, 9]], np.float32)
    cols = {"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2], "label": np.array([3, 40000], np.uint16),
            "pred": np.array([-1, 19], np.int16), "score": np.array([0.25, 1.0], np.float64)}
    p = tmp_path / "r.ply"
    write_ply(p, cols, np.array([[0, 1, 1]]), binary=binary)
    v = read_ply(p)["vertex"]
    for k, a in cols.items():
        np.testing.assert_array_equal(v[k], a)
        assert v[k].dtype == a.dtype
    assert (p.read_bytes()[:60].find(b"ascii") >= 0) != binary


def test_ascii_polygons_and_big_endian(tmp_path):
    p = tmp_path / "quad.ply"
    p.write_text("ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\nproperty float z\n"
                 "element face 1\nproperty list uchar int vertex_indices\nend_header\n"
                 "0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3\n")
    np.testing.assert_array_equal(read_ply(p)["face"], [[0, 1, 2], [0, 2, 3]])
    be = tmp_path / "be.ply"
    v = np.array([(1.5, -2.0, 3.0, 513)], dtype=[("x", ">f4"), ("y", ">f4"), ("z", ">f4"), ("label", ">u2")])
    f = np.array([(3, (0, 0, 0))], dtype=[("n", "u1"), ("i", ">i4", (3,))])
    be.write_bytes(b"ply\nformat binary_big_endian 1.0\nelement vertex 1\nproperty float x\nproperty float y\n"
                   b"property float z\nproperty ushort label\nelement face 1\n"
                   b"property list uchar int vertex_indices\nend_header\n" + v.tobytes() + f.tobytes())
    r = read_ply(be)
    assert r["vertex"]["label"][0] == 513 and r["vertex"]["y"][0] == -2.0
    np.testing.assert_array_equal(r["face"], [[0, 0, 0]])


def test_truncated_and_bad_files_raise(tmp_path):
    xyz = np.zeros((3, 3), np.float32)
    p = tmp_path / "t.ply"
    _scannet_labels_ply(p, xyz, np.zeros((3, 3), np.uint8), np.zeros(3, np.uint16), np.array([[0, 1, 2]]))
    p.write_bytes(p.read_bytes()[:-5])
    with pytest.raises(HiclrError, match="truncated"):
        read_ply(p)
    q = tmp_path / "q.ply"
    q.write_bytes(b"not a ply")
    with pytest.raises(HiclrError, match="not a readable PLY"):
        read_ply(q)
    bad = tmp_path / "bad.ply"
    _scannet_labels_ply(bad, xyz, np.zeros((3, 3), np.uint8), np.zeros(3, np.uint16), np.array([[0, 1, 7]]))
    with pytest.raises(HiclrError, match="outside the vertex range"):
        read_ply(bad)
