"""Scenes loaded in DataLoader workers are exactly the scenes loaded in-process, in the same order."""

from __future__ import annotations

import pytest
import torch

from hiclr.errors import HiclrError
from hiclr.train.config import TrainConfig
from hiclr.train.data import EpochBatches, TrainScenes, scene_loader
from hiclr.train.loop import train


def _cfg(**kw: object) -> TrainConfig:
    base: dict[str, object] = {"epochs": 2, "batch_size": 2, "samples": 32, "ce_from": 1, "correlation_from": 1,
                               "kl_from": 2, "transformer_layers": 1, "transformer_heads": 2,
                               "transformer_mlp_ratio": 1.0, "seed": 5, "device": "cpu", "val_split": ""}
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def _epochs(store, workers: int) -> list[list[tuple]]:
    cfg = _cfg(workers=workers)
    ids = store.scene_ids("train")
    sampler = EpochBatches(len(ids), cfg.seed)
    loader = scene_loader(TrainScenes(store, ids, cfg), sampler, cfg, torch.device("cpu"))
    seen = []
    for epoch in (1, 2):  # one loader for both epochs, as in training (persistent workers)
        sampler.set_epoch(epoch)
        seen.append([(b.scene_id, b.coord, b.feats, b.pair_label, b.sample) for batch in loader for b in batch])
    return seen


def test_workers_load_the_same_items_in_the_same_order(toy_store) -> None:
    inproc, workers = _epochs(toy_store, 0), _epochs(toy_store, 2)
    assert [s[0] for s in inproc[0]] != [s[0] for s in inproc[1]] or len(inproc[0]) < 3  # epochs differ in order
    for a_epoch, b_epoch in zip(inproc, workers):
        assert [s[0] for s in a_epoch] == [s[0] for s in b_epoch]
        for a, b in zip(a_epoch, b_epoch):
            for x, y in zip(a[1:], b[1:]):
                assert torch.equal(x, y)  # augmentation and sampling seeded per (seed, epoch, scene)


def test_training_with_workers_gives_the_same_weights(toy_store, tiny_net, tmp_path) -> None:
    torch.set_num_threads(1)
    train(toy_store.root, tmp_path / "w0", _cfg(workers=0))
    train(toy_store.root, tmp_path / "w2", _cfg(workers=2))
    a = torch.load(tmp_path / "w0/ckpt/last.pt", weights_only=True)
    b = torch.load(tmp_path / "w2/ckpt/last.pt", weights_only=True)
    for part in ("net", "intra", "inter"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k}"


def test_negative_workers_is_refused() -> None:
    with pytest.raises(HiclrError, match="train.workers"):
        _cfg(workers=-1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs CUDA")
def test_items_come_pinned_on_cuda(toy_store) -> None:
    cfg = _cfg(workers=1)
    ids = toy_store.scene_ids("train")
    loader = scene_loader(TrainScenes(toy_store, ids, cfg), EpochBatches(len(ids), cfg.seed), cfg, torch.device("cuda"))
    item = next(iter(loader))[0]
    assert item.coord.is_pinned() and item.pair_point.is_pinned() and item.sample.is_pinned()
