"""Issue 11: the store never loses or silently skips anything — missing manifests and scenes are
named, truncated outputs are redone, concurrent steps keep each other's records, interrupted
writes leave nothing behind, files follow the umask, a full disk is one line."""

from __future__ import annotations

import errno
import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from faultkit import cli, refused, snapshot
from hiclr.store import Store, atomic_write_bytes


def test_a_scene_without_scene_json_is_named(store_copy: Path) -> None:
    (store_copy / "scenes/room_0000/scene.json").unlink()
    before = snapshot(store_copy)
    refused(cli("oversegment", store_copy), "room_0000/scene.json", "prepare")
    refused(cli("evaluate", store_copy, "--split", "train"), "room_0000", "no scene.json")
    assert snapshot(store_copy) == before


def test_a_split_entry_without_its_scene_is_named(store_copy: Path, tmp_path: Path) -> None:
    shutil.rmtree(store_copy / "scenes/room_0001")  # the val room
    before = snapshot(store_copy)
    refused(cli("evaluate", store_copy, "--split", "val"), "dataset.yaml", "room_0001", "not in the store")
    refused(cli("pseudolabel", store_copy, "--labeler", "oracle", "--split", "val"), "room_0001")
    assert snapshot(store_copy) == before


def test_a_truncated_output_is_redone_not_skipped(store_copy: Path) -> None:
    res = cli("pseudolabel", store_copy, "--labeler", "oracle")
    assert res.exit_code == 0 and "2 done" in res.output, res.output + res.stderr
    pairs = store_copy / "scenes/room_0000/pairs.npz"
    good = pairs.read_bytes()
    pairs.write_bytes(good[: len(good) // 2])
    res = cli("pseudolabel", store_copy, "--labeler", "oracle")
    assert res.exit_code == 0 and "1 done, 1 skipped" in res.output, res.output
    assert pairs.read_bytes() == good
    coord = store_copy / "scenes/room_0000/coord.npy"  # and prepare notices its own outputs
    coord.write_bytes(coord.read_bytes()[:-12])
    scene = Store.open(store_copy).scene("room_0000")
    assert scene.fingerprint("coord") is None and "bytes" in scene.problem("coord")


def _set_many(root: str, key: str, barrier) -> None:
    scene = Store.open(root).scene("room_0000")
    barrier.wait()
    for i in range(40):
        scene.set_meta(**{f"{key}{i}": i})


def test_two_steps_at_once_keep_each_others_records(store_copy: Path) -> None:
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_set_many, args=(str(store_copy), k, barrier)) for k in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    meta = json.loads((store_copy / "scenes/room_0000/scene.json").read_text())["meta"]
    assert all(f"{k}{i}" in meta for k in "ab" for i in range(40))
    assert meta["source"] == "synthetic"  # what prepare wrote is kept too


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    stale = tmp_path / f".a.npy.{host}.{dead.pid}.0123abcd.tmp"
    live = tmp_path / f".a.npy.{host}.{os.getpid()}.0123abcd.tmp"  # a writer still at work
    other = tmp_path / ".b.npy.x.1.0123abcd.tmp"  # another file's
    for p in (stale, live, other):
        p.write_bytes(b"partial")
    atomic_write_bytes(tmp_path / "a.npy", b"data")
    assert not stale.exists() and live.exists() and other.exists()


def test_files_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "shared.bin", b"x")
        assert (tmp_path / "shared.bin").stat().st_mode & 0o777 == 0o644
        os.umask(0o002)
        atomic_write_bytes(tmp_path / "shared.bin", b"y")
        assert (tmp_path / "shared.bin").stat().st_mode & 0o777 == 0o664
    finally:
        os.umask(old)


def test_a_full_disk_is_one_line_naming_the_file(store_copy: Path, tmp_path: Path, monkeypatch) -> None:
    before = snapshot(store_copy)

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    line = refused(cli("train", "--data", store_copy, "--out", tmp_path / "run"), "cannot write", "No space left",
                   "free space")
    assert "Traceback" not in line
    res = cli("oversegment", store_copy)
    assert res.exit_code == 1 and "Traceback" not in res.output + res.stderr
    failed = [ln for ln in res.stderr.splitlines() if "failed room_" in ln]
    assert len(failed) == 2 and all("segments.npy" in ln and "free space" in ln for ln in failed)
    monkeypatch.undo()
    assert snapshot(store_copy) == before
    assert not list(store_copy.rglob("*.tmp"))


def test_kill_9_then_rerun_gives_identical_arrays(room_store, tmp_path: Path) -> None:
    out = tmp_path / "store"
    args = [sys.executable, "-m", "hiclr_cli.main", "prepare", "synthetic", "--out", str(out), "--scenes", "2",
            "--views", "2", "--set", "synthetic.width=64", "--set", "synthetic.height=48",
            "--set", "synthetic.spacing=0.08"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while not (out / "scenes/room_0000/views/cam_to_world.npy").exists() and time.time() - t0 < 120:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    res = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert not list(out.rglob("*.tmp"))
    ref = Store.open(room_store.root)
    for sid in ref.scene_ids():
        for name in ("coord", "color", "normal", "label", "faces"):
            np.testing.assert_array_equal(Store.open(out).scene(sid).read(name), ref.scene(sid).read(name))
        np.testing.assert_array_equal(Store.open(out).scene(sid).cam_to_world(), ref.scene(sid).cam_to_world())


def test_corrupt_arrays_and_bad_poses_are_named(store_copy: Path) -> None:
    coord = store_copy / "scenes/room_0000/coord.npy"
    coord.write_bytes(coord.read_bytes()[:-7])
    poses = store_copy / "scenes/room_0001/views/cam_to_world.npy"
    T = np.load(poses)
    T[1, 0, 3] = np.nan
    np.save(poses, T)
    res = cli("pseudolabel", store_copy, "--labeler", "oracle")
    assert res.exit_code == 1 and "Traceback" not in res.output + res.stderr
    lines = {ln.split(":")[0].strip(): ln for ln in res.stderr.splitlines() if "failed room_" in ln}
    assert str(coord) in lines["failed room_0000"] and "--overwrite" in lines["failed room_0000"]
    assert str(poses) in lines["failed room_0001"] and "non-finite" in lines["failed room_0001"]
    assert not (store_copy / "scenes/room_0000/pairs.npz").exists()
