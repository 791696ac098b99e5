"""Issue 22: a scene that cannot be read in a DataLoader worker reaches the user as its own one-line
error (file and fix), not as "Caught HiclrError in DataLoader worker process 0. Original Traceback"."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from faultkit import cli, refused

_spec = importlib.util.spec_from_file_location("train_toys", Path(__file__).resolve().parent.parent / "train" / "conftest.py")
toys = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(toys)


@pytest.mark.parametrize("workers", [1, 0])
def test_a_worker_error_is_reraised_as_itself(tmp_path: Path, monkeypatch, workers: int) -> None:
    from hiclr.store import Store
    from hiclr.train import loop

    monkeypatch.setattr(loop, "build_network", lambda cfg, out_channels: toys.TinyNet(cfg.in_channels, out_channels))
    store = Store.create(tmp_path / "store", "toy", toys.CLASSES, splits={"train": ["s0", "s1"]})
    for i, sid in enumerate(["s0", "s1"]):
        toys.make_scene(store, sid, seed=i, n=60)
        store.scene(sid).write("normal", np.tile(np.float32([0, 0, 1]), (60, 1)), "test", "x")
    bad = store.scene("s1").path / "normal.npy"
    normal = np.load(bad)
    normal[7] = np.nan
    np.save(bad, normal)  # same size: only the values are wrong
    res = cli("train", "--data", store.root, "--out", tmp_path / "run", "--stages", "baseline", "--epochs", "1",
              "--device", "cpu", "--set", "train.val_split=", "--set", f"train.workers={workers}",
              "--set", "train.input=color_normal", "--set", "train.batch_size=1")
    line = refused(res, str(bad), "non-finite", "--overwrite")
    assert "DataLoader" not in line and "Original Traceback" not in line


def test_ctrl_c_in_train_names_the_command_that_resumes(tmp_path: Path, monkeypatch) -> None:
    from hiclr.train import loop

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "_train", interrupted)
    res = cli("train", "--data", tmp_path, "--out", tmp_path / "run", "--stages", "baseline")
    assert res.exit_code == 130
    assert "--resume added" in res.stderr and "rerun the same command to resume" not in res.stderr
    res = cli("train", "--data", tmp_path, "--out", tmp_path / "run", "--resume")  # already resuming: the same command
    assert res.exit_code == 130 and "rerun the same command to resume" in res.stderr
