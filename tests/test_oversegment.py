"""Over-segmentation (ScanNet Segmentator rule) and segment quality, on meshes built here."""

from __future__ import annotations

import numpy as np
import pytest

from hiclr.errors import HiclrError
from hiclr.oversegment import (
    _segment_graph_py,
    edge_weights,
    estimate_normals,
    mesh_edges,
    mesh_vertex_normals,
    relabel_consecutive,
    segment_graph,
    segment_mesh,
    segment_points,
)
from hiclr.segment_eval import majority_labelling, segment_quality

H = 0.05  # grid spacing, metres


def grid(nx: int, ny: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grid indices (i, j) per vertex and two triangles per cell, counter-clockwise seen from +z."""
    i, j = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    idx = i * ny + j
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)]).astype(np.int32)
    return i.ravel(), j.ravel(), faces


def folded(nx: int, ny: int, fold: int, down: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A grid folded by 90° along the line i == fold: floor for i <= fold, then a wall going up
    (a concave floor/wall corner) or down (a convex table edge). Returns vertices, faces, i."""
    i, j, faces = grid(nx, ny)
    sign = -1.0 if down else 1.0
    x = np.where(i <= fold, i * H, fold * H)
    z = np.where(i <= fold, 0.0, sign * (i - fold) * H)
    return np.stack([x, j * H, z], 1).astype(np.float32), faces, i


@pytest.mark.parametrize("down", [False, True])
def test_crease_gives_two_segments(down: bool) -> None:
    v, f, i = folded(21, 15, 10, down)
    seg = segment_mesh(v, f)
    assert seg.dtype == np.int32
    assert seg.max() + 1 == 2
    floor, wall = seg[i < 10], seg[i > 10]
    assert len(np.unique(floor)) == 1 and len(np.unique(wall)) == 1
    assert floor[0] != wall[0]


def test_flat_plane_is_one_segment() -> None:
    i, j, f = grid(30, 20)
    v = np.stack([i * H, j * H, np.full(len(i), 1.5)], 1).astype(np.float32)
    assert np.array_equal(segment_mesh(v, f), np.zeros(len(v), dtype=np.int32))


def test_matches_the_compiled_reference_on_a_mesh_with_ties() -> None:
    # a 30 x 20 grid with a 0.2 m step: many exactly equal weights, so the result depends on the
    # order std::sort leaves ties in. Expected: ScanNet's segmentator.cpp built with g++ 12 -O2
    # (k=0.05, min 5 vertices), renumbered by first vertex; a stable sort would give [391, 13, 14, 182].
    import hashlib

    i, j, f = grid(30, 20)
    v = np.stack([i * H, j * H, np.where((i > 15) & (j > 6), 0.2, 0.0)], 1).astype(np.float32)
    seg = segment_mesh(v, f, None, k_thresh=0.05, min_size=5)
    assert np.bincount(seg).tolist() == [391, 13, 14, 176, 6]
    assert hashlib.sha256(seg.astype(np.int32).tobytes()).hexdigest()[:16] == "011c8569f7209cec"


def test_tiny_component_is_merged() -> None:
    # a wall strip of 2 rows x 5 = 10 vertices beyond the crease: below min_size=20, so merged
    v, f, i = folded(13, 5, 10, down=False)
    separate = segment_mesh(v, f, min_size=1)
    assert len(np.unique(separate[i > 10])) == 1 and separate[i > 10][0] != separate[i < 10][0]
    merged = segment_mesh(v, f, min_size=20)
    assert merged.max() + 1 == 1


def test_small_merge_on_a_plain_graph() -> None:
    # a 30-vertex chain of weight-0 edges, and 3 vertices hanging off it by a weight-1 edge
    chain = np.stack([np.arange(29), np.arange(1, 30)], 1)
    tail = np.array([[29, 30], [30, 31], [31, 32]])
    edges = np.concatenate([chain, tail])
    w = np.concatenate([np.zeros(29), [1.0, 0.0, 0.0]]).astype(np.float32)
    assert np.bincount(segment_graph(33, edges, w, 0.01, min_size=1)).tolist() == [30, 3]
    assert np.bincount(segment_graph(33, edges, w, 0.01, min_size=20)).tolist() == [33]
    # the numba kernel and the plain-Python fallback agree
    order = np.argsort(w, kind="stable")
    args = (33, edges[order, 0].astype(np.int64), edges[order, 1].astype(np.int64), w[order], 0.01, 1)
    py = relabel_consecutive(_segment_graph_py(*args))
    assert np.array_equal(py, segment_graph(33, edges, w, 0.01, min_size=1))


def test_plain_python_fallbacks_match_the_compiled_kernels() -> None:
    from hiclr import oversegment as ov

    v, f, _ = folded(8, 6, 4, down=True)
    v = v + np.random.default_rng(0).normal(0, 0.003, v.shape).astype(np.float32)
    normals = ov.mesh_vertex_normals(v, f)
    f64 = f.astype(np.int64)
    e1, e2 = v[f64[:, 1]] - v[f64[:, 0]], v[f64[:, 2]] - v[f64[:, 0]]
    unit = np.cross(e1, e2)
    unit = (unit / np.sqrt((unit * unit).sum(1, keepdims=True))).astype(np.float32)
    assert np.allclose(ov._blend_normals_py(f64, unit, len(v)), normals, atol=1e-6)
    edges = mesh_edges(f).astype(np.int64)
    assert np.array_equal(ov._edge_weights_py(v, normals, edges), edge_weights(v, normals, edges))


def test_fh_threshold_grows_with_k() -> None:
    # a chain with weights 0.005: merged when k/|C| allows it (k=0.01, singletons), not when k=0.001
    edges = np.stack([np.arange(4), np.arange(1, 5)], 1)
    w = np.full(4, 0.005, dtype=np.float32)
    assert segment_graph(5, edges, w, 0.001, min_size=1).max() + 1 == 5
    # k=0.01: the first join makes threshold 0.005 + 0.01/2 = 0.01, the next 0.005 + 0.01/3 ...
    assert segment_graph(5, edges, w, 0.01, min_size=1).max() + 1 == 1


def test_edge_weight_squared_only_when_convex() -> None:
    p = np.array([[0, 0, 0], [1, 0, 0]], dtype=np.float32)
    n = np.array([[0, 0, 1], [0.6, 0, 0.8]], dtype=np.float32)
    w = edge_weights(p, n, np.array([[0, 1], [1, 0]]))
    # a->b: n_b . (p_b - p_a) = 0.6 > 0, so (1 - 0.8)^2; b->a: n_a . (p_a - p_b) = 0, so 1 - 0.8
    assert w[0] == pytest.approx(0.04, abs=1e-6)
    assert w[1] == pytest.approx(0.2, abs=1e-6)


def test_vertex_normals_are_unnormalised_face_means() -> None:
    # two triangles sharing edge 0-1 at a right angle: the shared vertices get (n1 + n2) / 2
    v = np.array([[0, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=np.float32)
    f = np.array([[0, 2, 1], [0, 1, 3]], dtype=np.int32)
    n = mesh_vertex_normals(v, f)
    # face 0: cross(p2 - p1, p3 - p1) = cross(x, y) = +z; face 1: cross(y, z) = +x
    assert np.allclose(n[2], [0, 0, 1]) and np.allclose(n[3], [1, 0, 0])
    assert np.allclose(n[0], [0.5, 0, 0.5]) and np.allclose(n[1], [0.5, 0, 0.5])
    assert mesh_edges(f).tolist() == [[0, 2], [0, 1], [1, 2], [0, 1], [0, 3], [3, 1]]


def test_bad_faces_raise() -> None:
    v = np.zeros((3, 3), dtype=np.float32)
    with pytest.raises(HiclrError, match="face indices"):
        segment_mesh(v, np.array([[0, 1, 3]]))
    with pytest.raises(HiclrError, match="shape"):
        segment_mesh(v, np.array([0, 1, 2]))


def test_std_sort_orders_ties_as_libstdcxx() -> None:
    from hiclr.introsort import std_sort

    # the permutation libstdc++'s std::sort (g++ 12) gives for these keys (40 elements, 5 distinct values)
    key = np.array([(i * 7) % 5 for i in range(40)], dtype=np.float32)
    golden = [10, 20, 25, 15, 30, 35, 5, 0, 33, 8, 28, 13, 3, 38, 23, 18, 31, 1, 36, 26,
              21, 6, 16, 11, 39, 19, 4, 34, 9, 29, 14, 24, 12, 27, 32, 7, 17, 37, 2, 22]  # fmt: skip
    val = np.arange(40, dtype=np.int64)
    std_sort(key, val)
    assert val.tolist() == golden
    rng = np.random.default_rng(0)
    for n in (0, 1, 2, 17, 3000):
        w = np.round(rng.random(n) * 9).astype(np.float32)
        k, v = w.copy(), np.arange(n, dtype=np.int64)
        std_sort(k, v)
        assert np.array_equal(k, np.sort(w)) and np.array_equal(w[v], k) and len(set(v.tolist())) == n


def test_relabel_consecutive_orders_by_first_vertex() -> None:
    assert relabel_consecutive(np.array([7, 7, 3, 9, 3])).tolist() == [0, 0, 1, 2, 1]


def test_point_cloud_crease_and_plane() -> None:
    v, _, i = folded(21, 15, 10, down=True)
    keep = i != 10  # no faces: points on each side with their own plane's normal
    n = np.where((i < 10)[:, None], [0, 0, 1], [1, 0, 0]).astype(np.float32)
    seg = segment_points(v[keep], n[keep], k_neighbors=8)
    assert seg.max() + 1 == 2
    assert len(np.unique(seg[i[keep] < 10])) == 1 and len(np.unique(seg[i[keep] > 10])) == 1
    flat = v[i < 10] + np.float32([0, 0, 1])  # off the viewpoint, so estimated normals face it
    assert segment_points(flat, None, k_neighbors=8).max() + 1 == 1


def test_estimated_normals_face_the_viewpoint() -> None:
    i, j, _ = grid(10, 10)
    p = np.stack([i * H, j * H, np.full(len(i), 2.0)], 1).astype(np.float32)
    n = estimate_normals(p, k=8)
    assert np.allclose(n, [0, 0, -1], atol=1e-5)
    n_up = estimate_normals(p, k=8, viewpoint=(0.0, 0.0, 5.0))
    assert np.allclose(n_up, [0, 0, 1], atol=1e-5)


# -- segment quality


def test_segment_quality_by_hand() -> None:
    seg = np.array([0, 0, 0, 1, 1, 2, 2, -1])
    gt = np.array([0, 0, 1, 1, 1, 2, -1, 0])
    # segment 0 → class 0 (2 of 3), segment 1 → 1, segment 2 → 2; the unsegmented point is a miss
    assert majority_labelling(seg, gt, 3).tolist() == [0, 0, 0, 1, 1, 2, 2, -1]
    q = segment_quality(seg, gt, 3)
    assert q["num_segments"] == 3 and q["num_points"] == 7
    assert q["purity"] == pytest.approx(5 / 7)
    # IoU: class 0: tp 2, fp 1, fn 1 → 2/4; class 1: tp 2, fn 1 → 2/3; class 2: 1/1
    assert q["oracle_miou"] == pytest.approx((0.5 + 2 / 3 + 1.0) / 3)


def test_pure_segments_have_purity_one() -> None:
    v, f, i = folded(21, 15, 10, down=False)
    gt = (i > 10).astype(np.int16)  # floor 0, wall 1; the crease row joins one side
    gt[i == 10] = -1
    q = segment_quality(segment_mesh(v, f), gt, 2)
    assert q["purity"] == 1.0 and q["oracle_miou"] == 1.0 and q["num_segments"] == 2


# -- the store step


def test_run_oversegment_writes_skips_and_redoes(tmp_path) -> None:
    from hiclr.config import OversegmentConfig
    from hiclr.oversegment import run_oversegment
    from hiclr.store import Store

    store = Store.create(tmp_path, "t", ["floor", "wall"], splits={"val": ["s0"]})
    v, f, _ = folded(21, 15, 10, down=False)
    scene = store.scene("s0")
    scene.write("coord", v, "test", "x")
    scene.write("faces", f, "test", "x")
    cfg = OversegmentConfig()
    summary = run_oversegment(store, cfg, progress=False)
    assert summary.done == ["s0"] and summary.results["s0"]["segments"] == 2
    assert summary.results["s0"]["graph"] == "mesh" and summary.results["s0"]["seconds"] >= 0
    seg = store.scene("s0").read("segments")
    assert seg.dtype == np.int32 and seg.max() == 1
    assert run_oversegment(store, cfg, progress=False).skipped == ["s0"]
    assert run_oversegment(store, cfg, overwrite=True, progress=False).done == ["s0"]
    assert run_oversegment(store, OversegmentConfig(min_size=500), progress=False).done == ["s0"]
    assert store.scene("s0").read("segments").max() == 0


def test_segment_quality_store_and_cli(tmp_path) -> None:
    from click.testing import CliRunner

    from hiclr.segment_eval import segment_quality_store
    from hiclr.store import Store
    from hiclr_cli.main import cli

    store = Store.create(tmp_path, "t", ["floor", "wall"], splits={"val": ["s0", "s1"]})
    for sid, down in (("s0", False), ("s1", True)):
        v, f, i = folded(21, 15, 10, down)
        scene = store.scene(sid)
        scene.write("coord", v, "test", "x")
        scene.write("faces", f, "test", "x")
        scene.write("label", np.where(i < 10, 0, 1).astype(np.int16), "test", "x")
    r = CliRunner().invoke(cli, ["oversegment", str(tmp_path), "--min-size", "20"])
    assert r.exit_code == 0, r.output
    assert "2 done" in r.output and "4 segments" in r.output
    q = segment_quality_store(store, ["s0", "s1"], progress=False)
    assert q["num_segments"] == 4 and q["num_points"] == 2 * 21 * 15
    # the crease row (labelled wall here) goes to one side: at most 2 x 15 points are impure
    assert 1 - 30 / 630 <= q["purity"] <= 1.0 and q["oracle_miou"] > 0.9
    assert segment_quality_store(store, split="val", progress=False)["scenes"] == ["s0", "s1"]
    r = CliRunner().invoke(cli, ["oversegment", str(tmp_path)])
    assert r.exit_code == 0 and "2 skipped" in r.output
