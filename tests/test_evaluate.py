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
