"""Issue 22, item 5 and the moved-store item: a killed ``distill --epochs N`` resumes, when the same
command is run again, to the same last epoch and the same weights as an uninterrupted run; a run
whose store moved is distilled with ``--data``."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
import torch

from faultkit import cli, refused

_spec = importlib.util.spec_from_file_location("train_toys", Path(__file__).resolve().parent.parent / "train" / "conftest.py")
toys = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(toys)


@pytest.fixture()
def base_run(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    """A toy store and a 2-epoch run with the transformers (TinyNet stands in for the 3D network)."""
    from hiclr.store import Store
    from hiclr.train import loop
    from hiclr.train.config import TrainConfig

    monkeypatch.setattr(loop, "build_network", lambda cfg, out_channels: toys.TinyNet(cfg.in_channels, out_channels))
    monkeypatch.setattr("hiclr.model_file.build_network", toys.TinyNet.from_config)
    store = Store.create(tmp_path / "store", "toy", toys.CLASSES, splits={"train": ["s0", "s1"]})
    for i, sid in enumerate(["s0", "s1"]):
        toys.make_scene(store, sid, seed=i, n=120)
    cfg = TrainConfig(epochs=2, batch_size=2, samples=16, correlation_from=2, kl_from=21, lr=0.05, workers=0,
                      stages=["intraset", "intrascene", "interscene"], transformer_layers=1, transformer_heads=2,
                      transformer_mlp_ratio=1.0, device="cpu", val_split="", deterministic=True)
    loop.train(store.root, tmp_path / "base", cfg)
    return store.root, tmp_path / "base"


def _killed_after(epoch: int, monkeypatch):
    """Make distill's training raise KeyboardInterrupt (a kill) once ``epoch``'s checkpoint is written."""
    import hiclr.distill as distill_module

    real = distill_module.train

    def train(*a, **k):
        def stop(e: int) -> None:
            if e == epoch:
                raise KeyboardInterrupt
        return real(*a, **k, on_epoch_end=stop)

    monkeypatch.setattr(distill_module, "train", train)
    return lambda: monkeypatch.setattr(distill_module, "train", real)


def test_a_killed_distill_resumes_to_the_same_end(base_run, tmp_path: Path, monkeypatch) -> None:
    from hiclr.distill import distill

    _, base = base_run
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    shutil.copytree(base, whole)
    shutil.copytree(base, killed)
    distill(whole, epochs=2, export=whole / "model.pt")

    restore = _killed_after(3, monkeypatch)  # the first new epoch is saved, then the process dies
    with pytest.raises(KeyboardInterrupt):
        distill(killed, epochs=2, export=killed / "model.pt")
    restore()
    assert torch.load(killed / "ckpt/last.pt", weights_only=True)["epoch"] == 3
    res = distill(killed, epochs=2, export=killed / "model.pt")  # the same command again
    assert res.epoch == 4  # was 5: N more epochs from the interrupted one
    a, b = (torch.load(r / "ckpt/last.pt", weights_only=True) for r in (whole, killed))
    assert a["epoch"] == b["epoch"] == 4
    for k in a["net"]:
        torch.testing.assert_close(a["net"][k], b["net"][k], rtol=1e-6, atol=1e-7)

    again = distill(killed, epochs=2)  # finished: the same command trains nothing
    assert again.trained.skipped and torch.load(killed / "ckpt/last.pt", weights_only=True)["epoch"] == 4
    more = distill(killed, epochs=1)  # another N: a new phase from the last checkpoint
    assert more.trained.epochs_done == 5


def test_distill_of_a_moved_store_takes_data(base_run, tmp_path: Path) -> None:
    store, base = base_run
    moved = tmp_path / "moved_store"
    store.rename(moved)
    refused(cli("distill", base, "--epochs", "1"), str(store), "moved", "--data")
    res = cli("distill", base, "--epochs", "1", "--data", moved, "--export", base / "model.pt")
    assert res.exit_code == 0, (res.output, res.stderr)
    assert "distilled to epoch 3" in res.output
    refused(cli("distill", base, "--epochs", "1", "--data", tmp_path / "nowhere"), "nowhere", "--data")
