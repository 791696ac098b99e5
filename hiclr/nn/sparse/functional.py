"""Sparse convolution as a function of a :class:`SparseTensor` and a weight in the shared layout.

Output coordinates (the same for every backend):

* submanifold (``stride == 1``): the input's coordinates, in the same order;
* strided (``stride > 1``): ``floor(c / (s·stride)) · (s·stride)`` of the input coordinates ``c``
  at stride ``s`` — the voxels that contain at least one input voxel, sorted by key. At those voxels
  the value equals a dense ``conv3d`` with padding ``(k-1)//2`` for odd and 0 for even ``k``;
* transposed (``stride > 1``): the coordinates already in the context at the finer stride
  ``s / stride`` (created by the strided convolution that went down), equal to a dense
  ``conv_transpose3d`` with the same padding there.

The weight is (K, C_in, C_out) with ``K = k³`` offsets in the order of
:func:`hiclr.nn.sparse.coords.kernel_offsets`.
"""

from __future__ import annotations

from torch import Tensor

from hiclr.nn.sparse.backends import get_backend
from hiclr.nn.sparse.tensor import SparseTensor


def conv3d(
    x: SparseTensor,
    weight: Tensor,
    bias: Tensor | None = None,
    kernel_size: int = 3,
    stride: int = 1,
    transposed: bool = False,
) -> SparseTensor:
    """Sparse 3D convolution (see the module docstring for output coordinates).

    Args:
        x: input at tensor stride ``s``.
        weight: (k³, C_in, C_out).
        bias: (C_out,) or None.
        kernel_size: cubic kernel size ``k``.
        stride: 1 (submanifold) or the down/up-sampling factor.
        transposed: transposed convolution from stride ``s`` to ``s / stride``.
    """
    if weight.shape[0] != kernel_size**3 or weight.shape[1] != x.feats.shape[1]:
        raise ValueError(
            f"weight {tuple(weight.shape)} does not fit kernel {kernel_size} and {x.feats.shape[1]} channels"
        )
    if transposed:
        if x.stride % stride != 0 or not x.context.has_stride(x.stride // stride):
            raise ValueError(
                f"transposed convolution from stride {x.stride} needs the stride-{x.stride // stride} "
                "coordinates of a previous strided convolution in the same context"
            )
        out_stride = x.stride // stride
    else:
        out_stride = x.stride * stride
    if kernel_size == 1 and stride == 1:
        out = x.feats @ weight[0]
    else:
        out = get_backend(x.backend).conv(x, weight, kernel_size, out_stride, transposed)
    if bias is not None:
        out = out + bias
    return SparseTensor(out, out_stride, x.context)
