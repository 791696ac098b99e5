"""Issue 22: ScanNet frames without a usable pose. A scan whose every pose is -inf fails by name
instead of becoming a scene with 0 views; a frame whose pose/<i>.txt is missing is counted as
dropped, like a frame whose pose is -inf."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from faultkit import cli, prepare_args, scan


def test_a_scan_whose_every_pose_is_invalid_fails_by_name(tmp_path: Path) -> None:
    raw, out = tmp_path / "raw", tmp_path / "store"
    listing = scan(raw)
    for pose in (raw / "scene0999_00" / "pose").iterdir():
        np.savetxt(pose, np.full((4, 4), -np.inf))
    res = cli(*prepare_args(raw, out, listing))
    assert res.exit_code == 1, res.output + res.stderr
    failed = [ln for ln in res.stderr.replace("\r", "\n").splitlines() if "failed scene0999_00" in ln]
    assert len(failed) == 1, res.stderr
    assert "pose/<i>.txt" in failed[0] and "all 3 frames" in failed[0] and "split list" in failed[0], failed[0]


def test_a_missing_pose_file_is_counted_as_dropped(tmp_path: Path) -> None:
    raw, out = tmp_path / "raw", tmp_path / "store"
    listing = scan(raw)
    (raw / "scene0999_00" / "pose" / "1.txt").unlink()
    res = cli(*prepare_args(raw, out, listing))
    assert res.exit_code == 0, res.output + res.stderr
    assert "views stored: 2; frames dropped for invalid poses: 1" in res.output, res.output
