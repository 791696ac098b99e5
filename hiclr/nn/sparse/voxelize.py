"""Points ↔ voxels: voxelisation with the inverse map, and SPVCNN's point ↔ voxel interpolation.

Conventions. A point ``p`` (metres) has continuous voxel coordinate ``u = p / voxel_size``; it falls
in the stride-1 voxel ``floor(u)``, and in the stride-``s`` voxel ``floor(u / s) · s``. That voxel
covers ``[v, v + s)`` per axis, so its centre is ``v + s/2``.

* voxel → point, ``"nearest"``: the feature of the voxel containing the point.
* voxel → point, ``"trilinear"``: trilinear interpolation between the 8 voxel *centres* around the
  point at that stride; corners with no voxel get weight 0 and the remaining weights are
  renormalised (the voxel holding the point is always a corner, with weight ≥ 1/8). torchsparse's
  SPVCNN interpolates between voxel *corners* (it puts voxel ``v``'s feature at ``v``, not
  ``v + s/2``); hiclr uses centres, the geometrically consistent choice.
* point → voxel: the mean of the features of the points inside each voxel (0 for an empty voxel).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from hiclr.errors import HiclrError
from hiclr.nn.sparse import coords as C
from hiclr.nn.sparse.backends.torch_backend import add_rows_
from hiclr.nn.sparse.tensor import CoordinateContext, SparseTensor


@dataclass
class PointSet:
    """The points of a voxelised batch, in continuous stride-1 voxel units.

    Attributes:
        coords: (N, 3) float32 ``p / voxel_size``.
        batch: (N,) int64 scene index of each point.
        inverse: (N,) int64 row of each point's stride-1 voxel.
        sizes: number of points of each scene, in batch order.
    """

    coords: Tensor
    batch: Tensor
    inverse: Tensor
    sizes: list[int]
    _cache: dict = field(default_factory=dict, repr=False)

    def split(self, values: Tensor) -> list[Tensor]:
        """Per-scene views of per-point ``values`` (N, ...)."""
        return list(torch.split(values, self.sizes, dim=0))


def voxelize(
    points: list[Tensor], feats: list[Tensor], voxel_size: float, backend: str = "torch"
) -> tuple[SparseTensor, PointSet]:
    """Voxelise a batch of scenes; each voxel gets the mean feature of its points.

    Args:
        points: per scene, (N_i, 3) float coordinates in metres.
        feats: per scene, (N_i, C) float features.
        voxel_size: voxel edge in metres.
        backend: backend name recorded in the tensor's context.
    Returns:
        A stride-1 :class:`SparseTensor` (rows sorted by key) and the :class:`PointSet` whose
        ``inverse`` maps every input point to its voxel row.
    """
    if len(points) != len(feats) or not points:
        raise HiclrError("voxelize needs one feature tensor per point tensor, and at least one scene")
    if voxel_size <= 0:
        raise HiclrError(f"voxel_size must be positive, got {voxel_size}", "set voxel_size, e.g. 0.05 m")
    for i, (p, f) in enumerate(zip(points, feats)):
        if p.dim() != 2 or p.shape[1] != 3 or f.dim() != 2 or f.shape[0] != p.shape[0]:
            raise HiclrError(
                f"scene {i}: points {tuple(p.shape)} and features {tuple(f.shape)} do not match",
                "pass points (N, 3) and features (N, C) with the same N",
            )
    sizes = [int(p.shape[0]) for p in points]
    device = points[0].device
    u = torch.cat(points).to(torch.float32) / voxel_size  # (N, 3)
    f = torch.cat(feats)
    f = f if f.is_floating_point() else f.to(torch.float32)  # float64 stays float64 (exact checks)
    batch = torch.repeat_interleave(
        torch.arange(len(points), device=device), torch.tensor(sizes, device=device)
    )
    if not bool(torch.isfinite(u).all()):
        raise HiclrError(
            "points contain NaN or infinite coordinates", "drop invalid points before voxelising"
        )
    vox = torch.cat([batch[:, None], torch.floor(u).long()], dim=1)  # (N, 4), int64 until checked
    C.check_range(vox)
    vox = vox.to(torch.int32)
    keys, inverse = torch.unique(C.linearize(vox), return_inverse=True)
    counts = torch.bincount(inverse, minlength=keys.numel()).clamp_(min=1).to(f.dtype)
    mean = torch.zeros(keys.numel(), f.shape[1], dtype=f.dtype, device=device)
    add_rows_(mean, inverse, f)
    mean = mean / counts[:, None]
    context = CoordinateContext(C.delinearize(keys), backend)
    return SparseTensor(mean, 1, context), PointSet(u, batch, inverse, sizes)


def devoxelize(x: SparseTensor, pts: PointSet) -> list[Tensor]:
    """Per scene, (N_i, C) features of each point's stride-1 voxel (``x`` must be at stride 1)."""
    if x.stride != 1:
        raise ValueError("devoxelize needs a stride-1 tensor; use voxel_to_point at coarser strides")
    return pts.split(x.feats[pts.inverse])


def _voxel_index(x: SparseTensor, pts: PointSet) -> Tensor:
    """(N,) row of each point's voxel at ``x.stride`` (every point has one: voxels come from points)."""
    key = ("index", x.stride, id(x.context))
    if key not in pts._cache:
        s = x.stride
        v = torch.floor(pts.coords / s).to(torch.int32) * s
        q = C.linearize(torch.cat([pts.batch[:, None].to(torch.int32), v], dim=1))
        found, pos = C.lookup(x.context.keys(s), q)
        if not bool(found.all()):
            raise ValueError("points do not belong to this tensor's coordinate context")
        pts._cache[key] = pos
    return pts._cache[key]


def point_to_voxel(x: SparseTensor, pts: PointSet, feats: Tensor) -> SparseTensor:
    """Mean of point features (N, C) per voxel of ``x``'s stride: a tensor on ``x``'s voxels."""
    idx = _voxel_index(x, pts)
    n = x.coords.shape[0]
    acc = torch.float32 if feats.dtype in (torch.float16, torch.bfloat16) else feats.dtype  # sums of many points
    counts = torch.bincount(idx, minlength=n).clamp_(min=1).to(acc)
    out = torch.zeros(n, feats.shape[1], dtype=acc, device=feats.device)
    out = add_rows_(out, idx, feats.to(acc)) / counts[:, None]
    return x.replace(out.to(feats.dtype))


def _trilinear(x: SparseTensor, pts: PointSet) -> tuple[Tensor, Tensor]:
    """Corner rows (N, 8) int64 and renormalised weights (N, 8) at ``x.stride`` (cached)."""
    key = ("trilinear", x.stride, id(x.context))
    if key not in pts._cache:
        s = x.stride
        u = pts.coords / s - 0.5  # centre of voxel v·s sits at u = v
        base = torch.floor(u)
        frac = u - base
        rows, weights = [], []
        for corner in C.kernel_offsets(2).tolist():  # (0,0,0), (0,0,1), ... z fastest
            c = torch.tensor(corner, device=u.device, dtype=u.dtype)
            w = torch.prod(torch.where(c.bool(), frac, 1.0 - frac), dim=1)
            v = ((base + c) * s).to(torch.int32)
            q = C.linearize(torch.cat([pts.batch[:, None].to(torch.int32), v], dim=1))
            found, pos = C.lookup(x.context.keys(s), q)
            rows.append(torch.where(found, pos, torch.zeros_like(pos)))
            weights.append(torch.where(found, w, torch.zeros_like(w)))
        w = torch.stack(weights, dim=1)
        pts._cache[key] = (torch.stack(rows, dim=1), w / w.sum(dim=1, keepdim=True))
    return pts._cache[key]


def voxel_to_point(x: SparseTensor, pts: PointSet, mode: str = "trilinear") -> Tensor:
    """Features (N, C) at every point from the voxels of ``x`` (``mode``: trilinear or nearest)."""
    if mode == "nearest":
        return x.feats[_voxel_index(x, pts)]
    if mode == "trilinear":
        rows, w = _trilinear(x, pts)
        out = x.feats[rows[:, 0]] * w[:, :1]
        for j in range(1, 8):  # a loop, not one (N, 8, C) gather: 8x less peak memory
            out = out + x.feats[rows[:, j]] * w[:, j : j + 1]
        return out
    raise ValueError(f"unknown interpolation mode {mode!r}")
