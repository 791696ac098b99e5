"""Issue 11, items 4 and 5: a diverged run stops with the epoch and the loss term; distill never
exports a model that cannot load (edited config, non-finite weights)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from faultkit import CLASSES, cli, refused, snapshot

from hiclr.errors import HiclrError


class NaNNet(torch.nn.Module):
    """The PointNetwork interface, giving NaN features (a diverged network)."""

    def __init__(self, out_channels: int) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))
        self.out_channels = out_channels

    def forward_rows(self, points, feats):
        n = sum(len(p) for p in points)
        rows = self.w * torch.full((n, self.out_channels), float("nan"))
        return rows, torch.arange(n), [len(p) for p in points]

    def forward(self, points, feats):
        rows, index, sizes = self.forward_rows(points, feats)
        return list(torch.split(rows[index], sizes))


def test_a_non_finite_loss_names_the_epoch_and_the_term(store_copy: Path, tmp_path: Path, monkeypatch) -> None:
    from hiclr.train import loop

    assert cli("pseudolabel", store_copy, "--labeler", "oracle").exit_code == 0
    monkeypatch.setattr(loop, "build_network", lambda cfg, out_channels: NaNNet(out_channels))
    res = cli("train", "--data", store_copy, "--out", tmp_path / "run", "--stages", "baseline", "--epochs", "1",
              "--device", "cpu", "--set", "train.val_split=", "--set", "train.workers=0")
    line = refused(res, "epoch 1", "ce loss term is nan", "train.lr")
    assert "training stopped" in line
    assert not (tmp_path / "run/ckpt/last.pt").exists()


def _run(tmp_path: Path, data: Path, nan: bool = False, arch: str = "MinkUNet14A") -> Path:
    """A run folder as train leaves it: config.yaml, run.json, ckpt/last.pt (a MinkUNet14A)."""
    from hiclr.nn import PointNetwork
    from hiclr.train.checkpoint import save_checkpoint
    from hiclr.train.config import TrainConfig

    run = tmp_path / "run"
    (run / "ckpt").mkdir(parents=True)
    torch.manual_seed(0)
    net = PointNetwork("MinkUNet14A", in_channels=3, out_channels=8, voxel_size=0.2, backend="torch")
    state = net.state_dict()
    if nan:
        next(v for v in state.values() if v.is_floating_point())[0] = float("inf")
    cfg = TrainConfig(arch=arch, voxel_size=0.2, stages=[])
    (run / "config.yaml").write_text(yaml.safe_dump(cfg.__dict__))
    (run / "run.json").write_text(json.dumps({"data": str(data), "classes": CLASSES,
                                              "anchors": {"source": "random"}}))
    save_checkpoint(run / "ckpt/last.pt", {"net": state, "text": torch.randn(len(CLASSES), 8), "epoch": 3})
    return run


def test_distill_refuses_non_finite_weights(tmp_path: Path) -> None:
    run = _run(tmp_path, tmp_path, nan=True)
    before = snapshot(run)
    refused(cli("distill", run, "--export", run / "model.pt"), "last.pt", "non-finite", "lower train.lr")
    assert snapshot(run) == before and not (run / "model.pt").exists()


def test_distill_refuses_a_config_that_disagrees_with_the_checkpoint(tmp_path: Path) -> None:
    run = _run(tmp_path, tmp_path, arch="MinkUNet18A")  # arch edited after training
    refused(cli("distill", run, "--export", run / "model.pt"), "last.pt", "config.yaml", "MinkUNet18A", "restore")
    assert not (run / "model.pt").exists()
    # the same run with its own arch exports, and the model loads
    run2 = _run(tmp_path / "ok", tmp_path)
    res = cli("distill", run2, "--export", run2 / "model.pt")
    assert res.exit_code == 0, res.output + res.stderr
    from hiclr.model_file import load_model

    assert load_model(run2 / "model.pt").network() is not None


def test_a_scene_beyond_the_voxel_key_range_is_named() -> None:
    """Issue 11: the voxel-range error names the scene (it used to come from deep in the sparse backend)."""
    from types import SimpleNamespace

    import numpy as np
    import pytest

    from hiclr.errors import HiclrError
    from hiclr.nn.sparse.coords import MARGIN, H
    from hiclr.train.data import check_voxel_range

    scene = SimpleNamespace(path=Path("store/scenes/far_away"), id="far_away")
    limit = (H - MARGIN) * 0.05  # metres that 5 cm voxel keys reach
    check_voxel_range(scene, np.array([[limit - 1.0, 0.0, 0.0]], np.float32), 0.05)  # inside: fine
    with pytest.raises(HiclrError, match="far_away.*beyond") as err:
        check_voxel_range(scene, np.array([[0.0, limit + 1.0, 0.0]], np.float32), 0.05)
    assert "local origin" in err.value.hint


def test_distill_refuses_a_device_that_is_not_here(tmp_path: Path, store_copy: Path) -> None:
    run = _run(tmp_path, store_copy)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump({**cfg, "stages": ["intraset", "intrascene", "interscene"]}))
    before = snapshot(run)
    refused(cli("distill", run, "--epochs", "1", "--device", "cuda"), "train.device", "CUDA is not available")
    assert snapshot(run) == before


def test_a_pickled_checkpoint_is_one_clear_line(tmp_path) -> None:
    """A checkpoint that is a raw pickle (or pickled objects) is refused without running it, in one
    line that says what the file holds and without torch's weights_only advice."""
    import argparse
    import pickle

    from hiclr.train.checkpoint import load_checkpoint

    for name, obj in (("raw.pt", {"net": [1, 2, 3]}), ("obj.pt", argparse.Namespace(a=1))):
        path = tmp_path / name
        path.write_bytes(pickle.dumps(obj, protocol=4))
        with pytest.raises(HiclrError) as err:
            load_checkpoint(path)
        text = str(err.value)
        assert str(path) in text and "weights_only" not in text and "\n" not in text and len(text) < 400, text
        assert "plain Python pickle" in text  # what the file holds, read from its first bytes
