"""The real network can learn: MinkUNet14A on the portable ``torch`` backend, trained by ``hiclr train``
on one synthetic room's refined pairs, must fit them.

What is checked by hand: the ceiling. A network gives one label per voxel, so the best possible
agreement with the pairs is that of each voxel's majority pair label (computed here with NumPy);
the room, noise and voxel size are chosen so that this ceiling (86.7 %) is above the 80 % asked
of the network.
The test fails when the loss, the pair indexing or the optimiser is broken (each was tried: pairs
gathered at shuffled rows, the optimiser step skipped, the loss negated: agreement ≤ 30 %).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

VOXEL = 0.1


@pytest.fixture(scope="module")
def one_room(make_synthetic_store):
    from hiclr.config import OversegmentConfig, PseudolabelConfig, RefineConfig
    from hiclr.oversegment import run_oversegment
    from hiclr.pseudolabel import run_pseudolabel
    from hiclr.refine import run_refine

    store = make_synthetic_store("overfit_room", scenes=1, seed=2, views=6, width=160, height=120, spacing=0.05,
                                 val_fraction=0.0)
    run_pseudolabel(store, PseudolabelConfig(labeler="oracle", noise=0.2), progress=False)
    run_oversegment(store, OversegmentConfig(), progress=False)
    run_refine(store, RefineConfig(), progress=False)
    store.set_split("train", store.scene_ids())
    return store


def _voxel_ceiling(coord: np.ndarray, point: np.ndarray, label: np.ndarray, c: int) -> float:
    """Share of pairs that equal their voxel's majority pair label (the best one label per voxel can do)."""
    key = np.floor(coord[point] / VOXEL).astype(np.int64)
    _, vox = np.unique(key, axis=0, return_inverse=True)
    vox = vox.reshape(-1)
    counts = np.bincount(vox * c + label, minlength=(vox.max() + 1) * c).reshape(-1, c)
    return float(counts.max(1).sum() / len(label))


def test_minkunet_overfits_one_rooms_refined_pairs(one_room, tmp_path) -> None:
    from hiclr.inference import input_features, predict_labels
    from hiclr.train.checkpoint import load_checkpoint
    from hiclr.train.config import TrainConfig
    from hiclr.train.loop import train
    from hiclr.train.model import build_network

    store = one_room
    scene = store.scene(store.scene_ids("train")[0])
    pairs = scene.read_pairs("refined")
    coord = scene.read("coord")
    ceiling = _voxel_ceiling(coord, pairs.point.astype(np.int64), pairs.label.astype(np.int64), store.num_classes)
    assert ceiling >= 0.85, f"the voxel size makes a perfect per-voxel fit only {ceiling:.1%}: the test would be unfair"

    torch.manual_seed(0)
    cfg = TrainConfig(stages=["intraset"], arch="MinkUNet14A", backend="torch", voxel_size=VOXEL, epochs=60,
                      batch_size=1, lr=0.1, augment=False, val_split="", device="cpu", workers=0)
    train(store.root, tmp_path / "run", cfg)

    state = load_checkpoint(tmp_path / "run" / "ckpt" / "last.pt")
    net = build_network(cfg, int(state["text"].shape[1]))
    net.load_state_dict(state["net"])
    feats = input_features(scene.read("color"), None, "color", len(coord))
    (pred,) = predict_labels(net, state["text"], [coord], [feats], "cpu")
    agreement = float((pred[pairs.point] == pairs.label).mean())
    assert agreement >= 0.8, f"MinkUNet14A fits {agreement:.1%} of the refined pairs (per-voxel ceiling {ceiling:.1%})"
