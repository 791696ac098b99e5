"""Intra-set refinement: the mode of the pseudo-labels per (segment, view)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from hiclr.errors import HiclrError
from hiclr.refine import group_mode, refine_pairs


def test_vote_picks_the_majority() -> None:
    segments = np.array([0, 0, 0], dtype=np.int32)
    out = refine_pairs(np.array([0, 1, 2]), np.zeros(3), np.array([1, 1, 2], dtype=np.int16), segments)
    assert out.tolist() == [1, 1, 1] and out.dtype == np.int16


def test_vote_is_per_view() -> None:
    # one segment of three points, seen in view 0 (labels 1,1,2) and view 1 (labels 2,2,1)
    segments = np.zeros(3, dtype=np.int32)
    point = np.array([0, 1, 2, 0, 1, 2])
    view = np.array([0, 0, 0, 1, 1, 1])
    label = np.array([1, 1, 2, 2, 2, 1])
    assert refine_pairs(point, view, label, segments).tolist() == [1, 1, 1, 2, 2, 2]
    # one vote per segment over all views: 3 × class 1 against 3 × class 2 → tie → class 1
    assert refine_pairs(point, view, label, segments, per_view=False).tolist() == [1] * 6


def test_segments_vote_separately_and_unseen_points_are_untouched() -> None:
    # segment 0 = points 0..2, segment 1 = points 3..4 (seen in no view), point 5 unsegmented
    segments = np.array([0, 0, 0, 1, 1, -1], dtype=np.int32)
    point = np.array([0, 1, 2, 5])
    view = np.array([0, 0, 0, 0])
    label = np.array([3, 3, 4, 4])
    out = refine_pairs(point, view, label, segments)
    assert out.tolist() == [3, 3, 3, 4]  # the unsegmented point's pair keeps its label


def test_tie_break_is_the_smallest_class_whatever_the_order() -> None:
    segments = np.zeros(4, dtype=np.int32)
    point = np.arange(4)
    label = np.array([5, 2, 2, 5])
    rng = np.random.default_rng(0)
    for _ in range(5):
        perm = rng.permutation(4)
        out = refine_pairs(point[perm], np.zeros(4), label[perm], segments)
        assert out.tolist() == [2, 2, 2, 2]


def test_group_mode_by_hand() -> None:
    keys, inverse, mode, count = group_mode(np.array([7, 3, 7, 7, 3]), np.array([1, 0, 2, 2, 4]))
    assert keys.tolist() == [3, 7] and inverse.tolist() == [1, 0, 1, 1, 0]
    assert mode.tolist() == [0, 2] and count.tolist() == [1, 2]


def test_empty_and_bad_input() -> None:
    segments = np.zeros(2, dtype=np.int32)
    assert refine_pairs(np.zeros(0, int), np.zeros(0, int), np.zeros(0, np.int16), segments).size == 0
    with pytest.raises(HiclrError, match="outside"):
        refine_pairs(np.array([2]), np.array([0]), np.array([1]), segments)
    with pytest.raises(HiclrError, match="length"):
        refine_pairs(np.array([0, 1]), np.array([0]), np.array([1]), segments)


def _reference_refine(point, view, label, segments):
    """The definition, one group at a time (slow, obviously right)."""
    groups: dict[tuple[int, int], list[int]] = {}
    for k, (p, v) in enumerate(zip(point, view)):
        if segments[p] >= 0:
            groups.setdefault((int(segments[p]), int(v)), []).append(k)
    out = label.copy()
    for rows in groups.values():
        counts = Counter(int(label[r]) for r in rows)
        best = max(counts.values())
        out[rows] = min(c for c, n in counts.items() if n == best)
    return out


@pytest.mark.parametrize("seed", range(5))
def test_matches_the_definition_on_random_scenes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, p, v, c = 300, 2000, 7, 5
    segments = rng.integers(-1, 25, n).astype(np.int32)
    point, view, label = rng.integers(0, n, p), rng.integers(0, v, p), rng.integers(0, c, p).astype(np.int16)
    out = refine_pairs(point, view, label, segments)
    assert np.array_equal(out, _reference_refine(point, view, label, segments))


@pytest.mark.parametrize("seed", range(5))
def test_refinement_never_lowers_accuracy_when_group_majorities_are_right(seed: int) -> None:
    # pure segments (one true class each); in every (segment, view) group the true class is the
    # strict plurality of the noisy labels. Then every refined label is right: accuracy can only rise.
    rng = np.random.default_rng(seed)
    n_seg, per_seg, n_views, c = 20, 15, 4, 6
    segments = np.repeat(np.arange(n_seg), per_seg).astype(np.int32)
    truth_seg = rng.integers(0, c, n_seg)
    truth = truth_seg[segments]
    rows_p, rows_v, rows_l = [], [], []
    for s in range(n_seg):
        pts = np.flatnonzero(segments == s)
        for v in range(n_views):
            seen = rng.choice(pts, size=rng.integers(3, per_seg + 1), replace=False)
            noisy = truth[seen].copy()
            # corrupt fewer than half of them, all to one wrong class (the worst case)
            k = (len(seen) - 1) // 2
            noisy[:k] = (truth_seg[s] + 1 + rng.integers(0, c - 1)) % c
            rows_p.append(seen), rows_v.append(np.full(len(seen), v)), rows_l.append(noisy)
    point, view, label = np.concatenate(rows_p), np.concatenate(rows_v), np.concatenate(rows_l)
    out = refine_pairs(point, view, label, segments)
    before, after = (label == truth[point]).mean(), (out == truth[point]).mean()
    assert after >= before and after == 1.0


# -- the store step


def test_run_refine_writes_refined_pairs(tmp_path) -> None:
    from hiclr.config import RefineConfig
    from hiclr.refine import run_refine
    from hiclr.store import Pairs, Store

    store = Store.create(tmp_path, "t", ["a", "b", "c"], splits={"val": ["s0"]})
    scene = store.scene("s0")
    scene.write("coord", np.zeros((4, 3), np.float32), "test", "x")
    frame = np.zeros((2, 2, 3), np.uint8)
    scene.write_views(
        np.tile(np.eye(3, dtype=np.float32), (2, 1, 1)),
        np.tile(np.eye(4, dtype=np.float32), (2, 1, 1)),
        [frame, frame],
        None,
        "test",
        "x",
    )
    scene.write("segments", np.array([0, 0, 0, 1], np.int32), "test", "s1")
    pairs = Pairs(
        np.array([0, 1, 2, 0, 1, 3]),
        np.array([0, 0, 0, 1, 1, 1]),
        np.array([2, 2, 1, 0, 1, 2]),
        np.full(6, 0.5),
    )
    scene.write_pairs("pairs", pairs, "test", "p1")
    summary = run_refine(store, RefineConfig(), progress=False)
    assert summary.done == ["s0"] and summary.results["s0"]["changed"] == 2
    refined = store.scene("s0").read_pairs("refined")
    assert refined.label.tolist() == [2, 2, 2, 0, 0, 2]
    assert np.array_equal(refined.point, pairs.point) and np.array_equal(refined.score, pairs.score)
    assert run_refine(store, RefineConfig(), progress=False).skipped == ["s0"]
    # new segments (a new fingerprint) make the step redo the scene
    store.scene("s0").write("segments", np.array([0, 1, 1, 1], np.int32), "test", "s2")
    assert run_refine(store, RefineConfig(), progress=False).done == ["s0"]
    assert store.scene("s0").read_pairs("refined").label.tolist() == [2, 1, 1, 0, 1, 1]


def test_refine_cli(tmp_path) -> None:
    from click.testing import CliRunner

    from hiclr.store import Pairs, Store
    from hiclr_cli.main import cli

    store = Store.create(tmp_path, "t", ["a", "b"], splits={"val": ["s0"]})
    scene = store.scene("s0")
    scene.write("coord", np.zeros((3, 3), np.float32), "test", "x")
    frame = np.zeros((2, 2, 3), np.uint8)
    scene.write_views(
        np.eye(3, dtype=np.float32)[None], np.eye(4, dtype=np.float32)[None], [frame], None, "t", "x"
    )
    scene.write("segments", np.zeros(3, np.int32), "test", "s")
    scene.write_pairs("pairs", Pairs(np.arange(3), np.zeros(3), np.array([1, 0, 1]), np.ones(3)), "test", "p")
    r = CliRunner().invoke(cli, ["refine", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "1 done" in r.output and "1 of 3 pair labels changed" in r.output
    assert store.scene("s0").read_pairs("refined").label.tolist() == [1, 1, 1]
    r = CliRunner().invoke(cli, ["refine", str(tmp_path), "--per-segment"])
    assert r.exit_code == 0 and "1 done" in r.output  # a new setting redoes the scene
