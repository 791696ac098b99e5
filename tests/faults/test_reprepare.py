"""Issue 22: rerunning prepare to repair one damaged array keeps the scene's later outputs (pairs,
segments) when the prepared arrays come back byte-identical, and says what it removed when they do
not."""

from __future__ import annotations

from pathlib import Path

from faultkit import cli

SYNTHETIC = ["--scenes", "2", "--set", "synthetic.width=64", "--set", "synthetic.height=48",
             "--set", "synthetic.spacing=0.08"]


def _later_steps(store: Path) -> dict[str, bytes]:
    assert cli("pseudolabel", store, "--labeler", "oracle").exit_code == 0
    assert cli("oversegment", store).exit_code == 0
    scene = store / "scenes" / "room_0000"
    return {name: (scene / name).read_bytes() for name in ("pairs.npz", "segments.npy")}


def test_repairing_a_damaged_array_keeps_the_later_outputs(store_copy: Path) -> None:
    later = _later_steps(store_copy)
    scene = store_copy / "scenes" / "room_0000"
    normal = scene / "normal.npy"
    normal.write_bytes(normal.read_bytes()[:-40])  # damaged: prepare redoes the scene
    res = cli("prepare", "synthetic", "--out", store_copy, "--views", "2", *SYNTHETIC)
    assert res.exit_code == 0 and "1 done, 1 skipped" in res.output, res.output + res.stderr
    assert "removed" not in res.stderr
    assert {name: (scene / name).read_bytes() for name in later} == later
    assert not list((store_copy / "scenes").glob(".*later*"))
    for step in (["pseudolabel", store_copy, "--labeler", "oracle"], ["oversegment", store_copy]):
        res = cli(*step)
        assert res.exit_code == 0 and "0 done, 2 skipped" in res.output, res.output  # still up to date


def test_a_changed_scene_says_which_outputs_it_removed(store_copy: Path) -> None:
    _later_steps(store_copy)
    res = cli("prepare", "synthetic", "--out", store_copy, "--views", "1", *SYNTHETIC)  # other views
    assert res.exit_code == 0 and "2 done" in res.output, res.output + res.stderr
    notes = [ln for ln in res.stderr.splitlines() if "note: scene room_0000" in ln]
    assert len(notes) == 1, res.stderr
    assert "(views)" in notes[0] and "pairs, segments were removed" in notes[0], notes[0]
    assert "hiclr oversegment" in notes[0] and "hiclr pseudolabel" in notes[0]
    assert not (store_copy / "scenes/room_0000/pairs.npz").exists()
