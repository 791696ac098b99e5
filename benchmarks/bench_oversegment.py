"""Time `hiclr oversegment` per 100 k vertices on a tessellated synthetic mesh.

A bumpy height field with box-like steps stands in for a scanned room surface (ScanNet's
``*_vh_clean_2.ply`` meshes have ~50–300 k vertices, ~6 faces per vertex, as here). Prints the
seconds per 100 k vertices for the mesh rule and the kNN rule, each stage separately, and the
numba kernel's speed-up over the same loop in plain Python (the fallback when numba is absent),
measured on a sub-mesh so the baseline finishes quickly.

    python benchmarks/bench_oversegment.py [--vertices 100000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from hiclr import oversegment as ov


def synthetic_mesh(num_vertices: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A square grid of about ``num_vertices`` vertices (2 cm spacing), two triangles per cell."""
    rng = np.random.default_rng(seed)
    side = int(np.sqrt(num_vertices))
    i, j = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    idx = i * side + j
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)]).astype(np.int32)
    x, y = i.ravel() * 0.02, j.ravel() * 0.02
    z = 0.05 * np.sin(3 * x) * np.cos(2 * y)  # smooth undulation
    for _ in range(12):  # box-like objects standing on the surface
        cx, cy, r, h = rng.uniform(0, side * 0.02, 2).tolist() + rng.uniform(0.2, 0.6, 2).tolist()
        z = z + h * ((np.abs(x - cx) < r) & (np.abs(y - cy) < r))
    z = z + 0.002 * rng.standard_normal(len(x))  # scanner noise
    return np.stack([x, y, z], 1).astype(np.float32), faces


def best_of(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vertices", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--baseline-vertices",
        type=int,
        default=20_000,
        help="sub-mesh size for the plain-Python baseline (it is slow)",
    )
    args = ap.parse_args()

    v, f = synthetic_mesh(args.vertices)
    n = len(v)
    per = 1e5 / n
    t0 = time.perf_counter()
    ov.segment_mesh(*synthetic_mesh(400))  # numba compilation (cached on disk after the first run)
    print(f"numba compile / cache load: {time.perf_counter() - t0:.2f} s (once per process)")

    t_norm, normals = best_of(lambda: ov.mesh_vertex_normals(v, f), args.repeats)
    edges = ov.mesh_edges(f)
    t_w, w = best_of(lambda: ov.edge_weights(v, normals, edges), args.repeats)
    t_graph, _ = best_of(lambda: ov.segment_graph(n, edges, w, 0.01, 20), args.repeats)
    t_mesh, seg = best_of(lambda: ov.segment_mesh(v, f), args.repeats)
    print(f"mesh: {n:,} vertices, {len(f):,} faces, {len(edges):,} edges -> {seg.max() + 1:,} segments")
    print(
        f"  vertex normals {t_norm * per:.3f} s | edge weights {t_w * per:.3f} s | "
        f"sort + union-find {t_graph * per:.3f} s   (per 100k vertices)"
    )
    print(f"  segment_mesh total: {t_mesh:.3f} s = {t_mesh * per:.3f} s per 100k vertices")

    t_pts, seg_p = best_of(lambda: ov.segment_points(v, normals, k_neighbors=10), args.repeats)
    print(
        f"point cloud (kNN, k=10, same points): {seg_p.max() + 1:,} segments, "
        f"{t_pts * per:.3f} s per 100k points"
    )

    # baseline: the same union-find loop in plain Python, on a sub-mesh
    m = args.baseline_vertices
    sub_v, sub_f = synthetic_mesh(m, seed=1)
    sub_n = ov.mesh_vertex_normals(sub_v, sub_f)
    sub_e = ov.mesh_edges(sub_f)
    sub_w = ov.edge_weights(sub_v, sub_n, sub_e)
    order = np.argsort(sub_w, kind="stable")
    a, b, ws = sub_e[order, 0].astype(np.int64), sub_e[order, 1].astype(np.int64), sub_w[order]
    kernel = ov._jit(ov._segment_graph_py)
    t_jit, roots_jit = best_of(lambda: kernel(len(sub_v), a, b, ws, 0.01, 20), args.repeats)
    t_py, roots_py = best_of(lambda: ov._segment_graph_py(len(sub_v), a, b, ws, 0.01, 20), 1)
    same = np.array_equal(ov.relabel_consecutive(roots_jit), ov.relabel_consecutive(roots_py))
    print(
        f"union-find loop on {len(sub_v):,} vertices / {len(sub_e):,} edges: numba {t_jit * 1e3:.1f} ms, "
        f"plain Python {t_py * 1e3:.0f} ms -> {t_py / t_jit:.0f}x faster (identical result: {same})"
    )


if __name__ == "__main__":
    main()
