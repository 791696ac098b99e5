"""benchmarks/learning.py's bookkeeping, checked by hand: run names per variant and seed, Table 2's
grouping over seeds (mean ± half the range), and the time to teacher."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("learning_bench", Path(__file__).resolve().parent.parent / "benchmarks" / "learning.py")
assert _spec is not None and _spec.loader is not None
learning = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(learning)


def test_variant_tag_leaves_out_the_budget_and_names_runs_apart() -> None:
    assert learning.variant_tag(["train.epochs=20", "train.val_every=5"]) == ""
    assert learning.variant_tag(["train.epochs=20", "train.kl_over=logits", "transformer_detach=true"]) == \
        "kl_over=logits+transformer_detach=true"
    names = {learning.run_name(s, "V", "cosine", seed, tag) for s in (0.0, 0.3) for seed in (0, 1) for tag in ("", "x=1")}
    assert len(names) == 8
    assert learning.run_name(0.3, "II", "cosine", 1, "") == "run-sys0.3-II-cosine-seed1"
    assert learning.run_name(0.0, "V", "cosine", 0, "a/b c") == "run-sys0-V-cosine-seed0-a_b_c"


def _result(row: str, seed: int, all_: float, seen: float, tag: str = "", setting: str = "s") -> dict:
    return {"setting": setting, "row": row, "logits": "cosine", "tag": tag, "seed": seed,
            "model": {"all": all_, "seen": seen}}


def test_group_results_over_seeds() -> None:
    groups = learning.group_results([_result("V", 0, 45.3, 51.7), _result("II", 1, 43.3, 50.9),
                                     _result("II", 0, 44.7, 51.0), _result("V", 1, 44.3, 50.7),
                                     _result("V", 0, 40.3, 46.6, tag="combine=mean")])
    assert [(g["row"], g["variant"], g["seeds"]) for g in groups] == [
        ("II", "cosine", "1,0"), ("V", "cosine", "0,1"), ("V", "cosine combine=mean", "0")]
    assert learning.fmt(groups[0]["all"]) == "44.0 ± 0.7"  # (43.3 + 44.7) / 2, (44.7 − 43.3) / 2
    assert learning.fmt(groups[1]["seen"]) == "51.2 ± 0.5"  # (51.7 + 50.7) / 2, (51.7 − 50.7) / 2
    assert learning.fmt(groups[2]["all"]) == "40.3"  # one seed: no spread


def test_group_results_apart_per_budget_and_named_by_overrides() -> None:
    def res(seed: int, all_: float, steps: int, overrides: list[str], tag: str) -> dict:
        return {**_result("V", seed, all_, all_ + 6, tag=tag), "steps": steps, "overrides": overrides}

    groups = learning.group_results([
        res(0, 45.3, 240, ["train.epochs=20"], ""), res(1, 44.3, 240, ["train.epochs=20"], ""),
        res(0, 51.3, 480, ["train.epochs=40", "train.val_every=10"], "steps480"),
        res(0, 51.1, 480, ["train.epochs=40", "train.kl_over=logits"], "steps480+kl_over=logits")])
    # the budget-only tag is the default at 480 steps; the largest budget comes first
    assert [(g["steps"], g["variant"], g["seeds"]) for g in groups] == [
        (480, "cosine", "0"), (480, "cosine kl_over=logits", "0"), (240, "cosine", "0,1")]
    assert learning.fmt(groups[2]["all"]) == "44.8 ± 0.5"


def test_per_class_deltas_against_row_ii_by_hand() -> None:
    def res(row: str, seed: int, wall: float, door: float) -> dict:
        return {**_result(row, seed, 0.0, 0.0), "steps": 480, "overrides": [],
                "model": {"all": 0.0, "seen": 0.0, "per_class_all": {"wall": wall, "door": door}}}

    groups = learning.group_results([res("II", 0, 0.50, 0.20), res("II", 1, 0.60, 0.30),
                                     res("V", 0, 0.58, 0.10), res("V", 1, 0.60, 0.20)])
    lines = learning.per_class_deltas(groups)
    # wall: II (50 + 60) / 2 = 55.0, V 59.0 → +4.0; door: II 25.0, V 15.0 → −10.0
    assert "| wall | 55.0 | +4.0 |" in lines and "| door | 25.0 | -10.0 |" in lines
    assert learning.per_class_deltas(groups[1:]) == []  # no row II: nothing to subtract


def test_budget_clash_refuses_a_run_of_another_budget(tmp_path: Path) -> None:
    run = tmp_path / "run-sys0-V-cosine-seed0"
    assert learning.budget_clash(run, 40, 12) is None  # nothing there yet
    run.mkdir()
    (run / "result.json").write_text('{"steps": 240}')
    assert learning.budget_clash(run, 20, 12) is None  # 20 x 12 = 240: the same budget
    msg = learning.budget_clash(run, 40, 12)
    assert msg is not None and "240" in msg and "480" in msg and "--tag steps480" in msg
    (run / "result.json").unlink()
    (run / "config.yaml").write_text("epochs: 20\n")  # begun, not finished: resuming it would mix schedules
    assert learning.budget_clash(run, 20, 12) is None
    assert "trained for 240" in (learning.budget_clash(run, 40, 12) or "")


def test_time_to_teacher_first_validation_past_each_goal() -> None:
    teacher = {"pseudo": {"all": 20.0, "seen": 40.0}, "refined": {"all": 30.0, "seen": 50.0}}
    pts = [{"step": 60, "train_seconds": 10.0, "all": 29.0, "seen": 41.0},
           {"step": 120, "train_seconds": 20.0, "all": 31.0, "seen": 39.0},
           {"step": 180, "train_seconds": 30.0, "all": 32.0, "seen": 42.0}]
    ttt = learning.time_to_teacher(pts, teacher)
    assert ttt["all > refined"]["step"] == 120 and ttt["seen > pseudo"]["step"] == 60 and ttt["both"]["step"] == 180
    miss = learning.time_to_teacher(pts[:1], teacher)["all > refined"]
    assert miss["not_reached"] and miss["gap_all"] == pytest.approx(-1.0) and miss["last_step"] == 60
