"""Issue 22: a read-only store and a disk that fills up during prepare are one line per failure that
names the file being written (never a temporary) and the fix.

As root, chmod does not stop writes, so the file system's answers are simulated: EROFS from
``os.open``/``unlink`` under the store (on a read-only mount even removing a missing file fails),
ENOSPC from ``os.fsync`` after the first writes."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from faultkit import cli, refused, snapshot

SYNTHETIC = ["--scenes", "2", "--views", "2", "--set", "synthetic.width=64", "--set", "synthetic.height=48",
             "--set", "synthetic.spacing=0.08"]


@pytest.fixture()
def read_only(store_copy: Path, monkeypatch) -> Path:
    root = str(store_copy.resolve())
    real_open, real_unlink = os.open, Path.unlink

    def under(path) -> bool:
        return os.path.abspath(os.fspath(path)).startswith(root)

    def ro_open(path, flags, *args, **kwargs):
        if under(path) and flags & (os.O_CREAT | os.O_WRONLY | os.O_RDWR):
            raise OSError(errno.EROFS, "Read-only file system", os.fspath(path))
        return real_open(path, flags, *args, **kwargs)

    def ro_unlink(self, missing_ok=False):
        if under(self):
            raise OSError(errno.EROFS, "Read-only file system", os.fspath(self))
        return real_unlink(self, missing_ok)

    monkeypatch.setattr(os, "open", ro_open)
    monkeypatch.setattr(Path, "unlink", ro_unlink)
    return store_copy


def test_a_read_only_store_names_the_output_and_the_fix(read_only: Path) -> None:
    before = snapshot(read_only)
    res = cli("oversegment", read_only)
    assert res.exit_code == 1 and "Traceback" not in res.output + res.stderr
    failed = [ln for ln in res.stderr.replace("\r", "\n").splitlines() if "failed room_" in ln]
    assert len(failed) == 2, res.stderr
    for ln in failed:
        assert "segments.npy: cannot write (Read-only file system)" in ln and "read-only file system:" in ln, ln
        assert ".tmp" not in ln and "report it" not in ln
    assert "read-only" in refused(cli("evaluate", read_only, "--split", "train"), "metrics", "cannot write")
    assert snapshot(read_only) == before


def test_a_full_disk_during_prepare_names_the_file(store_copy: Path, monkeypatch) -> None:
    real_fsync, calls = os.fsync, [0]

    def fills_up(fd: int) -> None:  # dataset.yaml, prepare_synthetic.yaml and one scene.json fit
        calls[0] += 1
        if calls[0] > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fills_up)
    res = cli("prepare", "synthetic", "--out", store_copy, "--overwrite", *SYNTHETIC)
    assert res.exit_code == 1 and "Traceback" not in res.output + res.stderr
    failed = [ln for ln in res.stderr.replace("\r", "\n").splitlines() if "failed room_" in ln]
    assert len(failed) == 2 and all("No space left" in ln and "free space" in ln for ln in failed), res.stderr
    assert "no points" not in res.stderr and "error:" not in res.stderr, res.stderr
