"""train.ema: the moving average of the network's weights, by hand, across a resume, and exported."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hiclr.train.config import TrainConfig
from hiclr.train.ema import WeightAverage, ema_decay
from hiclr.train.loop import train


def test_decay_ramps_up_to_its_setting() -> None:
    assert ema_decay(0.99, 0) == pytest.approx(0.1)  # (1 + 0) / (10 + 0)
    assert ema_decay(0.99, 8) == pytest.approx(0.5)  # 9 / 18
    assert ema_decay(0.99, 10_000) == 0.99


def test_update_by_hand() -> None:
    net = nn.Sequential(nn.Linear(2, 1), nn.BatchNorm1d(1))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
    avg = WeightAverage(net, decay=0.5)
    with torch.no_grad():
        net[0].weight.fill_(3.0)
        net[1].running_mean.fill_(4.0)
    net[1].num_batches_tracked.fill_(7)
    avg.update(net, step=100)  # d = 0.5: halfway
    assert torch.equal(avg.net[0].weight, torch.full((1, 2), 2.0))
    assert torch.equal(avg.net[1].running_mean, torch.full((1,), 2.0))  # floating buffers are averaged too
    assert int(avg.net[1].num_batches_tracked) == 7  # integer buffers are copied
    assert not any(p.requires_grad for p in avg.net.parameters()) and not avg.net.training


def _cfg(**kw: object) -> TrainConfig:
    base: dict[str, object] = {"epochs": 3, "batch_size": 2, "samples": 32, "ce_from": 1, "correlation_from": 2,
                               "kl_from": 3, "lr": 0.05, "transformer_layers": 1, "transformer_heads": 2,
                               "transformer_mlp_ratio": 1.0, "seed": 3, "device": "cpu", "ema": 0.9}
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_ema_survives_a_resume_and_is_what_is_exported(toy_store, tiny_net, tmp_path) -> None:
    from hiclr.distill import export_model
    from hiclr.model_file import load_model

    torch.set_num_threads(1)
    cfg = _cfg()
    train(toy_store.root, tmp_path / "full", cfg)

    class Killed(Exception):
        pass

    def kill(epoch: int) -> None:
        if epoch == 2:
            raise Killed

    with pytest.raises(Killed):
        train(toy_store.root, tmp_path / "part", cfg, on_epoch_end=kill)
    train(toy_store.root, tmp_path / "part", cfg, resume=True)
    a = torch.load(tmp_path / "full/ckpt/last.pt", weights_only=True)
    b = torch.load(tmp_path / "part/ckpt/last.pt", weights_only=True)
    for k in a["net_ema"]:
        assert torch.equal(a["net_ema"][k], b["net_ema"][k]), k
    assert any(not torch.equal(a["net_ema"][k], a["net"][k]) for k in a["net"])  # an average, not a copy
    export_model(tmp_path / "full", tmp_path / "m.pt", "last")
    model = load_model(tmp_path / "m.pt")
    assert model.extra["weights"] == "ema"
    for k, v in a["net_ema"].items():
        assert torch.equal(model.weights[k], v), k
