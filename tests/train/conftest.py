"""A toy store and a tiny stand-in 3D network, so training tests run in seconds on CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from hiclr.store import Pairs, Store

CLASSES = ["floor", "wall", "chair"]


class TinyNet(nn.Module):
    """Per-point MLP on (xyz, rgb): the PointNetwork interface without sparse convolutions."""

    def __init__(self, in_channels: int = 3, out_channels: int = 16, **_: object) -> None:
        super().__init__()
        self.cfg = {"arch": "tiny", "in_channels": in_channels, "out_channels": out_channels}
        self.mlp = nn.Sequential(nn.Linear(3 + in_channels, 32), nn.ReLU(), nn.Linear(32, out_channels))

    def forward(self, points: list[torch.Tensor], feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.mlp(torch.cat([p, f], 1)) for p, f in zip(points, feats)]

    def forward_rows(self, points: list[torch.Tensor], feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        rows = torch.cat(self.forward(points, feats))
        return rows, torch.arange(rows.shape[0]), [len(p) for p in points]

    def arch_config(self) -> dict:
        return dict(self.cfg)

    @classmethod
    def from_config(cls, cfg: dict) -> TinyNet:
        return cls(cfg["in_channels"], cfg["out_channels"])


def make_scene(store: Store, sid: str, seed: int, n: int = 300, noise: float = 0.2) -> None:
    rng = np.random.default_rng(seed)
    coord = rng.uniform(0, 3, size=(n, 3)).astype(np.float32)
    label = np.minimum((coord[:, 0] // 1).astype(np.int16), 2)
    color = np.stack([label * 100, 255 - label * 100, np.full(n, 50)], 1).astype(np.uint8)
    segments = (np.floor(coord[:, 0] * 2) * 10 + np.floor(coord[:, 1])).astype(np.int32)
    sc = store.scene(sid)
    sc.write("coord", coord, "test", "x")
    sc.write("color", color, "test", "x")
    sc.write("label", label, "test", "x")
    sc.write("segments", segments, "test", "x")
    sc.write_views(np.tile(np.eye(3, dtype=np.float32), (2, 1, 1)), np.tile(np.eye(4, dtype=np.float32), (2, 1, 1)),
                   [np.zeros((4, 4, 3), np.uint8)] * 2, None, "test", "x")
    seen = np.flatnonzero(rng.random(n) < 0.8)  # 20 % of the points are seen in no view
    pts = np.concatenate([seen, seen])
    lab = label[pts].astype(np.int16)
    flip = rng.random(len(pts)) < noise
    lab[flip] = rng.integers(0, 3, flip.sum())
    view = np.repeat([0, 1], len(seen))
    pairs = Pairs(pts, view, lab, np.ones(len(pts)))
    sc.write_pairs("pairs", pairs, "test", "x")
    # "refined": the ground truth itself, so stage intraset is visibly different from the baseline
    sc.write_pairs("refined", pairs.with_labels(label[pts]), "test", "x")


@pytest.fixture()
def toy_store(tmp_path: Path) -> Store:
    ids = ["s0", "s1", "s2", "v0"]
    store = Store.create(tmp_path / "store", "toy", CLASSES, splits={"train": ids[:3], "val": ids[3:]})
    for i, sid in enumerate(ids):
        make_scene(store, sid, seed=i)
    return store


@pytest.fixture()
def tiny_net(monkeypatch: pytest.MonkeyPatch) -> type[TinyNet]:
    """Make training build TinyNet instead of hiclr.nn.PointNetwork."""
    from hiclr.train import loop

    monkeypatch.setattr(loop, "build_network", lambda cfg, out_channels: TinyNet(cfg.in_channels, out_channels))
    monkeypatch.setattr("hiclr.model_file.build_network", TinyNet.from_config)  # exports are checked against it
    return TinyNet
