"""Integer voxel coordinates: linear keys, downsampling, kernel offsets and kernel maps.

Coordinates are ``int32`` rows ``[batch, x, y, z]`` in units of the finest voxel (stride 1), as in
MinkowskiEngine: a tensor at stride ``s`` has spatial coordinates that are multiples of ``s``.

A coordinate row is linearised into one ``int64`` key, ``((b·R + x + H)·R + y + H)·R + z + H`` with
``R = 2**18`` and ``H = 2**17``, so keys sort like ``(b, x, y, z)`` lexicographically and a spatial
offset is a constant added to the key. Spatial coordinates must stay inside ``±(H - MARGIN)``
(±6.5 km at 5 cm voxels) and the batch index below 512; :func:`check_range` enforces it.

Kernel offsets (the one weight layout every backend converts to and from). For kernel size ``k``
the per-axis offsets are ``r = -(k-1)/2 … (k-1)/2`` for odd ``k`` and ``r = 0 … k-1`` for even
``k``; the ``K = k³`` offsets are enumerated with ``z`` fastest, i.e. offset index
``i = (ix·k + iy)·k + iz`` (C order over ``(x, y, z)``, the order of the spatial axes of a dense
``conv3d`` weight ``(C_out, C_in, kx, ky, kz)``). Offsets are multiplied by the input's stride.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hiclr.errors import HiclrError

_R_BITS = 18
R = 1 << _R_BITS
H = 1 << (_R_BITS - 1)
MARGIN = 4096  # room for kernel offsets of large strides
MAX_BATCH = 511


def check_range(coords: Tensor) -> None:
    """Raise :class:`HiclrError` if ``coords`` (N, 4) cannot be linearised without overflow."""
    if coords.numel() == 0:
        return
    spatial = coords[:, 1:]
    lo, hi = int(spatial.min()), int(spatial.max())
    if lo < -(H - MARGIN) or hi > H - MARGIN:
        raise HiclrError(
            f"voxel coordinates span [{lo}, {hi}], beyond the supported ±{H - MARGIN} voxels",
            "use a larger voxel_size or centre the scene near the origin",
        )
    if int(coords[:, 0].min()) < 0 or int(coords[:, 0].max()) > MAX_BATCH:
        raise HiclrError(f"batch index outside [0, {MAX_BATCH}]", "split the batch into at most 512 scenes")


def linearize(coords: Tensor) -> Tensor:
    """Keys (N,) int64 of coordinate rows (N, 4) ``[b, x, y, z]``; monotone in ``(b, x, y, z)``."""
    c = coords.long()
    return ((c[:, 0] * R + c[:, 1] + H) * R + c[:, 2] + H) * R + c[:, 3] + H


def delinearize(keys: Tensor) -> Tensor:
    """Inverse of :func:`linearize`: keys (N,) int64 -> coordinates (N, 4) int32."""
    z = keys % R - H
    rest = keys // R
    y = rest % R - H
    rest = rest // R
    x = rest % R - H
    b = rest // R
    return torch.stack([b, x, y, z], dim=1).to(torch.int32)


def offset_key(offset: tuple[int, int, int] | list[int]) -> int:
    """The key increment of a spatial offset ``(dx, dy, dz)`` in stride-1 voxel units."""
    dx, dy, dz = (int(v) for v in offset)
    return (dx * R + dy) * R + dz


def kernel_offsets(kernel_size: int) -> Tensor:
    """Offsets (k³, 3) int64 of a cubic kernel in the documented order (z fastest), in steps."""
    if kernel_size % 2 == 1:
        r = torch.arange(kernel_size) - (kernel_size - 1) // 2
    else:
        r = torch.arange(kernel_size)
    gx, gy, gz = torch.meshgrid(r, r, r, indexing="ij")
    return torch.stack([gx, gy, gz], dim=-1).reshape(-1, 3)


def downsample(coords: Tensor, stride: int) -> Tensor:
    """Unique coordinates at ``stride``: ``floor(c / stride) * stride``, sorted by key.

    Args:
        coords: (N, 4) int32 ``[b, x, y, z]`` at a stride that divides ``stride``.
        stride: target tensor stride (voxel units).
    Returns:
        (M, 4) int32, sorted by :func:`linearize`.
    """
    down = coords.clone()
    down[:, 1:] = torch.div(coords[:, 1:], stride, rounding_mode="floor") * stride
    keys = torch.unique(linearize(down))  # sorted
    return delinearize(keys)


def lookup(sorted_keys: Tensor, query: Tensor) -> tuple[Tensor, Tensor]:
    """Find ``query`` keys in ``sorted_keys``: returns (found (Q,) bool, index (Q,) int64)."""
    if sorted_keys.numel() == 0:
        return torch.zeros_like(query, dtype=torch.bool), torch.zeros_like(query)
    pos = torch.searchsorted(sorted_keys, query).clamp_(max=sorted_keys.numel() - 1)
    return sorted_keys[pos] == query, pos


KernelMap = list[tuple[Tensor, Tensor]]
"""One ``(in_index, out_index)`` pair of (M_k,) int64 tensors per kernel offset, in offset order."""


def build_kernel_map(
    in_keys: Tensor,
    out_keys: Tensor,
    kernel_size: int,
    step: int,
    transposed: bool,
    mirror: bool = True,
) -> KernelMap:
    """Pairs of (input row, output row) for every kernel offset.

    Forward convolution: output ``q`` reads input ``q + offset·step`` (``step`` = input stride).
    Transposed convolution: output ``p`` reads input ``p - offset·step`` (``step`` = output stride),
    the exact reverse of the strided convolution that maps ``p``'s level to the input's level
    (:func:`reverse_kernel_map` of it is this map).

    A submanifold map (``out_keys is in_keys``, odd kernel) is searched for half the offsets only
    (unless ``mirror`` is false):
    offset ``-d`` (index ``K-1-k``) pairs ``(o, i)`` wherever ``d`` (index ``k``) pairs ``(i, o)``,
    and both lists come out sorted by output row (keys are sorted, a shift keeps their order).

    Args:
        in_keys: sorted keys (N_in,) of the input coordinates.
        out_keys: keys (N_out,) of the output coordinates.
        kernel_size: cubic kernel size ``k``.
        step: offset unit in stride-1 voxels.
        transposed: see above.
        mirror: reuse the mirrored offsets of a submanifold map (the result is the same).
    """
    sign = -1 if transposed else 1
    offsets = kernel_offsets(kernel_size).tolist()
    mirrored = mirror and out_keys is in_keys and kernel_size % 2 == 1
    kmap: KernelMap = []
    for k, off in enumerate(offsets):
        if mirrored and k > len(offsets) // 2:
            i, o = kmap[len(offsets) - 1 - k]
            kmap.append((o, i))
            continue
        delta = sign * offset_key([o * step for o in off])
        found, pos = lookup(in_keys, out_keys + delta)
        out_idx = found.nonzero().squeeze(1)
        kmap.append((pos[out_idx], out_idx))
    return kmap


def reverse_kernel_map(kmap: KernelMap) -> KernelMap:
    """The kernel map with inputs and outputs swapped, offset by offset: the transposed convolution's
    map from a strided convolution's (same kernel, same step), sorted by its output rows as
    :func:`build_kernel_map` would return it (a shift by a fixed offset keeps the key order)."""
    return [(o, i) for i, o in kmap]
