"""SPVCNN (Tang et al., 2020): a sparse voxel U-Net with a parallel point branch.

Follows the SPVCNN of mit-han-lab/spvnas (torchsparse): stem of two 3³ convolutions, four stages
of (2³ stride-2 convolution, two residual blocks), four stages up of (2³ transposed convolution,
concatenation with the skip, two residual blocks); a point branch that reads voxel features by
trilinear interpolation at strides 1, 16, 4 and 1, adds a per-point MLP of its previous state, and
writes back to the voxels by averaging. Widths are the class constant ``CHANNELS``; the head is a
linear layer to ``out_channels`` (512 for the CLIP width). Interpolation conventions:
:mod:`hiclr.nn.sparse.voxelize`.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn

from hiclr.nn.sparse import (
    BatchNorm,
    Conv3d,
    PointSet,
    ReLU,
    SparseTensor,
    cat,
    conv_bn_relu,
    point_to_voxel,
    voxel_to_point,
)


class ResidualBlock(nn.Module):
    """Two 3³ convolutions with batch norm and a residual (projected by a 1³ conv if widths differ)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            Conv3d(in_channels, out_channels, kernel_size=3),
            BatchNorm(out_channels),
            ReLU(inplace=True),
            Conv3d(out_channels, out_channels, kernel_size=3),
            BatchNorm(out_channels),
        )
        self.downsample = (
            nn.Sequential(Conv3d(in_channels, out_channels, kernel_size=1), BatchNorm(out_channels))
            if in_channels != out_channels
            else nn.Identity()
        )
        self.relu = ReLU(inplace=True)

    def forward(self, x: SparseTensor) -> SparseTensor:
        out = self.net(x)
        return self.relu(out.replace(out.feats + self.downsample(x).feats))


def _point_mlp(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_channels, out_channels), nn.BatchNorm1d(out_channels), nn.ReLU(True))


class SPVCNN(nn.Module):
    """Point-voxel U-Net; ``forward(x, pts)`` returns per-point features (N, out_channels)."""

    CHANNELS: ClassVar[tuple[int, ...]] = (32, 32, 64, 128, 256, 256, 128, 96, 96)
    DROPOUT: ClassVar[float] = 0.3
    INTERPOLATION: ClassVar[str] = "trilinear"

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        cs = self.CHANNELS
        self.stem = nn.Sequential(conv_bn_relu(in_channels, cs[0], 3), conv_bn_relu(cs[0], cs[0], 3))
        self.stages = nn.ModuleList(
            nn.Sequential(
                conv_bn_relu(cs[i], cs[i], 2, stride=2),
                ResidualBlock(cs[i], cs[i + 1]),
                ResidualBlock(cs[i + 1], cs[i + 1]),
            )
            for i in range(4)
        )
        skips = (cs[3], cs[2], cs[1], cs[0])
        self.up = nn.ModuleList(
            nn.ModuleList(
                [
                    conv_bn_relu(cs[4 + j], cs[5 + j], 2, stride=2, transposed=True),
                    nn.Sequential(
                        ResidualBlock(cs[5 + j] + skips[j], cs[5 + j]), ResidualBlock(cs[5 + j], cs[5 + j])
                    ),
                ]
            )
            for j in range(4)
        )
        self.point_transforms = nn.ModuleList(
            [_point_mlp(cs[0], cs[4]), _point_mlp(cs[4], cs[6]), _point_mlp(cs[6], cs[8])]
        )
        self.dropout = nn.Dropout(self.DROPOUT)
        self.classifier = nn.Linear(cs[8], out_channels)

    def _to_point(self, x: SparseTensor, pts: PointSet) -> Tensor:
        return voxel_to_point(x, pts, self.INTERPOLATION)

    def _up(self, j: int, y: SparseTensor, skip: SparseTensor) -> SparseTensor:
        deconv, blocks = self.up[j]
        return blocks(cat(deconv(y), skip))

    def forward(self, x: SparseTensor, pts: PointSet) -> Tensor:
        """``x``: stride-1 voxels (N_v, C_in) from :func:`voxelize`; returns (N_points, out)."""
        x0 = self.stem(x)
        z0 = self._to_point(x0, pts)  # (N, cs0)
        x1 = self.stages[0](point_to_voxel(x0, pts, z0))
        x2 = self.stages[1](x1)
        x3 = self.stages[2](x2)
        x4 = self.stages[3](x3)

        z1 = self._to_point(x4, pts) + self.point_transforms[0](z0)  # (N, cs4)
        y = point_to_voxel(x4, pts, z1)
        y = y.replace(self.dropout(y.feats))
        y = self._up(0, y, x3)
        y = self._up(1, y, x2)

        z2 = self._to_point(y, pts) + self.point_transforms[1](z1)  # (N, cs6)
        y = point_to_voxel(y, pts, z2)
        y = y.replace(self.dropout(y.feats))
        y = self._up(2, y, x1)
        y = self._up(3, y, x0)

        z3 = self._to_point(y, pts) + self.point_transforms[2](z2)  # (N, cs8)
        return self.classifier(z3)
