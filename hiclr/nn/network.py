"""The point-level front door: points and features in, one feature vector per point out."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from hiclr.errors import HiclrError
from hiclr.nn.minkunet import MinkUNet14, MinkUNet14A, MinkUNet18A, MinkUNet34C
from hiclr.nn.sparse import voxelize
from hiclr.nn.sparse.backends import BACKENDS, check_installed, resolve_backend
from hiclr.nn.spvcnn import SPVCNN

ARCHITECTURES: dict[str, type[nn.Module]] = {
    "MinkUNet14": MinkUNet14,
    "MinkUNet14A": MinkUNet14A,
    "MinkUNet18A": MinkUNet18A,
    "MinkUNet34C": MinkUNet34C,
    "SPVCNN": SPVCNN,
}
_CONFIG_KEYS = ("arch", "in_channels", "out_channels", "voxel_size", "backend")


class PointNetwork(nn.Module):
    """A 3D backbone that maps every input point to a feature vector.

    Each scene is voxelised at ``voxel_size`` (features averaged per voxel), the batch runs through
    the network on the chosen sparse backend, and the output is mapped back to every point: for the
    MinkUNets, a point takes its voxel's feature; SPVCNN returns per-point features itself.

    Args:
        arch: one of :data:`ARCHITECTURES` (the paper: MinkUNet14A on ScanNet, SPVCNN on nuScenes).
        in_channels: feature width per point (3 for RGB in [-1, 1]; 6 with normals).
        out_channels: output width (512, the CLIP ViT-B/16 embedding width).
        voxel_size: voxel edge in metres.
        backend: ``auto``, ``torch``, ``minkowski``, ``spconv`` or ``torchsparse``; parameters and
            ``state_dict`` are the same for all of them.
    """

    def __init__(
        self,
        arch: str = "MinkUNet14A",
        in_channels: int = 3,
        out_channels: int = 512,
        voxel_size: float = 0.05,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if arch not in ARCHITECTURES:
            raise HiclrError(
                f"unknown network architecture {arch!r}", f"choose one of: {', '.join(ARCHITECTURES)}"
            )
        if not voxel_size > 0:
            raise HiclrError(
                f"voxel_size must be positive, got {voxel_size}", "set voxel_size in metres, e.g. 0.05"
            )
        if backend != "auto" and backend not in BACKENDS:
            raise HiclrError(
                f"unknown sparse backend {backend!r}", f"choose one of: auto, {', '.join(BACKENDS)}"
            )
        if backend != "auto":
            check_installed(backend)
        self.arch, self.in_channels, self.out_channels = arch, int(in_channels), int(out_channels)
        self.voxel_size, self.backend = float(voxel_size), backend
        self.net = ARCHITECTURES[arch](self.in_channels, self.out_channels)

    def forward(self, points: list[Tensor], feats: list[Tensor]) -> list[Tensor]:
        """Per-point features.

        Args:
            points: per scene, (N_i, 3) float coordinates in metres.
            feats: per scene, (N_i, in_channels) features.
        Returns:
            per scene, (N_i, out_channels) features, in the input point order.
        """
        rows, index, sizes = self.forward_rows(points, feats)
        return list(torch.split(rows[index], sizes, dim=0))

    def forward_rows(self, points: list[Tensor], feats: list[Tensor]) -> tuple[Tensor, Tensor, list[int]]:
        """The distinct output features and each point's row among them, without copying them per point.

        For the MinkUNets every point of a voxel shares its voxel's feature, so the rows are the
        (V, out_channels) voxel features; for SPVCNN they are the (N, out_channels) point features.
        Anything linear in the feature (class logits, losses over pairs) is far cheaper computed on
        the rows and gathered through ``index`` than on (N, out_channels) per-point copies.

        Returns:
            rows (R, out_channels); index (N,) int64 row of every point of the batch (scenes
            concatenated in order); sizes, the N_i of each scene.
        """
        device = next(self.parameters()).device
        for f in feats:
            if f.dim() != 2 or f.shape[1] != self.in_channels:
                raise HiclrError(
                    f"point features {tuple(f.shape)} do not have {self.in_channels} channels",
                    "match in_channels of the network to the features (3 for RGB, 6 with normals)",
                )
        backend = resolve_backend(self.backend, device.type)
        x, pts = voxelize(
            [p.to(device) for p in points], [f.to(device) for f in feats], self.voxel_size, backend
        )
        if isinstance(self.net, SPVCNN):
            out = self.net(x, pts)
            return out, torch.arange(out.shape[0], device=out.device), list(pts.sizes)
        out = self.net(x)
        if out.stride != 1:
            raise HiclrError(f"{self.arch} ended at stride {out.stride}", "the network's last layer must be at stride 1")
        return out.feats, pts.inverse, list(pts.sizes)

    def arch_config(self) -> dict[str, Any]:
        """A JSON-serialisable description from which :meth:`from_config` rebuilds this network."""
        return {
            "arch": self.arch,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "voxel_size": self.voxel_size,
            "backend": self.backend,
        }

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> PointNetwork:
        """Rebuild from :meth:`arch_config` (unknown keys are an error)."""
        unknown = sorted(set(cfg) - set(_CONFIG_KEYS))
        if unknown:
            raise HiclrError(
                f"unknown network config keys: {', '.join(unknown)}",
                f"allowed keys: {', '.join(_CONFIG_KEYS)}",
            )
        return cls(**cfg)

    def extra_repr(self) -> str:
        return f"arch={self.arch}, voxel_size={self.voxel_size}, backend={self.backend}"
