"""`hiclr distill`: the feedback phase resumed from a checkpoint, and the 3D-only export."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from hiclr.distill import distill
from hiclr.model_file import load_model
from hiclr.train.config import TrainConfig
from hiclr.train.loop import train


def test_feedback_phase_then_export(toy_store, tiny_net, tmp_path) -> None:
    cfg = TrainConfig(epochs=2, batch_size=3, samples=16, correlation_from=2, kl_from=21, lr=0.05,
                      stages=["intraset", "intrascene", "interscene"], transformer_layers=1, transformer_heads=2, transformer_mlp_ratio=1.0,
                      device="cpu", val_split="")
    train(toy_store.root, tmp_path / "run", cfg)
    res = distill(tmp_path / "run", epochs=1, export=tmp_path / "model.pt")
    rows = list(csv.DictReader(Path(tmp_path / "run/log.csv").read_text().splitlines()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert not rows[1]["kl"] and rows[2]["kl"]  # L_kl only in the distillation epoch
    assert res.epoch == 3 and res.checkpoint.name == "last.pt"

    blob = torch.load(tmp_path / "model.pt", weights_only=True)
    ckpt = torch.load(tmp_path / "run/ckpt/last.pt", weights_only=True)
    assert set(blob["weights"]) == set(ckpt["net"])  # the 3D network, and nothing else
    assert all(torch.equal(blob["weights"][k], ckpt["net"][k]) for k in ckpt["net"])
    m = load_model(tmp_path / "model.pt")
    assert m.classes == toy_store.classes and torch.equal(m.text, ckpt["text"])
    assert m.anchors == "random" and m.clip_model is None
    assert m.arch == {"arch": "MinkUNet14A", "in_channels": 3, "out_channels": 512, "voxel_size": 0.05, "backend": "auto"}
