"""A minimal sparse tensor: voxel coordinates with a batch column, features, a tensor stride.

Every tensor derived from one voxelised batch shares a private :class:`CoordinateContext`: the
coordinate set of each stride (created once, sorted by linear key, so all tensors at one stride
have the same rows in the same order), the kernel maps built between them, and whatever state a
backend keeps (MinkowskiEngine's coordinate manager, spconv's index pairs). Layers never build the
same map twice, and concatenating two tensors of one stride is a plain feature concatenation.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from hiclr.errors import HiclrError
from hiclr.nn.sparse import coords as C


class CoordinateContext:
    """Coordinates per stride, kernel maps and backend state shared by derived tensors."""

    def __init__(self, coords: Tensor, backend: str) -> None:
        """``coords`` (N, 4) int32 at stride 1, unique and sorted by :func:`coords.linearize`."""
        self.backend = backend
        self._coords: dict[int, Tensor] = {1: coords}
        self._keys: dict[int, Tensor] = {1: C.linearize(coords)}
        self._kmaps: dict[tuple, C.KernelMap] = {}
        self.backend_state: dict[str, Any] = {}

    def coords(self, stride: int) -> Tensor:
        """(N_s, 4) int32 coordinates at ``stride``, created from the finest level if needed."""
        if stride not in self._coords:
            finer = max(s for s in self._coords if stride % s == 0)
            self._coords[stride] = C.downsample(self._coords[finer], stride)
            self._keys[stride] = C.linearize(self._coords[stride])
        return self._coords[stride]

    def keys(self, stride: int) -> Tensor:
        """Sorted (N_s,) int64 keys of :meth:`coords` at ``stride``."""
        self.coords(stride)
        return self._keys[stride]

    def has_stride(self, stride: int) -> bool:
        return stride in self._coords

    def kernel_map(
        self, in_stride: int, out_stride: int, kernel_size: int, transposed: bool, reuse: bool = True
    ) -> C.KernelMap:
        """The cached :func:`coords.build_kernel_map` between two strides of this context.

        With ``reuse`` (the result is the same either way), a transposed map reverses the strided
        map between the same two strides when that one is cached (a U-Net's decoder reuses its
        encoder's maps), and a submanifold map mirrors half of its offsets."""
        key = (in_stride, out_stride, kernel_size, transposed)
        if key not in self._kmaps:
            strided = (out_stride, in_stride, kernel_size, False)
            if reuse and transposed and strided in self._kmaps:
                self._kmaps[key] = C.reverse_kernel_map(self._kmaps[strided])
                return self._kmaps[key]
            step = out_stride if transposed else in_stride
            with torch.profiler.record_function("hiclr::kernel_map"):  # named in profiles; ~1 µs otherwise
                self._kmaps[key] = C.build_kernel_map(
                    self.keys(in_stride), self.keys(out_stride), kernel_size, step, transposed, reuse
                )
        return self._kmaps[key]


class SparseTensor:
    """Features on the voxels of one stride of a :class:`CoordinateContext`.

    Attributes:
        feats: (N, C) features, row ``i`` belongs to ``coords[i]``.
        stride: tensor stride in stride-1 voxels (1, 2, 4, ...).
    """

    def __init__(self, feats: Tensor, stride: int, context: CoordinateContext) -> None:
        n = context.coords(stride).shape[0]
        if feats.dim() != 2 or feats.shape[0] != n:
            raise ValueError(f"features {tuple(feats.shape)} do not match {n} voxels at stride {stride}")
        self.feats = feats
        self.stride = stride
        self._context = context

    @classmethod
    def from_coords(cls, coords: Tensor, feats: Tensor, backend: str = "torch") -> SparseTensor:
        """A stride-1 tensor from unique coordinates (N, 4) int32 and features (N, C).

        Rows are reordered by linear key; the order is the tensor's row order from then on.
        """
        coords = coords.to(torch.int32)
        C.check_range(coords)
        keys = C.linearize(coords)
        order = torch.argsort(keys)
        if torch.unique(keys).numel() != keys.numel():
            raise HiclrError("duplicate voxel coordinates", "voxelise points with hiclr.nn.sparse.voxelize")
        return cls(feats[order], 1, CoordinateContext(coords[order], backend))

    @property
    def coords(self) -> Tensor:
        """(N, 4) int32 ``[batch, x, y, z]``, multiples of :attr:`stride`, sorted by key."""
        return self._context.coords(self.stride)

    @property
    def context(self) -> CoordinateContext:
        return self._context

    @property
    def backend(self) -> str:
        return self._context.backend

    @property
    def C(self) -> Tensor:
        return self.coords

    @property
    def F(self) -> Tensor:
        return self.feats

    def replace(self, feats: Tensor) -> SparseTensor:
        """The same voxels with new features (N, C')."""
        return SparseTensor(feats, self.stride, self._context)

    def __repr__(self) -> str:
        return (
            f"SparseTensor(n={self.feats.shape[0]}, channels={self.feats.shape[1]}, "
            f"stride={self.stride}, backend={self.backend!r})"
        )


def cat(*tensors: SparseTensor) -> SparseTensor:
    """Concatenate the features of tensors on the same voxels (same context and stride)."""
    first = tensors[0]
    for t in tensors[1:]:
        if t.context is not first.context or t.stride != first.stride:
            raise ValueError("cat needs tensors of one coordinate context and one stride")
    return first.replace(torch.cat([t.feats for t in tensors], dim=1))
