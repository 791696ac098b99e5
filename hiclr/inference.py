"""Inference primitives shared by training-time validation, ``evaluate --model`` and ``predict``.

It sits below both ``hiclr.train`` and ``hiclr.predict``: the network input per point, and the
class label of every point from a network and the class anchors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from hiclr.errors import HiclrError


def input_features(color: np.ndarray | None, normal: np.ndarray | None, kind: str, n: int) -> np.ndarray:
    """Network input per point, (N, 3|6) float32: RGB scaled to [-1, 1] (mid-grey when the source
    has no colour), then the unit normal for ``kind="color_normal"``."""
    rgb = np.zeros((n, 3), np.float32) if color is None else color.astype(np.float32) / 127.5 - 1.0
    if kind == "color":
        return rgb
    if normal is None:
        raise HiclrError("the model's input needs normals but the points have none", "compute normals first")
    return np.concatenate([rgb, normal.astype(np.float32)], axis=1)


@torch.no_grad()
def predict_labels(net: torch.nn.Module, text: torch.Tensor, coords: Sequence[np.ndarray],
                   feats: Sequence[np.ndarray], device: torch.device | str) -> list[np.ndarray]:
    """argmax_c ⟨f_m, T̂_c⟩ for every point of a batch of scenes: list of (N_i,) int64 on the CPU.

    The logits are computed once per distinct network output (one per voxel for the MinkUNets,
    ``forward_rows``) and gathered per point, never on (N, d) per-point copies of the features."""
    net.eval()
    rows, index, sizes = net.forward_rows(
        [torch.as_tensor(np.ascontiguousarray(c, np.float32), device=device) for c in coords],
        [torch.as_tensor(np.ascontiguousarray(f, np.float32), device=device) for f in feats])
    row_labels = (rows.float() @ text.to(rows.device).float().t()).argmax(1)  # (R,)
    return [lab.cpu().numpy() for lab in torch.split(row_labels[index], sizes)]


def predict_points(net: torch.nn.Module, text: torch.Tensor, coord: np.ndarray, feats: np.ndarray,
                   device: torch.device | str) -> np.ndarray:
    """Class index per point of one scene, (N,) int64."""
    was_training = net.training
    (labels,) = predict_labels(net, text, [coord], [feats], device)
    net.train(was_training)
    return labels
