"""Intra-scene sampling counts, majority labels, the stage schedule and --stages parsing."""

from __future__ import annotations

import numpy as np
import pytest

from hiclr.errors import HiclrError
from hiclr.train.config import TrainConfig, parse_stages
from hiclr.train.sampler import point_labels, sample_points, segment_quota
from hiclr.train.schedule import active_terms, cosine_lr, epoch_terms, extended_schedule, switch_steps


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
    sw = switch_steps(cfg, 1, cfg.epochs)  # one step per epoch: step e-1 is epoch e
    assert active_terms(cfg, 0, sw) == ["ce"]
    assert active_terms(cfg, 9, sw) == ["ce"]
    assert active_terms(cfg, 10, sw) == ["ce", "intra", "inter"]
    assert active_terms(cfg, 19, sw) == ["ce", "intra", "inter"]
    assert active_terms(cfg, 20, sw) == ["ce", "intra", "inter", "kl"]
    assert epoch_terms(TrainConfig(stages=["intraset"]), 50) == ["ce"]
    assert epoch_terms(TrainConfig(stages=["intraset", "intrascene"]), 30) == ["ce", "intra"]
    assert epoch_terms(TrainConfig(ce_from=1, correlation_from=2, kl_from=3), 3) == ["ce", "intra", "inter", "kl"]


def test_schedule_in_epochs_counts_optimiser_steps() -> None:
    cfg = TrainConfig(epochs=120)  # the paper: 1 / 11 / 21 of 120 epochs
    assert switch_steps(cfg, 151, 120 * 151) == {"ce": 0, "correlation": 10 * 151, "kl": 20 * 151}


def test_fraction_schedule_keeps_the_papers_proportions_in_a_short_run() -> None:
    cfg = TrainConfig(schedule="fraction", epochs=20, ce_from=0.0, correlation_from=10 / 120, kl_from=20 / 120)
    total = 20 * 3  # 60 steps
    assert switch_steps(cfg, 3, total) == {"ce": 0, "correlation": 5, "kl": 10}
    assert active_terms(cfg, 4, switch_steps(cfg, 3, total)) == ["ce"]
    assert active_terms(cfg, 5, switch_steps(cfg, 3, total)) == ["ce", "intra", "inter"]
    # the paper's 120-epoch run gives the same steps either way
    paper = TrainConfig(epochs=120)
    frac = TrainConfig(epochs=120, schedule="fraction", ce_from=0.0, correlation_from=10 / 120, kl_from=20 / 120)
    assert switch_steps(paper, 7, 840) == switch_steps(frac, 7, 840)


def test_schedule_values_are_checked() -> None:
    with pytest.raises(HiclrError, match="1-based epoch"):
        TrainConfig(correlation_from=0.5)
    with pytest.raises(HiclrError, match="share of the run"):
        TrainConfig(schedule="fraction", kl_from=21)
    with pytest.raises(HiclrError, match="train.logits"):
        TrainConfig(logits="dot")


def test_extending_a_run_keeps_passed_switches_at_their_steps() -> None:
    cfg = TrainConfig(schedule="fraction", epochs=20, ce_from=0.0, correlation_from=0.25, kl_from=0.5)
    ext = extended_schedule(cfg, 20, 10)
    new = TrainConfig(schedule="fraction", stages=cfg.stages, **ext)
    assert switch_steps(new, 4, 30 * 4)["correlation"] == switch_steps(cfg, 4, 20 * 4)["correlation"] == 20
    assert switch_steps(new, 4, 30 * 4)["kl"] == 40  # already passed at step 40 of the old run: unchanged
    late = TrainConfig(schedule="fraction", epochs=20, ce_from=0.0, correlation_from=0.25, kl_from=1.0)
    assert switch_steps(TrainConfig(schedule="fraction", **extended_schedule(late, 20, 10)), 4, 120)["kl"] == 80


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


def test_warmup_then_cosine() -> None:
    from hiclr.train.schedule import cosine_lr, warmup_cosine_lr

    # 100 steps, 10 % warm-up: 0.1, 0.2, ... 1.0 over steps 0..9, then cosine over the other 90
    assert [round(warmup_cosine_lr(1.0, s, 100, 0.1), 6) for s in range(10)] == [round(0.1 * (s + 1), 6) for s in range(10)]
    assert warmup_cosine_lr(1.0, 10, 100, 0.1) == pytest.approx(1.0)
    assert warmup_cosine_lr(1.0, 55, 100, 0.1) == pytest.approx(0.5)  # half-way through the decay
    assert warmup_cosine_lr(1.0, 37, 100, 0.0) == cosine_lr(1.0, 37, 100)
