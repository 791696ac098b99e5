"""Issue 22, items 3 and 4: a view whose intrinsics or pose cannot project (all zero, NaN) is
refused when a store is written and when a step reads it, naming the scene and view; a depth frame
whose size does not match its intrinsics is refused naming the file."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from faultkit import H, W, cli, prepare_args, scan
from PIL import Image


def _set_view(store: Path, name: str, view: int, value: float) -> tuple[str, Path]:
    sid = min(p.name for p in (store / "scenes").iterdir())
    path = store / "scenes" / sid / "views" / f"{name}.npy"
    arr = np.load(path)
    arr[view] = value
    np.save(path, arr)  # same shape, same size: only the values are wrong
    return sid, path


@pytest.mark.parametrize("name, value, says", [("intrinsics", 0.0, "fx=0, fy=0"), ("intrinsics", np.nan, "non-finite"),
                                               ("cam_to_world", 0.0, "last row"), ("cam_to_world", np.inf, "non-finite")])
def test_pseudolabel_refuses_a_view_that_cannot_project(store_copy: Path, name: str, value: float, says: str) -> None:
    sid, path = _set_view(store_copy, name, 1, value)
    t0 = time.monotonic()
    res = cli("pseudolabel", store_copy, "--labeler", "oracle")
    assert time.monotonic() - t0 < 60  # was: minutes of ray casting NaN rays
    assert res.exit_code == 1, (res.output, res.stderr)
    failed = [ln for ln in res.stderr.splitlines() if f"failed {sid}:" in ln]
    assert len(failed) == 1 and str(path) in failed[0] and f"scene {sid}" in failed[0] and "view 1 has" in failed[0]
    assert says in failed[0] and "--overwrite" in failed[0]
    assert not (store_copy / "scenes" / sid / "pairs.npz").exists()


def test_a_store_is_not_written_with_degenerate_intrinsics(tmp_path: Path) -> None:
    from hiclr.errors import HiclrError
    from hiclr.store import Store

    scene = Store.create(tmp_path, "t", ["a"]).scene("s0")
    scene.write("coord", np.zeros((4, 3), np.float32), "test", "x")
    K = np.tile(np.eye(3, dtype=np.float32), (3, 1, 1))
    K[2] = 0
    with pytest.raises(HiclrError, match=r"writing views of scene s0: view 2 has intrinsics with focal lengths fx=0"):
        scene.write_views(K, np.tile(np.eye(4), (3, 1, 1)), [np.zeros((4, 4, 3), np.uint8)] * 3, None, "t", "x")
    assert not (scene.path / "views").exists()


def test_prepare_refuses_zero_depth_intrinsics(tmp_path: Path) -> None:
    listing = scan(tmp_path / "raw")
    kd = tmp_path / "raw/scene0999_00/intrinsic/intrinsic_depth.txt"
    np.savetxt(kd, np.zeros((4, 4)))
    res = cli(*prepare_args(tmp_path / "raw", tmp_path / "out", listing))
    assert res.exit_code == 1
    failed = [ln for ln in res.stderr.splitlines() if "failed scene0999_00" in ln]
    assert len(failed) == 1 and str(kd) in failed[0], res.stderr


@pytest.mark.parametrize("size", [(W // 2, H // 2), (4 * W, 4 * H)])
def test_prepare_refuses_depth_frames_of_another_size_than_their_intrinsics(tmp_path: Path, size) -> None:
    listing = scan(tmp_path / "raw")
    for k in range(3):  # every depth frame re-exported at another size; intrinsics still for 160x120
        png = tmp_path / f"raw/scene0999_00/depth/{k}.png"
        Image.fromarray(np.full(size[::-1], 2000, np.uint16)).save(png)
    res = cli(*prepare_args(tmp_path / "raw", tmp_path / "out", listing))
    assert res.exit_code == 1, res.output
    failed = [ln for ln in res.stderr.splitlines() if "failed scene0999_00" in ln]
    assert len(failed) == 1 and "depth/0.png" in failed[0] and f"{size[0]}x{size[1]}" in failed[0]
    assert "intrinsic_depth.txt" in failed[0] and "0 done" in res.output


def test_prepare_refuses_one_depth_frame_of_another_size(tmp_path: Path) -> None:
    listing = scan(tmp_path / "raw")
    png = tmp_path / "raw/scene0999_00/depth/2.png"
    Image.fromarray(np.full((H // 2, W // 2), 2000, np.uint16)).save(png)
    res = cli(*prepare_args(tmp_path / "raw", tmp_path / "out", listing))
    assert res.exit_code == 1
    failed = [ln for ln in res.stderr.splitlines() if "failed scene0999_00" in ln]
    assert len(failed) == 1 and str(png) in failed[0] and f"{W // 2}x{H // 2}" in failed[0]


def test_the_store_refuses_depth_off_its_colour_grid(tmp_path: Path) -> None:
    from hiclr.errors import HiclrError
    from hiclr.store import Store

    scene = Store.create(tmp_path, "t", ["a"]).scene("s0")
    scene.write("coord", np.zeros((4, 3), np.float32), "test", "x")
    with pytest.raises(HiclrError, match="depth frame 0 is 4x3 but its colour frame is 8x6"):
        scene.write_views(np.eye(3)[None], np.eye(4)[None], [np.zeros((6, 8, 3), np.uint8)],
                          [np.ones((3, 4), np.float32)], "t", "x")
