"""Training end to end on a toy store with a stand-in network: run folder, checkpoints, resume."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from hiclr.errors import HiclrError
from hiclr.train.config import TrainConfig
from hiclr.train.loop import train


def _cfg(**kw: object) -> TrainConfig:
    base: dict[str, object] = {"epochs": 4, "batch_size": 2, "samples": 32, "ce_from": 1, "correlation_from": 2, "kl_from": 3,
                               "lr": 0.05, "transformer_layers": 1, "transformer_heads": 2, "transformer_mlp_ratio": 1.0,
                               "seed": 3, "device": "cpu"}
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


class Killed(Exception):
    pass


def test_resume_gives_the_same_weights(toy_store, tiny_net, tmp_path) -> None:
    torch.set_num_threads(1)
    cfg = _cfg(epochs=3, val_split="")  # killed after epoch 2; epoch 3 has every loss term
    full = train(toy_store.root, tmp_path / "full", cfg)
    assert full.epochs_done == 3

    def kill(epoch: int) -> None:
        if epoch == 2:
            raise Killed

    with pytest.raises(Killed):
        train(toy_store.root, tmp_path / "part", cfg, on_epoch_end=kill)
    with pytest.raises(HiclrError, match="already there"):
        train(toy_store.root, tmp_path / "part", cfg)  # unfinished: needs --resume
    train(toy_store.root, tmp_path / "part", cfg, resume=True)

    a = torch.load(tmp_path / "full/ckpt/last.pt", weights_only=True)
    b = torch.load(tmp_path / "part/ckpt/last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 3
    for part in ("net", "intra", "inter"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k} differs after resume"
    rows = list(csv.DictReader(Path(tmp_path / "part/log.csv").read_text().splitlines()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"] and rows[2]["kl"]
    again = train(toy_store.root, tmp_path / "full", cfg)  # finished with the same settings: nothing to do
    assert again.skipped and again.epochs_done == 3


def test_run_folder_and_log_terms(toy_store, tiny_net, tmp_path) -> None:
    res = train(toy_store.root, tmp_path / "run", _cfg(epochs=3))
    run = tmp_path / "run"
    for f in ("config.yaml", "env.json", "run.json", "log.csv", "ckpt/last.pt", "ckpt/best.pt", "anchors.npy"):
        assert (run / f).is_file(), f
    rows = list(csv.DictReader(Path(run / "log.csv").read_text().splitlines()))
    assert rows[0]["ce"] and not rows[0]["intra"] and not rows[0]["kl"]  # epoch 1: L_ce only
    assert rows[1]["intra"] and rows[1]["inter"] and not rows[1]["kl"]  # epoch 2: + transformer losses
    assert rows[2]["kl"]  # epoch 3: + feedback
    loss = float(rows[2]["loss"])
    mean = (float(rows[2]["ce"]) + float(rows[2]["intra"]) + float(rows[2]["inter"]) + float(rows[2]["kl"])) / 4
    assert loss == pytest.approx(mean, rel=1e-4)  # the loss is the mean of the active terms
    assert 0.0 <= res.best_miou <= 1.0 and rows[-1]["val_miou"]
    assert "RANDOM" in (run / "env.json").read_text()  # toy store has no CLIP cache: said loudly
    state = torch.load(run / "ckpt/last.pt", weights_only=True)  # tensors only
    assert set(state) >= {"net", "intra", "inter", "opt_net", "opt_tr", "epoch", "step", "text"}
    best = torch.load(run / "ckpt/best.pt", weights_only=True)
    assert {"net", "text", "epoch"} <= set(best) and not {"opt_net", "opt_tr"} & set(best)  # no optimiser state
    # validation scores all and seen points; val.jsonl keeps each validation's per-class IoU
    assert [r["step"] for r in rows] == ["2", "4", "6"] and rows[-1]["val_miou_seen"]
    assert float(rows[-1]["train_seconds"]) == pytest.approx(sum(float(r["seconds"]) for r in rows), abs=0.02)
    records = [json.loads(line) for line in (run / "val.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3] and set(records[-1]["per_class"]) == {"floor", "wall", "chair"}
    assert records[-1]["all"] == pytest.approx(float(rows[-1]["val_miou"]), abs=1e-6)


def test_baseline_has_no_transformers(toy_store, tiny_net, tmp_path) -> None:
    train(toy_store.root, tmp_path / "b", _cfg(epochs=1, stages=[], val_split=""))
    state = torch.load(tmp_path / "b/ckpt/last.pt", weights_only=True)
    assert "intra" not in state and "inter" not in state


def test_training_learns_the_toy_task(toy_store, tiny_net, tmp_path) -> None:
    res = train(toy_store.root, tmp_path / "l", _cfg(epochs=12, stages=["intraset"], lr=0.2, augment=False))
    assert res.best_miou > 0.5  # labels depend on x only: a per-point MLP must learn them


def test_learnable_logit_scale_is_trained_and_saved(toy_store, tiny_net, tmp_path) -> None:
    res = train(toy_store.root, tmp_path / "run", _cfg(epochs=2, logits="learnable", logit_scale_lr=0.05, val_split=""))
    assert res.epochs_done == 2
    state = torch.load(tmp_path / "run/ckpt/last.pt", weights_only=True)
    scale = float(state["logit_scale"].exp())
    assert scale != pytest.approx(1 / 0.07, abs=1e-3)  # CLIP's initial 1/τ moved under Adam
    rows = list(csv.DictReader(Path(tmp_path / "run/log.csv").read_text().splitlines()))
    assert float(rows[-1]["logit_scale"]) == pytest.approx(scale, rel=1e-3)


def test_fixed_logit_forms_have_no_scale_parameter(toy_store, tiny_net, tmp_path) -> None:
    train(toy_store.root, tmp_path / "run", _cfg(epochs=1, logits="inner", grad_clip=1.0, val_split=""))
    state = torch.load(tmp_path / "run/ckpt/last.pt", weights_only=True)
    assert "logit_scale" not in state
    rows = list(csv.DictReader(Path(tmp_path / "run/log.csv").read_text().splitlines()))
    assert float(rows[-1]["logit_scale"]) == pytest.approx(1.0)  # the paper's raw inner product: τ = 1


def test_fused_optimisers_match_the_loop(tiny_net) -> None:
    """build_optimizers' fused updates (the default on CPU) give the weights of the unfused loop."""
    from hiclr.train.loop import build_optimizers
    from hiclr.train.model import HiclModel

    results = []
    for fused in (False, True):
        torch.manual_seed(0)
        model = HiclModel(tiny_net(3, 16), torch.nn.functional.normalize(torch.randn(3, 16), dim=1),
                          _cfg(transformer_layers=1))
        opt_net, opt_tr = build_optimizers(model, _cfg(), torch.device("cpu"), fused=fused)
        assert bool(opt_net.defaults.get("fused")) == fused and bool(opt_tr.defaults.get("fused")) == fused
        g = torch.Generator().manual_seed(1)
        for _ in range(3):
            for p in model.parameters():
                p.grad = torch.randn(p.shape, generator=g)
            opt_net.step()
            opt_tr.step()
        results.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(results[1], results[0], rtol=1e-5, atol=1e-6)
