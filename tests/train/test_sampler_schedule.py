"""Intra-scene sampling counts, majority labels, the stage schedule and --stages parsing."""

from __future__ import annotations

import numpy as np
import pytest

from hiclr.errors import HiclrError
from hiclr.train.config import TrainConfig, parse_stages
from hiclr.train.sampler import point_labels, sample_points, segment_quota
from hiclr.train.schedule import active_terms, cosine_lr


def test_segment_quota_proportional() -> None:
    assert segment_quota(np.array([600, 300, 100]), 100).tolist() == [60, 30, 10]
    q = segment_quota(np.array([1, 1, 1]), 2)
    assert q.sum() == 2 and q.max() == 1
    assert segment_quota(np.array([5, 3]), 100).tolist() == [5, 3]  # fewer points than M: all of them
    q = segment_quota(np.array([7, 2, 1]), 5)  # exact 3.5, 1.0, 0.5 → floors 3,1,0 + one by remainder
    assert q.sum() == 5 and q[1] == 1 and q[0] in (3, 4)


def test_sample_points_per_segment_counts_labelled_only() -> None:
    seg = np.repeat([7, 3, 9], [700, 350, 150])  # 1200 points in three sets
    labels = np.zeros(1200, np.int64)
    labels[600:700] = -1  # 100 unlabelled points of set 7 → labelled sizes 600, 300 (350-50), 100
    labels[1000:1050] = -1
    labels[1150:1200] = -1
    idx = sample_points(seg, labels, 100, np.random.default_rng(0))
    assert len(idx) == 100 and len(np.unique(idx)) == 100
    assert (labels[idx] >= 0).all()
    counts = {s: int((seg[idx] == s).sum()) for s in (7, 3, 9)}
    assert counts == {7: 60, 3: 30, 9: 10}


def test_majority_label_of_pairs() -> None:
    point = np.array([0, 0, 0, 1, 1, 2])
    label = np.array([2, 2, 1, 0, 1, 1])
    assert point_labels(4, point, label, 3).tolist() == [2, 0, 1, -1]  # tie at point 1 → smaller index


def test_schedule_switches_terms_on() -> None:
    cfg = TrainConfig()
    assert active_terms(cfg, 1) == ["ce"]
    assert active_terms(cfg, 10) == ["ce"]
    assert active_terms(cfg, 11) == ["ce", "intra", "inter"]
    assert active_terms(cfg, 20) == ["ce", "intra", "inter"]
    assert active_terms(cfg, 21) == ["ce", "intra", "inter", "kl"]
    assert active_terms(TrainConfig(stages=["intraset"]), 50) == ["ce"]
    assert active_terms(TrainConfig(stages=["intraset", "intrascene"]), 30) == ["ce", "intra"]
    assert active_terms(TrainConfig(ce_from=1, correlation_from=2, kl_from=3), 3) == ["ce", "intra", "inter", "kl"]


def test_cosine() -> None:
    assert cosine_lr(0.2, 0, 100) == pytest.approx(0.2)
    assert cosine_lr(0.2, 50, 100) == pytest.approx(0.1)
    assert cosine_lr(0.2, 100, 100) == pytest.approx(0.0)


def test_stages_are_table2() -> None:
    assert parse_stages("baseline") == []
    assert parse_stages("I") == []
    assert parse_stages("III") == ["intraset", "intrascene"]
    assert parse_stages("V") == ["intraset", "intrascene", "interscene", "feedback"]
    assert parse_stages("feedback,intraset,interscene") == ["intraset", "interscene", "feedback"]
    assert parse_stages("all") == parse_stages("V")
    with pytest.raises(HiclrError):
        parse_stages("intrasets")
    with pytest.raises(HiclrError):
        TrainConfig(stages=["intraset", "feedback"])  # nothing to distil from
