import numpy as np
import pytest

from hiclr.evaluate import confusion_matrix, evaluate_store, scores_from_confusion
from hiclr.store import Store


def test_hand_computed_ious():
    # class 0: gt 3 points, pred 0 on 2 of them; class 1: gt 2 points, pred 1 on both + 1 FP from class 0
    gt = np.array([0, 0, 0, 1, 1])
    pred = np.array([0, 0, 1, 1, 1])
    s = scores_from_confusion(confusion_matrix(gt, pred, 2), ["a", "b"])
    assert s["per_class"]["a"]["iou"] == pytest.approx(2 / 3)  # TP 2, FN 1, FP 0
    assert s["per_class"]["b"]["iou"] == pytest.approx(2 / 3)  # TP 2, FN 0, FP 1
    assert s["miou"] == pytest.approx(2 / 3)
    assert s["overall_acc"] == pytest.approx(4 / 5)
    assert s["mean_class_acc"] == pytest.approx((2 / 3 + 1) / 2)


def test_absent_class_not_counted_and_ignore_skipped():
    gt = np.array([0, 0, 1, -1, -1])
    pred = np.array([0, 2, 1, 2, 0])  # class 2 absent from gt but predicted once (FP)
    s = scores_from_confusion(confusion_matrix(gt, pred, 3), ["a", "b", "c"])
    assert s["absent"] == ["c"]
    assert s["per_class"]["c"]["iou"] is None
    assert s["per_class"]["a"]["iou"] == pytest.approx(1 / 2)
    assert s["per_class"]["b"]["iou"] == pytest.approx(1.0)
    assert s["miou"] == pytest.approx(0.75)  # mean over a, b only
    assert s["num_points"] == 3


def test_prediction_outside_classes_is_a_miss():
    gt = np.array([0, 0, 1])
    pred = np.array([0, -1, 1])
    conf = confusion_matrix(gt, pred, 2)
    assert conf.shape == (2, 3) and conf[0, 2] == 1
    s = scores_from_confusion(conf, ["a", "b"])
    assert s["per_class"]["a"]["iou"] == pytest.approx(1 / 2)  # FN, not FP of b
    assert s["per_class"]["b"]["iou"] == pytest.approx(1.0)


def test_store_level_one_matrix_over_scenes(tmp_path):
    st = Store.create(tmp_path, "t", ["a", "b"], splits={"val": ["x", "y"]})
    for sid, gt, pred in [("x", [0, 0, 1], [0, 1, 1]), ("y", [1, 1, -1], [1, 0, 0])]:
        sc = st.scene(sid)
        sc.write("coord", np.zeros((3, 3), np.float32), "prepare", "f")
        sc.write("label", np.array(gt, np.int16), "prepare", "f")
        sc.write("pred", np.array(pred, np.int16), "evaluate", "f")
    ev = evaluate_store(st, "pred", "val", progress=False)
    # pooled: gt a:[a,b] b:[b,b,a] -> a: TP1 FN1 FP1 -> 1/3 ; b: TP2 FN1 FP1 -> 2/4
    assert ev.scores["per_class"]["a"]["iou"] == pytest.approx(1 / 3)
    assert ev.scores["per_class"]["b"]["iou"] == pytest.approx(0.5)
    gt_ev = evaluate_store(st, "gt", "val", progress=False)
    assert gt_ev.scores["miou"] == pytest.approx(1.0)


def _store_with_pairs(tmp_path):
    """One val scene of 4 points, gt [a, a, b, b]; views see points 0 and 2 only.

    pseudo (majority over views): point 0 → a, point 2 → a (wrong); points 1, 3 unseen.
    refined: point 0 → a, point 2 → b.  pred (a model, every point): [a, b, b, b]."""
    from hiclr.store import Pairs

    st = Store.create(tmp_path, "t", ["a", "b"], splits={"val": ["x"]})
    sc = st.scene("x")
    sc.write("coord", np.zeros((4, 3), np.float32), "prepare", "f")
    sc.write("label", np.array([0, 0, 1, 1], np.int16), "prepare", "f")
    pts = np.array([0, 0, 2, 2, 2])
    sc.write_pairs("pairs", Pairs(pts, np.zeros(5), np.array([0, 0, 0, 0, 1]), np.ones(5)), "pl", "f")
    sc.write_pairs("refined", Pairs(pts, np.zeros(5), np.array([0, 0, 1, 1, 1]), np.ones(5)), "rf", "f")
    sc.write("pred", np.array([0, 1, 1, 1], np.int16), "evaluate", "f")
    return st


def test_every_source_scored_on_the_same_points(tmp_path):
    from hiclr.evaluate import evaluate_sources

    st = _store_with_pairs(tmp_path)
    pseudo, refined, pred = evaluate_sources(st, ["pseudo", "refined", "pred"], "val", progress=False)
    for ev in (pseudo, refined, pred):
        assert ev.scores["num_points"] == 4  # all labelled points, for every source
        assert ev.scores_seen["num_points"] == 2  # the points seen by some view: 0 and 2
        assert ev.coverage == pytest.approx(0.5)
    # pseudo, all points: a: TP1 (pt0), FN1 (pt1 unseen = miss), FP1 (pt2) -> 1/3; b: TP0 -> 0
    assert pseudo.scores["per_class"]["a"]["iou"] == pytest.approx(1 / 3)
    assert pseudo.scores["per_class"]["b"]["iou"] == pytest.approx(0.0)
    assert pseudo.confusion[0, 2] == 1 and pseudo.confusion[1, 2] == 1  # the unseen points are misses
    # pseudo, seen points: pt0 a→a, pt2 b→a: a 1/2, b 0
    assert pseudo.scores_seen["miou"] == pytest.approx(0.25)
    # refined: all points a 1/2 (pt1 missed), b 1/2 (pt3 missed); seen: both right -> 1
    assert refined.scores["miou"] == pytest.approx(0.5)
    assert refined.scores_seen["miou"] == pytest.approx(1.0)
    # the model labels every point: all a 1/2 (pt1 → b is FN of a, FP of b), b 2/3; seen: both right
    assert pred.scores["per_class"]["a"]["iou"] == pytest.approx(1 / 2)
    assert pred.scores["per_class"]["b"]["iou"] == pytest.approx(2 / 3)
    assert pred.scores_seen["miou"] == pytest.approx(1.0)


def test_compare_cli_prints_one_table_and_writes_both_columns(tmp_path):
    import json

    from click.testing import CliRunner

    from hiclr_cli.main import cli

    _store_with_pairs(tmp_path / "d")
    res = CliRunner().invoke(cli, ["evaluate", str(tmp_path / "d"), "--compare", "pseudo,refined,pred"])
    assert res.exit_code == 0, res.output
    lines = {ln.split()[0]: ln.split()[1:] for ln in res.output.splitlines() if ln.split() and ln.split()[0] in
             ("pseudo", "refined", "pred")}
    assert lines["pseudo"][:2] == ["16.7", "25.0"]  # mIoU all (1/3 + 0)/2, seen (1/2 + 0)/2
    assert lines["refined"][:2] == ["50.0", "100.0"]
    body = json.loads((tmp_path / "d" / "metrics" / "compare-val.json").read_text())
    assert body["sources"]["refined"]["seen"]["miou"] == pytest.approx(1.0)
    assert body["sources"]["refined"]["miou"] == pytest.approx(0.5)
    assert body["sources"]["pred"]["coverage"] == pytest.approx(0.5)
