"""Geometric consistency sets: normal-based over-segmentation (paper §3.2, "intra-set").

This mirrors ScanNet's ``Segmentator`` (``ScanNet/Segmentator/segmentator.cpp``), which produced
the ``*_vh_clean_2.0.010000.segs.json`` files shipped with every ScanNet scan:

1. Vertex normals: each face's unit normal ``cross(p2 - p1, p3 - p1) / |.|`` is averaged over the
   faces incident to a vertex (a running mean, *not* re-normalised to unit length).
2. Edges: three per face, ``(i1, i2), (i1, i3), (i3, i2)``, so an interior mesh edge appears twice,
   once per adjacent face, possibly with opposite direction.
3. Weight of the directed edge ``a -> b``: ``w = 1 - n_a . n_b``; if ``n_b . (p_b - p_a) > 0``
   (the edge is convex) ``w = w * w``, which makes normal changes across convex edges cheap.
4. Felzenszwalb–Huttenlocher graph segmentation over the edges sorted by weight: two components
   merge when ``w <= threshold`` of both, and a merged component's threshold becomes
   ``w + k / |C|`` (all thresholds start at ``k``).
5. Components smaller than ``min_size`` vertices are merged along the edges, in the same sorted
   order, into whichever neighbour they touch first.

The arithmetic is float32 in the reference's order of operations, and the edges are sorted by
a step-for-step copy of libstdc++'s ``std::sort`` (:mod:`hiclr.introsort`), so even equal weights
are visited in the reference's order: on the meshes tested (``tests/test_oversegment.py``; also
against the compiled C++ during development) the segmentation is identical, vertex for vertex.
Remaining differences: a zero-area face contributes a zero normal (the reference divides 0/0 and
spreads NaN), a binary built with another C++ library (libc++, MSVC) orders ties differently, and
segment ids are renumbered ``0..S-1`` by each segment's smallest vertex (the reference returns
the union-find root of each vertex).

Point clouds without faces (nuScenes LiDAR) use a k-nearest-neighbour graph with the same weights.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hiclr.errors import HiclrError

STEP = "hiclr oversegment"

__all__ = [
    "edge_weights",
    "estimate_normals",
    "knn_edges",
    "mesh_edges",
    "mesh_vertex_normals",
    "relabel_consecutive",
    "run_oversegment",
    "segment_graph",
    "segment_mesh",
    "segment_points",
    "vertices_in_faces",
]


def _check_points(name: str, arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise HiclrError(f"{name} must have shape (N, 3), got {arr.shape}", "pass an (N, 3) array")
    return arr.astype(np.float32, copy=False)


def _check_faces(faces: np.ndarray, num_vertices: int) -> np.ndarray:
    f = np.asarray(faces)
    if f.ndim != 2 or f.shape[1] != 3:
        raise HiclrError(f"faces must have shape (F, 3), got {f.shape}", "pass triangle faces")
    if f.size and (f.min() < 0 or f.max() >= num_vertices):
        raise HiclrError(
            f"face indices must lie in [0, {num_vertices}), got [{f.min()}, {f.max()}]",
            "faces index the vertex array: check that both come from the same mesh",
        )
    return f.astype(np.int64, copy=False)


def mesh_vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Segmentator's vertex normals: the running mean of the unit normals of the incident faces.

    Reproduces the reference's float32 arithmetic bit for bit: faces are visited in order, and
    vertex ``v``'s normal becomes ``lerp(n_v, n_face, 1 / (count_v + 1))`` at each incident face.

    Args:
        vertices: (N, 3) float32 positions, metres.
        faces: (F, 3) int triangle vertex indices.
    Returns:
        (N, 3) float32; not re-normalised (length < 1 where incident faces disagree, exactly as
        the reference), zero for a vertex in no face.
    """
    v = _check_points("vertices", vertices)
    n = v.shape[0]
    f = _check_faces(faces, n)
    x, y, z = (v[f[:, c]] for c in range(3))  # (F, 3) corners p1, p2, p3
    e1, e2 = y - x, z - x
    cross = np.stack(
        [
            e1[:, 1] * e2[:, 2] - e1[:, 2] * e2[:, 1],
            e1[:, 2] * e2[:, 0] - e1[:, 0] * e2[:, 2],
            e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0],
        ],
        axis=1,
    )
    length = np.sqrt(cross[:, 0] * cross[:, 0] + cross[:, 1] * cross[:, 1] + cross[:, 2] * cross[:, 2])
    # a zero-area face contributes a zero normal (the reference divides 0/0 and gets NaN)
    unit = np.divide(cross, length[:, None], out=np.zeros_like(cross), where=length[:, None] > 0)
    return _jit(_blend_normals_py)(f, unit.astype(np.float32), n)


def _blend_normals_py(faces: np.ndarray, unit: np.ndarray, num_vertices: int) -> np.ndarray:
    """The reference's normal loop: face by face, corners i1, i2, i3, ``lerp(n, n_f, 1/(c+1))``.

    float32 throughout, in the reference's order of operations (compiled by numba, which does not
    fuse multiply-adds unless asked, so results match the C++ bit for bit).
    """
    normals = np.zeros((num_vertices, 3), dtype=np.float32)
    count = np.zeros(num_vertices, dtype=np.int64)
    one = np.float32(1.0)
    for i in range(faces.shape[0]):
        for c in range(3):
            v = faces[i, c]
            t = one / (np.float32(count[v]) + one)
            u = one - t
            for d in range(3):
                normals[v, d] = t * unit[i, d] + u * normals[v, d]
            count[v] += 1
    return normals


def mesh_edges(faces: np.ndarray) -> np.ndarray:
    """Directed edges of a triangle mesh in Segmentator's order: (i1,i2), (i1,i3), (i3,i2) per face.

    Args:
        faces: (F, 3) int triangle vertex indices.
    Returns:
        (3F, 2) int32 edges ``[a, b]``; face ``i`` gives rows ``3i .. 3i+2``.
    """
    f = np.asarray(faces)
    if f.ndim != 2 or f.shape[1] != 3:
        raise HiclrError(f"faces must have shape (F, 3), got {f.shape}", "pass triangle faces")
    f = f.astype(np.int32, copy=False)
    edges = np.stack([f[:, [0, 1]], f[:, [0, 2]], f[:, [2, 1]]], axis=1)  # (F, 3, 2)
    return edges.reshape(-1, 2)


def vertices_in_faces(faces: np.ndarray, num_vertices: int) -> int:
    """How many of ``num_vertices`` vertices lie in at least one proper face (three distinct
    corners). A face such as (0, 0, 0) joins nothing: a mesh made of them gives one segment per vertex."""
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    proper = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])]
    return int(np.count_nonzero(np.bincount(proper.ravel(), minlength=num_vertices)))


def edge_weights(points: np.ndarray, normals: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Segmentator's edge weight ``1 - n_a . n_b``, squared when ``n_b . (p_b - p_a) > 0``.

    Computed in float32 with the reference's order of operations, so weights (and hence the
    order in which edges are merged) match it bit for bit.

    Args:
        points: (N, 3) float32 positions.
        normals: (N, 3) float32 normals (consistently oriented).
        edges: (E, 2) int directed edges ``a -> b``.
    Returns:
        (E,) float32 weights, in [0, 2] for unit normals.
    """
    p = np.ascontiguousarray(points, dtype=np.float32)
    nrm = np.ascontiguousarray(normals, dtype=np.float32)
    e = np.ascontiguousarray(edges, dtype=np.int64).reshape(-1, 2)
    return _jit(_edge_weights_py)(p, nrm, e)


def _edge_weights_py(p: np.ndarray, nrm: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The reference's weight loop in float32 (compiled by numba; see :func:`edge_weights`)."""
    one = np.float32(1.0)
    zero = np.float32(0.0)
    w = np.empty(edges.shape[0], dtype=np.float32)
    for i in range(edges.shape[0]):
        a, b = edges[i, 0], edges[i, 1]
        dx, dy, dz = p[b, 0] - p[a, 0], p[b, 1] - p[a, 1], p[b, 2] - p[a, 2]
        dd = np.float32(np.sqrt(dx * dx + dy * dy + dz * dz))
        dot = nrm[a, 0] * nrm[b, 0] + nrm[a, 1] * nrm[b, 1] + nrm[a, 2] * nrm[b, 2]
        ww = one - dot
        # a zero-length edge gives NaN in the reference, and NaN > 0 is false: never convex
        if dd > zero and nrm[b, 0] * (dx / dd) + nrm[b, 1] * (dy / dd) + nrm[b, 2] * (dz / dd) > zero:
            ww = ww * ww
        w[i] = ww
    return w


def _segment_graph_py(
    num_vertices: int, a: np.ndarray, b: np.ndarray, w: np.ndarray, k: float, min_size: int
) -> np.ndarray:
    """Felzenszwalb–Huttenlocher on edges already sorted by weight, then small-segment merging.

    Written for numba's nopython mode (it is compiled by :func:`_jit`); runs as plain Python
    only when numba is missing. Returns the union-find root of every vertex.
    """
    parent = np.arange(num_vertices)
    rank = np.zeros(num_vertices, dtype=np.int32)
    size = np.ones(num_vertices, dtype=np.int64)
    kk = np.float32(k)
    threshold = np.full(num_vertices, kk, dtype=np.float32)
    for stage in range(2):
        for i in range(a.shape[0]):
            # find with path halving
            x = a[i]
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            y = b[i]
            while parent[y] != y:
                parent[y] = parent[parent[y]]
                y = parent[y]
            if x == y:
                continue
            if stage == 0:
                if not (w[i] <= threshold[x] and w[i] <= threshold[y]):
                    continue
            elif size[x] >= min_size and size[y] >= min_size:
                continue
            # join by rank, as the reference's universe::join
            if rank[x] > rank[y]:
                parent[y] = x
                size[x] += size[y]
                root = x
            else:
                parent[x] = y
                size[y] += size[x]
                if rank[x] == rank[y]:
                    rank[y] += 1
                root = y
            if stage == 0:
                threshold[root] = w[i] + kk / np.float32(size[root])
    roots = np.empty(num_vertices, dtype=np.int64)
    for v in range(num_vertices):
        x = v
        while parent[x] != x:
            x = parent[x]
        roots[v] = x
    return roots


@functools.cache
def _jit(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """``fn`` compiled with numba on first use (cached on disk); ``fn`` itself if numba is absent."""
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a core dependency
        return fn
    return numba.njit(cache=True, nogil=True)(fn)


def relabel_consecutive(labels: np.ndarray) -> np.ndarray:
    """Renumber ids to ``0..S-1`` in order of each id's first occurrence.

    Args:
        labels: (N,) integer ids (any values).
    Returns:
        (N,) int32 consecutive ids.
    """
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    new_id = np.empty(len(order), dtype=np.int32)
    new_id[order] = np.arange(len(order), dtype=np.int32)
    return new_id[inverse.reshape(-1)]


def segment_graph(
    num_vertices: int, edges: np.ndarray, weights: np.ndarray, k_thresh: float = 0.01, min_size: int = 20
) -> np.ndarray:
    """Felzenszwalb–Huttenlocher graph segmentation with Segmentator's small-segment merging.

    Args:
        num_vertices: N, the number of graph vertices.
        edges: (E, 2) int vertex pairs.
        weights: (E,) float32 dissimilarities (lower merges first).
        k_thresh: k in the threshold ``k / |C|``; larger gives larger segments.
        min_size: segments with fewer vertices are merged into a neighbour.
    Returns:
        (N,) int32 segment ids ``0..S-1``, numbered by each segment's smallest vertex.
    """
    if k_thresh <= 0:
        raise HiclrError(f"k_thresh must be > 0, got {k_thresh}", "set oversegment.k_thresh, e.g. 0.01")
    if min_size < 1:
        raise HiclrError(f"min_size must be >= 1, got {min_size}", "set oversegment.min_size, e.g. 20")
    edges = np.asarray(edges)
    if edges.size and (edges.min() < 0 or edges.max() >= num_vertices):
        raise HiclrError(
            f"edge endpoints must lie in [0, {num_vertices}), got [{edges.min()}, {edges.max()}]",
            "check that faces index the vertex array",
        )
    from hiclr.introsort import std_sort

    # sort as the reference's std::sort does, so that equal weights keep its (unstable) order
    w = np.array(weights, dtype=np.float32)
    order = np.arange(len(w), dtype=np.int64)
    std_sort(w, order)
    a = np.ascontiguousarray(edges[order, 0], dtype=np.int64)
    b = np.ascontiguousarray(edges[order, 1], dtype=np.int64)
    roots = _jit(_segment_graph_py)(int(num_vertices), a, b, w, float(k_thresh), int(min_size))
    return relabel_consecutive(roots)


def segment_mesh(
    vertices: np.ndarray,
    faces: np.ndarray,
    normals: np.ndarray | None = None,
    k_thresh: float = 0.01,
    min_size: int = 20,
) -> np.ndarray:
    """Over-segment a triangle mesh exactly as ScanNet's Segmentator does.

    Args:
        vertices: (N, 3) float32 positions, metres.
        faces: (F, 3) int32 triangles.
        normals: (N, 3) float32 vertex normals; ``None`` (the reference behaviour) computes
            Segmentator's own from the faces (:func:`mesh_vertex_normals`).
        k_thresh: Felzenszwalb–Huttenlocher k (ScanNet: 0.01).
        min_size: minimum vertices per segment (ScanNet: 20).
    Returns:
        (N,) int32 segment ids ``0..S-1``. Vertices in no face stay singletons.
    """
    v = _check_points("vertices", vertices)
    _check_faces(faces, v.shape[0])
    n = _check_points("normals", normals) if normals is not None else mesh_vertex_normals(v, faces)
    edges = mesh_edges(faces)
    return segment_graph(v.shape[0], edges, edge_weights(v, n, edges), k_thresh, min_size)


def knn_edges(points: np.ndarray, k: int, max_dist: float | None = None) -> np.ndarray:
    """Directed edges from every point to its k nearest neighbours (scipy cKDTree).

    Args:
        points: (N, 3) float32 positions, metres.
        k: neighbours per point (self excluded).
        max_dist: drop neighbours farther than this (metres); ``None`` keeps all.
    Returns:
        (E, 2) int32 edges ``[i, j]``, E <= N*k; both directions of a mutual pair are kept, as a
        mesh edge appears once per adjacent face.
    """
    from scipy.spatial import cKDTree

    if k < 1:
        raise HiclrError(f"k must be >= 1, got {k}", "set oversegment.knn, e.g. 8")
    p = _check_points("points", points)
    kq = min(k + 1, p.shape[0])
    dist, idx = cKDTree(p).query(p, k=kq, distance_upper_bound=np.inf if max_dist is None else max_dist)
    dist, idx = dist.reshape(len(p), kq), idx.reshape(len(p), kq)
    src = np.broadcast_to(np.arange(len(p))[:, None], idx.shape)
    keep = (idx != src) & np.isfinite(dist)  # self, and neighbours beyond max_dist (index == N)
    # duplicate points can push self out of the first column; keep exactly k others per point
    keep &= np.cumsum(keep, axis=1) <= k
    return np.stack([src[keep], idx[keep]], axis=1).astype(np.int32)


def estimate_normals(
    points: np.ndarray, k: int = 16, viewpoint: tuple[float, float, float] = (0.0, 0.0, 0.0)
) -> np.ndarray:
    """Unit normals by local PCA over k neighbours, oriented towards ``viewpoint``.

    For a LiDAR sweep in its sensor frame the sensor sits at the origin, so the default orients
    every normal to face the sensor, the consistent orientation that :func:`edge_weights` needs.

    Args:
        points: (N, 3) float32 positions, metres.
        k: neighbours in the covariance (self included).
        viewpoint: (3,) position the normals face, metres.
    Returns:
        (N, 3) float32 unit normals.
    """
    from scipy.spatial import cKDTree

    p = _check_points("points", points).astype(np.float64)
    kq = min(k, len(p))
    _, idx = cKDTree(p).query(p, k=kq)
    nb = p[idx.reshape(len(p), kq)]  # (N, k, 3)
    centred = nb - nb.mean(axis=1, keepdims=True)
    cov = np.einsum("nki,nkj->nij", centred, centred)
    _, vecs = np.linalg.eigh(cov)  # eigenvalues ascending: column 0 is the normal direction
    normals = vecs[:, :, 0]
    flip = np.einsum("ij,ij->i", normals, np.asarray(viewpoint, dtype=np.float64) - p) < 0
    normals[flip] *= -1
    return normals.astype(np.float32)


def segment_points(
    points: np.ndarray,
    normals: np.ndarray | None = None,
    k_neighbors: int = 8,
    k_thresh: float = 0.01,
    min_size: int = 20,
    max_dist: float | None = None,
) -> np.ndarray:
    """Over-segment a point cloud without faces: Segmentator's weights on a kNN graph.

    Args:
        points: (N, 3) float32 positions, metres.
        normals: (N, 3) float32 normals, consistently oriented (the convexity test and
            ``1 - n_i . n_j`` both depend on orientation); ``None`` estimates them with
            :func:`estimate_normals` (oriented towards the origin, i.e. a LiDAR sensor).
        k_neighbors: neighbours per point in the graph.
        k_thresh: Felzenszwalb–Huttenlocher k.
        min_size: minimum points per segment.
        max_dist: ignore neighbours farther than this, metres (``None``: no limit).
    Returns:
        (N,) int32 segment ids ``0..S-1``.
    """
    p = _check_points("points", points)
    n = _check_points("normals", normals) if normals is not None else estimate_normals(p)
    edges = knn_edges(p, k_neighbors, max_dist)
    return segment_graph(p.shape[0], edges, edge_weights(p, n, edges), k_thresh, min_size)


# --------------------------------------------------------------------------------------------
# the store step


@functools.cache
def warm_up() -> None:
    """Compile (or load from numba's disk cache) every kernel once, on a 4-vertex mesh."""
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0.5]], dtype=np.float32)
    segment_mesh(v, np.array([[0, 1, 2], [1, 3, 2]], dtype=np.int32), min_size=2)


def _oversegment_scene(root: str, config: Any, overwrite: bool, scene_id: str) -> dict[str, Any]:
    from hiclr.config import fingerprint
    from hiclr.store import Store

    scene = Store.open(root).scene(scene_id)
    graph, notes = "knn", []
    if scene.has("faces"):
        faces, n = scene.read("faces"), scene.num_points
        covered = vertices_in_faces(faces, n)
        if 2 * covered >= n:
            graph = "mesh"
        else:  # the mesh rule would leave most vertices as one-vertex segments
            notes.append(f"{scene.path_of('faces')}: only {covered} of {n} vertices lie in a face with three distinct "
                         f"corners (degenerate faces such as (0, 0, 0)), so the kNN graph of a point cloud was used; "
                         f"to segment by the mesh, export it again and rerun hiclr prepare")
    fp = fingerprint(config, graph=graph, coord=scene.fingerprint("coord"))
    if not overwrite and scene.is_done("segments", fp):
        return {"status": "skipped"}
    coord = scene.read("coord")
    warm_up()  # keep the one-off compilation out of the per-scene time
    t0 = time.perf_counter()
    if graph == "mesh":
        # Segmentator's own face-averaged normals, not normal.npy: the exact reference rule
        segments = segment_mesh(coord, faces, None, config.k_thresh, config.min_size)
    else:
        normals = scene.read("normal") if scene.has("normal") else None
        segments = segment_points(coord, normals, config.knn, config.k_thresh, config.min_size)
    seconds = time.perf_counter() - t0
    scene.write("segments", segments, STEP, fp)
    return {
        "status": "done",
        "notes": notes,
        "graph": graph,
        "points": len(coord),
        "segments": int(segments.max()) + 1 if len(segments) else 0,
        "seconds": seconds,
    }


def run_oversegment(
    store: Any,
    config: Any,
    scene_ids: Sequence[str] | None = None,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> Any:
    """Over-segment every scene of the store and write ``segments.npy``.

    Scenes with ``faces.npy`` use the mesh rule (:func:`segment_mesh`), others the kNN graph
    (:func:`segment_points`, with the stored normals), and so do meshes whose faces leave most
    vertices out (degenerate faces: :func:`vertices_in_faces`), with a note. A scene whose segments exist with the same
    config and the same ``coord`` is skipped unless ``overwrite``.

    Args:
        store: an open :class:`hiclr.store.Store`.
        config: :class:`hiclr.config.OversegmentConfig` (k_thresh, min_size, knn).
        scene_ids: scenes to process (default: all scenes of the store).
        workers: scenes processed in parallel.
        overwrite: redo scenes that are up to date.
        progress: show a progress bar.
    Returns:
        :class:`hiclr.runner.RunSummary`; each done scene's result has ``graph`` ("mesh"/"knn"),
        ``points``, ``segments`` and ``seconds`` (segmentation time, I/O excluded).
    """
    from hiclr.runner import run_scenes

    ids = list(store.scene_ids() if scene_ids is None else scene_ids)
    work = functools.partial(_oversegment_scene, str(Path(store.root)), config, overwrite)
    return run_scenes(work, ids, workers=workers, desc="oversegment", progress=progress)
