"""Intra-scene sampling (§3.2): M points per scene, M_i = M·N_i/N from each geometric consistency set.

Only points that carry a label (at least one pair) are sampled; N_i counts the labelled points of
set i and N those of the scene, so Σ M_i = M exactly (largest-remainder rounding) and no set gives
more points than it has. A scene with fewer than M labelled points gives all of them.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np


def point_labels(num_points: int, pair_point: np.ndarray, pair_label: np.ndarray, num_classes: int) -> np.ndarray:
    """Each point's label l̂_m: the majority label of its pairs (ties → the smaller class index),
    -1 for a point without pairs. Returns (N,) int64. The same vote as ``hiclr evaluate --labels``."""
    from hiclr.pseudolabel import majority_vote

    pairs = SimpleNamespace(point=pair_point, label=pair_label)
    return majority_vote(num_points, pairs, num_classes).astype(np.int64)


def segment_quota(sizes: np.ndarray, total: int) -> np.ndarray:
    """M_i = M·N_i/N rounded so that Σ M_i = min(M, N) and M_i ≤ N_i (largest remainder).

    sizes: (S,) labelled points per set. Returns (S,) int64."""
    sizes = np.asarray(sizes, dtype=np.int64)
    n = int(sizes.sum())
    if n <= total:
        return sizes.copy()
    exact = sizes * (total / n)
    quota = np.floor(exact).astype(np.int64)
    short = total - int(quota.sum())
    if short > 0:
        order = np.argsort(-(exact - quota), kind="stable")  # largest remainders first
        quota[order[:short]] += 1
    return np.minimum(quota, sizes)


def sample_points(segments: np.ndarray, labels: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of the sampled points of one scene, (≤ total,) int64, sorted.

    segments: (N,) set id per point (any integers, -1 allowed = its own set); labels: (N,) with -1 =
    unlabelled (never sampled)."""
    cand = np.flatnonzero(labels >= 0)
    if len(cand) == 0:
        return cand.astype(np.int64)
    seg = segments[cand]
    _, inverse, sizes = np.unique(seg, return_inverse=True, return_counts=True)
    quota = segment_quota(sizes, total)
    order = np.argsort(inverse, kind="stable")  # candidates grouped by set
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    chosen = []
    for i in np.flatnonzero(quota):
        members = cand[order[starts[i]: starts[i] + sizes[i]]]
        chosen.append(rng.choice(members, size=int(quota[i]), replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)
