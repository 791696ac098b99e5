"""Class-balanced weighting of the loss from the pseudo-labels' own frequencies (``train.class_balance``).

Label-free: the frequencies are those of the training pseudo-labels the run learns from (the
refined pairs with stage intraset, else the raw pairs), never of ground truth. With exponent p,
class c weighs ``w_c ∝ f_c^-p`` (p = 0.5: inverse square root, p = 1: inverse frequency), scaled so
that the mean weight over the training pairs is 1 (Σ_c f_c w_c = 1): the loss keeps its scale and
only the balance between classes moves. A class without pairs gets weight 0 (it has nothing to weigh).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def label_counts(store: Any, scene_ids: list[str], kind: str, num_classes: int, progress: bool = False) -> np.ndarray:
    """Pairs per class over ``scene_ids`` (``kind``: pairs | refined). Returns (C,) int64."""
    counts = np.zeros(num_classes, dtype=np.int64)
    it: Any = scene_ids
    if progress:
        from tqdm import tqdm

        it = tqdm(scene_ids, desc="class frequencies", unit="scene", leave=False)
    for sid in it:
        label = store.scene(sid).read_pairs(kind).label.astype(np.int64)
        label = label[(label >= 0) & (label < num_classes)]
        counts += np.bincount(label, minlength=num_classes)
    return counts


def class_weights(counts: np.ndarray, power: float) -> np.ndarray:
    """``w_c = f_c^-power`` over the classes with pairs, normalised so that Σ_c f_c w_c = 1. (C,) float32."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        return np.ones(len(counts), np.float32)
    freq = counts / total
    w = np.zeros_like(freq)
    has = freq > 0
    w[has] = freq[has] ** -float(power)
    w /= float((freq * w).sum())
    return w.astype(np.float32)
