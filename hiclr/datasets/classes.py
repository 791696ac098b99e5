"""Class lists of the benchmarks and the maps from raw dataset ids to training class indices.

ScanNet-20 (the ScanNet v2 benchmark): 20 classes, each one NYU40 id; every other raw id → ignore
(-1). Raw ScanNet label files also contain ids outside NYU40 (e.g. 50, 149), so maps are applied
through a lookup table that covers any id, not only 0–40.

nuScenes-lidarseg (16 classes of the lidarseg challenge): the 32 raw lidarseg ids map as in the
nuscenes-devkit's challenge mapping; every other raw id (noise, animal, ego, …) → ignore.
"""

from __future__ import annotations

import numpy as np

IGNORE_INDEX = -1

# ScanNet-20, in training order (index = position), with the NYU40 id of each class.
SCANNET20_CLASSES: tuple[str, ...] = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "desk", "curtain", "refrigerator", "shower curtain", "toilet", "sink",
    "bathtub", "otherfurniture",
)
SCANNET20_NYU40_IDS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39)
NYU40_TO_SCANNET20: dict[int, int] = {nyu: i for i, nyu in enumerate(SCANNET20_NYU40_IDS)}

# nuScenes-lidarseg 16 classes, in training order, and raw lidarseg id → class index.
NUSCENES16_CLASSES: tuple[str, ...] = (
    "barrier", "bicycle", "bus", "car", "construction vehicle", "motorcycle", "pedestrian",
    "traffic cone", "trailer", "truck", "driveable surface", "other flat", "sidewalk", "terrain",
    "manmade", "vegetation",
)
LIDARSEG_TO_NUSCENES16: dict[int, int] = {
    9: 0,  # movable_object.barrier
    14: 1,  # vehicle.bicycle
    15: 2, 16: 2,  # vehicle.bus.bendy, vehicle.bus.rigid
    17: 3,  # vehicle.car
    18: 4,  # vehicle.construction
    21: 5,  # vehicle.motorcycle
    2: 6, 3: 6, 4: 6, 6: 6,  # human.pedestrian.adult, .child, .construction_worker, .police_officer
    12: 7,  # movable_object.trafficcone
    22: 8,  # vehicle.trailer
    23: 9,  # vehicle.truck
    24: 10,  # flat.driveable_surface
    25: 11,  # flat.other
    26: 12,  # flat.sidewalk
    27: 13,  # flat.terrain
    28: 14,  # static.manmade
    30: 15,  # static.vegetation
}


def lookup_table(mapping: dict[int, int], size: int = 256) -> np.ndarray:
    """A dense int16 table ``t`` of length ``max(size, max id + 1)`` with ``t[raw] = class``, else -1."""
    n = max(size, max(mapping) + 1)
    table = np.full(n, IGNORE_INDEX, dtype=np.int16)
    for raw, cls in mapping.items():
        table[raw] = cls
    return table


def map_ids(raw: np.ndarray, mapping: dict[int, int]) -> np.ndarray:
    """Map raw integer ids (any shape, any value, negatives included) to int16 class indices.

    Ids absent from ``mapping`` (and ids beyond the table, e.g. stray ScanNet ids like 149 or
    larger) become -1."""
    raw = np.asarray(raw).astype(np.int64, copy=False)
    table = lookup_table(mapping, size=max(256, int(raw.max()) + 1 if raw.size else 256))
    out = np.full(raw.shape, IGNORE_INDEX, dtype=np.int16)
    ok = raw >= 0
    out[ok] = table[raw[ok]]
    return out


def map_nyu40(raw: np.ndarray) -> np.ndarray:
    """NYU40 (or raw ScanNet) ids → ScanNet-20 class indices, int16, -1 = ignore."""
    return map_ids(raw, NYU40_TO_SCANNET20)


def map_lidarseg(raw: np.ndarray) -> np.ndarray:
    """Raw nuScenes lidarseg ids (0–31) → nuScenes-16 class indices, int16, -1 = ignore."""
    return map_ids(raw, LIDARSEG_TO_NUSCENES16)


def scannet20_index(name: str) -> int:
    """Class index of a ScanNet-20 class name (``KeyError``-free: raises ValueError on a typo)."""
    return SCANNET20_CLASSES.index(name)
