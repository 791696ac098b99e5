"""``torch.nn`` modules on :class:`SparseTensor`: convolution, batch norm, ReLU, linear.

Feature-only layers wrap the dense torch layer; parameters are plain tensors with the same
names on every backend, so a ``state_dict`` is backend-neutral.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from hiclr.nn.sparse.functional import conv3d
from hiclr.nn.sparse.tensor import SparseTensor


class Conv3d(nn.Module):
    """Sparse convolution with weight (k³, C_in, C_out) in the shared offset order.

    ``stride == 1`` is submanifold; ``stride > 1`` downsamples; ``transposed=True`` upsamples onto
    the finer coordinates of the same context (see :mod:`hiclr.nn.sparse.functional`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        transposed: bool = False,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.transposed = kernel_size, stride, transposed
        self.weight = nn.Parameter(torch.empty(kernel_size**3, in_channels, out_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Kaiming normal, fan_out, as MinkowskiEngine's MinkUNet initialises its kernels.
        std = math.sqrt(2.0 / (self.weight.shape[0] * self.out_channels))
        nn.init.normal_(self.weight, 0.0, std)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: SparseTensor) -> SparseTensor:
        return conv3d(x, self.weight, self.bias, self.kernel_size, self.stride, self.transposed)

    def extra_repr(self) -> str:
        kind = "transposed, " if self.transposed else ""
        return (
            f"{self.in_channels}, {self.out_channels}, {kind}kernel_size={self.kernel_size}, "
            f"stride={self.stride}, bias={self.bias is not None}"
        )


class BatchNorm(nn.BatchNorm1d):
    """Batch norm over the voxels' features (N, C)."""

    def forward(self, x: SparseTensor) -> SparseTensor:  # type: ignore[override]
        return x.replace(super().forward(x.feats))


class ReLU(nn.ReLU):
    def forward(self, x: SparseTensor) -> SparseTensor:  # type: ignore[override]
        return x.replace(super().forward(x.feats))


class Linear(nn.Linear):
    """A per-voxel linear layer (N, C_in) -> (N, C_out)."""

    def forward(self, x: SparseTensor) -> SparseTensor:  # type: ignore[override]
        return x.replace(super().forward(x.feats))


def conv_bn_relu(
    in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, transposed: bool = False
) -> nn.Sequential:
    """Convolution → batch norm → ReLU."""
    return nn.Sequential(
        Conv3d(in_channels, out_channels, kernel_size, stride, transposed),
        BatchNorm(out_channels),
        ReLU(inplace=True),
    )


def as_dense_weight(weight: Tensor, kernel_size: int) -> Tensor:
    """The shared layout (k³, C_in, C_out) as a dense ``conv3d`` weight (C_out, C_in, k, k, k)."""
    k = kernel_size
    return weight.reshape(k, k, k, weight.shape[1], weight.shape[2]).permute(4, 3, 0, 1, 2)
