"""Training data: per scene the points, the labelled pairs, the segments; augmentation; sampling.

Every random choice of an epoch (scene order, rotation, flips, sampled points) comes from a
generator seeded by ``(seed, epoch, scene)``, never from global state, so a run resumed at an epoch
boundary sees exactly the batches an uninterrupted run sees.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from hiclr.errors import HiclrError
from hiclr.inference import input_features
from hiclr.train.config import TrainConfig
from hiclr.train.sampler import point_labels, sample_points


def augment(coord: np.ndarray, normal: np.ndarray | None, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """Random rotation about z (uniform angle) and random x / y flips (each with probability 1/2)."""
    a = rng.uniform(0.0, 2.0 * math.pi)
    c, s = math.cos(a), math.sin(a)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], np.float32)
    flip = np.diag([-1.0 if rng.random() < 0.5 else 1.0, -1.0 if rng.random() < 0.5 else 1.0, 1.0]).astype(np.float32)
    m = flip @ rot
    return coord @ m.T, (normal @ m.T if normal is not None else None)


def check_voxel_range(scene: Any, coord: np.ndarray, voxel_size: float) -> None:
    """Refuse, naming the scene, points too far from the origin for the sparse voxel keys."""
    from hiclr.nn.sparse.coords import MARGIN, H

    reach = float(np.abs(coord).max()) / voxel_size if len(coord) else 0.0
    if reach > H - MARGIN:
        raise HiclrError(f"{scene.path}: scene {scene.id} reaches {reach * voxel_size:.0f} m from its origin, beyond the "
                         f"{(H - MARGIN) * voxel_size:.0f} m that {voxel_size} m voxels allow",
                         "prepare it again (hiclr prepare stores scenes at a local origin) or use a larger train.voxel_size")


def epoch_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, index])


@dataclass
class SceneItem:
    """One training scene as tensors (CPU)."""

    scene_id: str
    coord: torch.Tensor  # (N, 3) float32, augmented
    feats: torch.Tensor  # (N, 3|6) float32
    pair_point: torch.Tensor  # (P,) long
    pair_label: torch.Tensor  # (P,) long
    sample: torch.Tensor  # (M_s,) long indices of the sampled points (empty when no transformer stage)
    sample_label: torch.Tensor  # (M_s,) long majority label of each sampled point

    def pin_memory(self) -> SceneItem:
        """The same item in page-locked memory (the DataLoader calls this when ``pin_memory=True``),
        so that copies to the GPU can overlap the step."""
        return SceneItem(self.scene_id, *(getattr(self, f.name).pin_memory() for f in fields(self)[1:]))


@dataclass
class LoadFailure:
    """A scene that could not be read, as a loader item: a :class:`HiclrError` raised in a DataLoader
    worker would reach the training process re-typed, its message replaced by a traceback text."""

    message: str
    hint: str


class TrainScenes(torch.utils.data.Dataset):
    """Scenes of a split for one epoch; item ``(epoch, i)`` is scene ``i`` with that epoch's randomness."""

    def __init__(self, store: Any, scene_ids: list[str], cfg: TrainConfig, augment: bool = True) -> None:
        self.store = store
        self.ids = list(scene_ids)
        self.cfg = cfg
        self.augment = augment and cfg.augment
        self.kind = "refined" if "intraset" in cfg.stages else "pairs"
        self.need_samples = cfg.transformers
        for sid in self.ids:  # fail before training starts, naming the missing step
            scene = store.scene(sid)
            if not scene.has(self.kind):
                step = "hiclr refine" if self.kind == "refined" else "hiclr pseudolabel"
                raise HiclrError(f"{scene.path}: scene {sid} has no {self.kind}", f"run {step} first (stage intraset reads refined pairs)")
            if self.need_samples and not scene.has("segments"):
                raise HiclrError(f"{scene.path}: scene {sid} has no segments", "run hiclr oversegment first (intrascene/interscene sample per segment)")

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, key: tuple[int, int]) -> SceneItem | LoadFailure:
        try:
            return self._item(key)
        except HiclrError as exc:  # carried to the training process as data, re-raised there as itself
            return LoadFailure(exc.message, exc.hint)

    def _item(self, key: tuple[int, int]) -> SceneItem:
        epoch, i = key
        scene = self.store.scene(self.ids[i])
        rng = epoch_rng(self.cfg.seed, epoch, i)
        coord = scene.read("coord")
        color = scene.read("color") if scene.has("color") else None
        normal = scene.read("normal") if self.cfg.input == "color_normal" else None
        if self.augment:
            coord, normal = augment(coord, normal, rng)
        check_voxel_range(scene, coord, self.cfg.voxel_size)
        pairs = scene.read_pairs(self.kind)
        c = self.store.num_classes
        valid = (pairs.label >= 0) & (pairs.label < c)
        pp, pl = pairs.point[valid].astype(np.int64), pairs.label[valid].astype(np.int64)
        if self.need_samples:
            labels = point_labels(len(coord), pp, pl, c)
            idx = sample_points(scene.read("segments"), labels, self.cfg.samples, rng)
            sample_label = labels[idx]
        else:
            idx = sample_label = np.zeros(0, np.int64)
        return SceneItem(
            scene.id,
            torch.from_numpy(np.ascontiguousarray(coord, dtype=np.float32)),
            torch.from_numpy(input_features(color, normal, self.cfg.input, len(coord))),
            torch.from_numpy(pp), torch.from_numpy(pl),
            torch.from_numpy(idx), torch.from_numpy(sample_label),
        )


class EpochBatches(torch.utils.data.Sampler):
    """Yields ``(epoch, i)`` keys: a seeded permutation of this rank's share of the scenes."""

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.n, self.seed, self.rank, self.world = n, seed, rank, world
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> list[int]:
        perm = np.random.default_rng([self.seed, self.epoch, 1 << 20]).permutation(self.n)
        per_rank = math.ceil(self.n / self.world)
        perm = np.concatenate([perm, perm[: per_rank * self.world - self.n]])  # pad so every rank has as many
        return perm[self.rank:: self.world].tolist()

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter([(self.epoch, i) for i in self.order()])

    def __len__(self) -> int:
        return math.ceil(self.n / self.world)


def collate(items: list[SceneItem]) -> list[SceneItem]:
    return items


class SceneLoader(torch.utils.data.DataLoader):
    """A DataLoader whose batches re-raise a scene's :class:`LoadFailure` as the HiclrError it was."""

    def __iter__(self):  # type: ignore[no-untyped-def]
        for batch in super().__iter__():
            for item in batch:
                if isinstance(item, LoadFailure):
                    raise HiclrError(item.message, item.hint)
            yield batch


def scene_loader(dataset: TrainScenes, sampler: EpochBatches, cfg: TrainConfig, device: torch.device) -> torch.utils.data.DataLoader:
    """Batches of ``cfg.batch_size`` scenes in the sampler's order.

    With ``cfg.workers`` > 0, scenes are read and augmented in that many worker processes (kept for
    the whole run, two batches each prefetched), so the step never waits on NumPy; on CUDA the
    tensors come in pinned memory. At most one worker per CPU beyond the training process's own. Items are keyed by ``(epoch, scene)`` and their randomness is
    seeded by it, and the loader keeps the sampler's order, so workers change nothing computed."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = min(cfg.workers, max(1, cpus - 1))  # leave a core to the training process
    return SceneLoader(
        dataset, batch_size=cfg.batch_size, sampler=sampler, collate_fn=collate, num_workers=workers,
        pin_memory=device.type == "cuda", persistent_workers=workers > 0, prefetch_factor=2 if workers > 0 else None)
