"""EXPERIMENTAL: the torchsparse backend (written from torchsparse's API; not tested here).

torchsparse is not on PyPI and could not be installed where hiclr is developed, so this adapter
was written from torchsparse's documented interface (``torchsparse.SparseTensor(feats, coords,
stride)`` and ``torchsparse.nn.functional.conv3d(input, weight, kernel_size, bias, stride, ...,
transposed=...)``) and is exercised by hiclr's dense-equivalence and model tests only where
torchsparse is importable (they run there: ``pytest -m backend``). Trust it after those pass.

How it maps hiclr onto torchsparse:

* coordinates: torchsparse ≥ 2.1 puts the batch index first ``[b, x, y, z]`` (as hiclr);
  earlier versions put it last ``[x, y, z, b]``; the adapter follows ``torchsparse.__version__``.
* one set of torchsparse coordinate/kernel-map caches per hiclr context, attached to every
  torchsparse tensor the adapter creates, so a transposed convolution finds the kernel map of the
  strided convolution that went down (torchsparse builds transposed maps only that way).
* rows: inputs are given in hiclr's order, so submanifold outputs and transposed outputs (whose
  rows are those of the input of the strided convolution that went down) are in hiclr's order;
  strided outputs are reordered from torchsparse's order; the input of a transposed convolution is
  put in torchsparse's order of its level (the order of that level's kernel map).
* weights: (k³, C_in, C_out) like hiclr's; torchsparse enumerates offsets with ``x`` fastest for
  odd kernels (MinkowskiEngine's order) and ``z`` fastest for even kernels (hiclr's order).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor

from hiclr.errors import MissingDependencyError
from hiclr.nn.sparse import coords as C

try:
    import torchsparse
    import torchsparse.nn.functional as tsF
except ImportError as exc:  # pragma: no cover - only without torchsparse
    err = MissingDependencyError("torchsparse", "torchsparse", "the 'torchsparse' sparse backend")
    err.hint = "install torchsparse from https://github.com/mit-han-lab/torchsparse (not on PyPI)"
    raise err from exc


def _batch_first() -> bool:
    parts = str(getattr(torchsparse, "__version__", "2.1.0")).split(".")
    major, minor = int(parts[0]), int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    return (major, minor) >= (2, 1)


def to_ts_weight(weight: Tensor, kernel_size: int) -> Tensor:
    """hiclr (k³, C_in, C_out), z fastest -> torchsparse (x fastest for odd k, unchanged for even k)."""
    k = kernel_size
    if k % 2 == 0:
        return weight
    w = weight.reshape(k, k, k, weight.shape[1], weight.shape[2])
    return w.permute(2, 1, 0, 3, 4).reshape(k**3, weight.shape[1], weight.shape[2])


class TorchsparseBackend:
    name = "torchsparse"

    def __init__(self) -> None:
        self.batch_first = _batch_first()
        # torchsparse 2.1's conv3d takes `training` (it keeps backward data only when set)
        self.has_training_flag = "training" in inspect.signature(tsF.conv3d).parameters

    def _to_ts_coords(self, c: Tensor) -> Tensor:
        c = c.to(torch.int32)
        return c if self.batch_first else torch.cat([c[:, 1:], c[:, :1]], 1)

    def _from_ts_coords(self, c: Tensor) -> Tensor:
        c = c.to(torch.int32)
        return c if self.batch_first else torch.cat([c[:, 3:], c[:, :3]], 1)

    def _tensor(self, ctx, feats: Tensor, coords: Tensor, stride: int):
        """A torchsparse tensor sharing this context's torchsparse caches."""
        st: dict[str, Any] = ctx.backend_state.setdefault("torchsparse", {})
        t = torchsparse.SparseTensor(feats, self._to_ts_coords(coords), stride)
        if hasattr(t, "_caches"):
            st.setdefault("caches", t._caches)
            t._caches = st["caches"]
        else:
            st.setdefault("cmaps", t.cmaps)
            st.setdefault("kmaps", t.kmaps)
            t.cmaps, t.kmaps = st["cmaps"], st["kmaps"]
        return t

    def _rows(self, ctx, ts_coords: Tensor, stride: int) -> Tensor:
        """hiclr row of each torchsparse row at ``stride``."""
        found, pos = C.lookup(ctx.keys(stride), C.linearize(self._from_ts_coords(ts_coords)))
        if not bool(found.all()):
            raise RuntimeError("torchsparse produced voxels that hiclr does not have at this stride")
        return pos

    def _ts_level_coords(self, t, stride: int) -> Tensor:
        caches = t._caches.cmaps if hasattr(t, "_caches") else t.cmaps
        entry = caches[(stride,) * 3]
        return entry[0] if isinstance(entry, tuple) else entry

    def conv(self, x, weight: Tensor, kernel_size: int, out_stride: int, transposed: bool) -> Tensor:
        ctx, k = x.context, kernel_size
        w = to_ts_weight(weight, k)
        ratio = max(x.stride, out_stride) // min(x.stride, out_stride)
        coords = ctx.coords(x.stride)
        feats = x.feats
        if transposed:  # torchsparse's map from the way down indexes its own row order here
            t0 = self._tensor(ctx, feats, coords, x.stride)
            ts_rows = self._rows(ctx, self._ts_level_coords(t0, x.stride), x.stride)
            feats, coords = feats[ts_rows], ctx.coords(x.stride)[ts_rows]
        t = self._tensor(ctx, feats, coords, x.stride)
        extra = {"training": torch.is_grad_enabled()} if self.has_training_flag else {}
        out = tsF.conv3d(t, w, k, None, ratio, transposed=transposed, **extra)
        if out_stride <= x.stride:
            # submanifold: rows follow the input (hiclr's order); transposed: rows follow the input of
            # the strided convolution that went down, which hiclr also gave in its own order
            return out.F
        rows = self._rows(ctx, out.C, out_stride)  # strided: torchsparse's order of the new level
        return out.F.new_zeros(out.F.shape).index_copy(0, rows, out.F)


BACKEND = TorchsparseBackend()
