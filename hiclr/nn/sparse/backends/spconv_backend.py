"""The spconv 2.x backend: spconv builds the index pairs and runs its gather-GEMM-scatter kernels.

hiclr keeps its own coordinate sets; this adapter shifts them to spconv's non-negative indices
(``(c - origin) / stride``), lets ``spconv.pytorch.ops.get_indice_pairs`` build the pairs (native
algorithm), and reorders spconv's output rows to hiclr's (sorted-key) rows:

* submanifold: spconv keeps the input rows, nothing to reorder;
* strided: spconv's output voxels (a superset of hiclr's for odd kernels, which spconv pads) are
  looked up and the rows of hiclr's voxels taken;
* transposed: the pairs of the strided convolution from the finer level are inverted
  (``indice_inverse_conv``), with the coarse features first put into spconv's output order.

Weights: hiclr's (k³, C_in, C_out) becomes spconv's KRSC ``(C_out, k, k, k, C_in)``; the spatial
axes are hiclr's ``x, y, z`` in that order, so the offset order is the same.

Caution (measured, spconv 2.3.8): on a CPU-only torch its backward pass needs CUDA and fails, and its
CPU results are wrong with more than one torch thread. Use it on GPUs (``spconv-cu12x`` wheels).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from hiclr.errors import MissingDependencyError
from hiclr.nn.sparse import coords as C

try:
    from spconv.core import ConvAlgo
    from spconv.pytorch import functional as Fsp
    from spconv.pytorch import ops as spops
except ImportError as exc:  # pragma: no cover - only without spconv
    raise MissingDependencyError("spconv", "spconv", "the 'spconv' sparse backend") from exc

_ALIGN = 64  # origin and grid extent are multiples of this: strides up to 64 stay aligned


class SpconvBackend:
    name = "spconv"

    def _state(self, ctx) -> dict[str, Any]:
        st = ctx.backend_state.get("spconv")
        if st is None:
            base = ctx.coords(1)
            lo = torch.div(base[:, 1:].min(0).values, _ALIGN, rounding_mode="floor") * _ALIGN
            extent = base[:, 1:].max(0).values - lo + 1
            extent = torch.div(extent + _ALIGN - 1, _ALIGN, rounding_mode="floor") * _ALIGN
            st = {
                "origin": lo,
                "extent": [int(e) for e in extent],
                "batch_size": int(base[:, 0].max()) + 1,
                "pairs": {},
            }
            ctx.backend_state["spconv"] = st
        return st

    def _indices(self, ctx, stride: int) -> tuple[Tensor, list[int]]:
        """spconv indices (N, 4) int32 ``[b, i, j, k]`` and spatial shape of a stride."""
        if stride > _ALIGN:
            raise ValueError(f"the spconv adapter supports strides up to {_ALIGN}, got {stride}")
        st = self._state(ctx)
        c = ctx.coords(stride)
        idx = torch.cat([c[:, :1], torch.div(c[:, 1:] - st["origin"], stride, rounding_mode="floor")], 1)
        return idx.to(torch.int32).contiguous(), [e // stride for e in st["extent"]]

    def _pairs(self, ctx, fine: int, kernel_size: int, subm: bool):
        """(pairs, pair counts, spconv output rows -> hiclr rows at the coarse level or None)."""
        st = self._state(ctx)
        key = (fine, kernel_size, subm)
        if key not in st["pairs"]:
            idx, shape = self._indices(ctx, fine)
            k = kernel_size
            stride, pad = (1, k // 2) if subm else (2, (k - 1) // 2)
            outids, pairs, num = spops.get_indice_pairs(
                idx,
                st["batch_size"],
                shape,
                ConvAlgo.Native,
                [k] * 3,
                [stride] * 3,
                [pad] * 3,
                [1] * 3,
                [0] * 3,
                subm,
                False,
            )
            rows = None
            if not subm:
                coarse = fine * 2
                sp = outids.long()
                sp_coords = torch.cat([sp[:, :1], sp[:, 1:] * coarse + st["origin"].long()], 1)
                # hiclr row of each spconv output voxel (-1 where spconv has an extra padded voxel)
                found, pos = C.lookup(ctx.keys(coarse), C.linearize(sp_coords))
                rows = torch.where(found, pos, torch.full_like(pos, -1))
            st["pairs"][key] = (pairs, num, rows, outids.shape[0])
        return st["pairs"][key]

    def conv(self, x, weight: Tensor, kernel_size: int, out_stride: int, transposed: bool) -> Tensor:
        ctx, k = x.context, kernel_size
        w = weight.permute(2, 0, 1).reshape(weight.shape[2], k, k, k, weight.shape[1]).contiguous()
        feats = x.feats.contiguous()
        algo = ConvAlgo.Native
        if out_stride == x.stride:
            pairs, num, _, n = self._pairs(ctx, x.stride, k, subm=True)
            return Fsp.indice_subm_conv(feats, w, pairs, num, n, algo)
        if out_stride != (x.stride // 2 if transposed else x.stride * 2):
            raise ValueError("the spconv adapter supports stride 2 only")
        if not transposed:
            pairs, num, rows, n = self._pairs(ctx, x.stride, k, subm=False)
            out = Fsp.indice_conv(feats, w, pairs, num, n, algo)
            # hiclr's voxels in hiclr's order: invert rows (spconv row -> hiclr row)
            order = torch.empty(ctx.coords(out_stride).shape[0], dtype=torch.long, device=out.device)
            keep = rows >= 0
            order[rows[keep]] = keep.nonzero().squeeze(1)
            return out[order]
        pairs, num, rows, _ = self._pairs(ctx, out_stride, k, subm=False)
        sp_feats = feats.new_zeros(rows.shape[0], feats.shape[1])
        keep = rows >= 0
        sp_feats = sp_feats.index_put((keep.nonzero().squeeze(1),), feats[rows[keep]])
        n_out = ctx.coords(out_stride).shape[0]
        return Fsp.indice_inverse_conv(sp_feats, w, pairs, num, n_out, algo)


BACKEND = SpconvBackend()
