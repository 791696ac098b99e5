"""The synthetic-only oracle labeler: exact at noise 0, worse as noise rises, never on real data."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from hiclr.errors import HiclrError
from hiclr.vlm.oracle import (
    OracleLabeler,
    _patch_majority,
    check_synthetic,
    confusion_partners,
    corrupt_labels,
    view_rng,
)

CLASSES = ["wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
           "picture", "counter", "desk", "curtain", "refrigerator", "shower curtain", "toilet", "sink",
           "bathtub", "otherfurniture"]


@pytest.fixture(scope="module")
def synthetic_store(make_synthetic_store):
    return make_synthetic_store("oracle_store", scenes=1, seed=3, views=4, width=128, height=96, spacing=0.06,
                                val_fraction=0.0)


def gt_image() -> np.ndarray:
    """96×128: wall on top, floor below, a table (6) and a chair (4) standing on it, no-hit corner."""
    img = np.zeros((96, 128), dtype=np.int64)
    img[48:] = 1
    img[40:80, 20:70] = 6
    img[50:90, 90:110] = 4
    img[:10, :10] = -1
    return img


def test_partners_by_name() -> None:
    partners = confusion_partners(CLASSES)
    assert sorted(partners[CLASSES.index("table")]) == [CLASSES.index("counter"), CLASSES.index("desk")]
    assert CLASSES.index("picture") in partners[CLASSES.index("wall")]
    assert CLASSES.index("shower curtain") in partners[CLASSES.index("curtain")]
    assert partners[CLASSES.index("floor")] == []


def test_noise_zero_is_identity() -> None:
    gt = gt_image()
    lab, score = corrupt_labels(gt, CLASSES, 0.0, view_rng(0, "s", 0))
    assert np.array_equal(lab, gt) and np.all(score == 1.0)


def test_deterministic_per_seed_scene_view() -> None:
    gt = gt_image()
    a = corrupt_labels(gt, CLASSES, 0.7, view_rng(1, "room", 2))
    b = corrupt_labels(gt, CLASSES, 0.7, view_rng(1, "room", 2))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    others = [corrupt_labels(gt, CLASSES, 0.7, view_rng(*k))[0] for k in [(1, "room", 3), (2, "room", 2), (1, "other", 2)]]
    assert all(not np.array_equal(a[0], o) for o in others)


@pytest.mark.parametrize("noise", [0.2, 0.5, 1.0])
def test_unlabelled_pixels_stay_unlabelled_and_scores_in_range(noise: float) -> None:
    gt = gt_image()
    for view in range(5):
        lab, score = corrupt_labels(gt, CLASSES, noise, view_rng(0, "s", view))
        assert np.array_equal(lab < 0, gt < 0)
        assert lab.max() < len(CLASSES)
        assert np.all((score > 0) & (score <= 1)) and score.dtype == np.float32


def test_coarse_patches_at_high_noise() -> None:
    gt = gt_image()
    gt[:10, :10] = 0  # all pixels labelled, so every 16×16 patch must be uniform
    lab, score = corrupt_labels(gt, CLASSES, 0.8, view_rng(0, "s", 0))
    blocks = lab.reshape(6, 16, 8, 16)
    assert np.all(blocks == blocks[:, :1, :, :1])
    assert score.min() < 1.0  # corrupted or mixed patches are less confident


def test_patch_majority_ties_to_smallest_label() -> None:
    lab = np.array([[3, 3, 5, 5], [1, 1, 1, 2], [-1, -1, 0, 0], [-1, -1, 0, 0]])
    out, purity = _patch_majority(lab, 6, 2)
    assert out[0, 0] == 1 and purity[0, 0] == pytest.approx(0.5)  # {3,3,1,1}: tie 1 vs 3 → 1
    assert out[0, 2] == 5 and purity[0, 2] == pytest.approx(0.5)  # {5,5,1,2}: 5 wins
    assert out[2, 0] == -1 and out[2, 2] == 0 and purity[2, 2] == 1.0


def test_confusion_uses_look_alikes() -> None:
    gt = np.full((64, 64), CLASSES.index("table"))
    seen = set()
    for view in range(40):
        lab, _ = corrupt_labels(gt, CLASSES, 0.4, view_rng(0, "s", view))
        seen |= set(np.unique(lab).tolist())
    assert {CLASSES.index("desk"), CLASSES.index("counter")} & seen
    assert CLASSES.index("table") in seen


def test_noise_zero_renders_ground_truth_exactly(synthetic_store) -> None:
    from hiclr.render import MeshRenderer

    scene = synthetic_store.scene(synthetic_store.scene_ids()[0])
    labels, scores = OracleLabeler(synthetic_store, noise=0.0).label_views(scene, [0, 2], (96, 128))
    r = MeshRenderer(scene.read("coord"), scene.read("faces"))
    K, T = scene.intrinsics(), scene.cam_to_world()
    for i, v in enumerate([0, 2]):
        gt = r.labels(scene.read("label"), K[v], T[v], 128, 96)
        assert (gt >= 0).mean() > 0.5
        assert np.array_equal(labels[i], gt.astype(np.int64))
        assert np.all(scores[i] == 1.0)
        # and the rendered labels agree with the depth frame: a hit wherever depth was measured
        assert np.array_equal(labels[i] >= 0, (scene.read_depth(v) > 0) & (gt >= 0))


def test_pseudo_label_miou_falls_with_noise(synthetic_store) -> None:
    from hiclr.config import PseudolabelConfig
    from hiclr.evaluate import confusion_matrix, scores_from_confusion
    from hiclr.pseudolabel import majority_vote, run_pseudolabel

    sid = synthetic_store.scene_ids()[0]
    scene = synthetic_store.scene(sid)
    gt = scene.read("label")
    mious = []
    for noise in (0.0, 0.3, 0.6, 0.9):
        summary = run_pseudolabel(synthetic_store, PseudolabelConfig(labeler="oracle", noise=noise, device="cpu"),
                                  [sid], progress=False)
        assert summary.done == [sid], summary.failed
        votes = majority_vote(scene.num_points, scene.read_pairs("pairs"), synthetic_store.num_classes)
        conf = confusion_matrix(np.where(votes >= 0, gt, -1), votes, synthetic_store.num_classes)
        mious.append(scores_from_confusion(conf, synthetic_store.classes)["miou"])
    assert mious[0] > 0.75  # not 1: wall points behind flush pictures/windows pass the 5 cm depth test
    assert all(a > b for a, b in itertools.pairwise(mious)), mious
    assert mious[2] < mious[0] - 0.2


def test_refuses_real_data(tmp_path: Path) -> None:
    from hiclr.config import PseudolabelConfig
    from hiclr.pseudolabel import run_pseudolabel
    from hiclr.store import Store

    real = Store.create(tmp_path / "scannet", "scannet", CLASSES)
    with pytest.raises(HiclrError) as err:
        OracleLabeler(real, noise=0.5)
    assert "ground truth" in err.value.message and "--labeler maskclip" in err.value.hint
    with pytest.raises(HiclrError, match="labeler maskclip"):
        run_pseudolabel(real, PseudolabelConfig(labeler="oracle"), [], progress=False)
    # a synthetic-named store holding a scene from elsewhere is refused too
    fake = Store.create(tmp_path / "fake", "synthetic", CLASSES)
    scene = fake.scene("scene0000_00")
    scene.set_meta(source="scannet")
    with pytest.raises(HiclrError, match="not synthetic"):
        check_synthetic(fake, scene)
    with pytest.raises(HiclrError, match="not synthetic"):
        OracleLabeler(fake, noise=0.5).label_views(scene, [0], (8, 8))


def test_bad_noise() -> None:
    with pytest.raises(HiclrError):
        corrupt_labels(gt_image(), CLASSES, 1.5, view_rng(0, "s", 0))


def test_systematic_swap_is_the_same_in_every_view_and_its_partner_in_every_scene() -> None:
    from hiclr.vlm.oracle import scene_swaps, systematic_partner

    partner = systematic_partner(0, CLASSES)
    table, chair = CLASSES.index("table"), CLASSES.index("chair")
    assert CLASSES[partner[table]] in ("desk", "counter") and CLASSES[partner[chair]] == "sofa"
    assert partner[CLASSES.index("floor")] == -1  # no look-alike: never swapped
    swap = scene_swaps(0, "room_0", CLASSES, 1.0)  # s = 1: every class with a look-alike is swapped
    assert swap[table] == partner[table] and swap[CLASSES.index("floor")] == CLASSES.index("floor")
    gt = gt_image()
    for v in range(3):  # noise 0: the views differ only by their generator; all give the swapped labels
        lab, score = corrupt_labels(gt, CLASSES, 0.0, view_rng(0, "room_0", v), swap=swap)
        assert (lab[gt == table] == partner[table]).all() and (lab[gt == chair] == partner[chair]).all()
        assert (lab[gt == 1] == 1).all() and (lab[gt == -1] == -1).all()
        assert (score == 1.0).all()  # systematic errors are confident, as CLIP's are
    assert (scene_swaps(0, "room_0", CLASSES, 0.0) == np.arange(len(CLASSES))).all()


def test_systematic_rate_is_the_share_of_swapped_scene_classes() -> None:
    from hiclr.vlm.oracle import scene_swaps, systematic_partner

    has = systematic_partner(0, CLASSES) >= 0
    swapped = np.mean([(scene_swaps(0, f"room_{i}", CLASSES, 0.3) != np.arange(len(CLASSES)))[has].mean()
                       for i in range(400)])
    assert swapped == pytest.approx(0.3, abs=0.03)
    with pytest.raises(HiclrError, match="systematic"):
        scene_swaps(0, "x", CLASSES, 1.5)
