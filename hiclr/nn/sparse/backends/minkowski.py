"""The MinkowskiEngine 0.5.4 backend: ME builds the kernel maps and runs the convolutions.

hiclr inserts each of its coordinate sets into one ME ``CoordinateManager`` per context (key:
tensor stride), so ME convolves between exactly hiclr's voxels and its rows can be mapped to
hiclr's rows; ME caches its kernel maps in that manager. Convolutions call ME's autograd
functions (``MinkowskiConvolutionFunction`` / ``MinkowskiConvolutionTransposeFunction``) with the
converted weight, as ``MinkowskiConvolution.forward`` does with its own parameter.

Weights: ME's kernel is (k³, C_in, C_out) like hiclr's, but ME enumerates kernel offsets with
``x`` fastest (``kernel_region::coordinate_at`` in ME's ``src/kernel_region.hpp``: odd kernels
centred, even kernels from 0, as hiclr), hiclr with ``z`` fastest: the adapter permutes the first
axis.

Build it with ``bash scripts/build_minkowski.sh .venv`` (CPU-only, OpenBLAS). On Python ≥ 3.10
``import MinkowskiEngine`` needs ``collections.Sequence``; the shim is set here, before the import.
"""

from __future__ import annotations

import collections
import collections.abc
import warnings
from typing import Any

import torch
from torch import Tensor

from hiclr.errors import MissingDependencyError

if not hasattr(collections, "Sequence"):  # ME 0.5.4 imports collections.Sequence (removed in 3.10)
    collections.Sequence = collections.abc.Sequence  # type: ignore[attr-defined]

try:
    with warnings.catch_warnings():  # a CPU-only build warns at every import; hiclr knows
        warnings.filterwarnings("ignore", message="The MinkowskiEngine was compiled with CPU_ONLY")
        import MinkowskiEngine as ME
    from MinkowskiEngine.MinkowskiConvolution import (
        MinkowskiConvolutionFunction,
        MinkowskiConvolutionTransposeFunction,
    )
    from MinkowskiEngineBackend._C import ConvolutionMode
except ImportError as exc:  # pragma: no cover - only without MinkowskiEngine
    err = MissingDependencyError("MinkowskiEngine", "minkowski", "the 'minkowski' sparse backend")
    err.hint = "bash scripts/build_minkowski.sh .venv  (needs the apt package libopenblas-dev)"
    raise err from exc


def to_me_weight(weight: Tensor, kernel_size: int) -> Tensor:
    """hiclr (k³, C_in, C_out), z fastest -> ME (k³, C_in, C_out), x fastest."""
    k = kernel_size
    w = weight.reshape(k, k, k, weight.shape[1], weight.shape[2])
    return w.permute(2, 1, 0, 3, 4).reshape(k**3, weight.shape[1], weight.shape[2])


class MinkowskiBackend:
    name = "minkowski"

    def _state(self, ctx, device: torch.device) -> dict[str, Any]:
        st = ctx.backend_state.get("minkowski")
        if st is None:
            map_type = ME.CoordinateMapType.CUDA if device.type == "cuda" else ME.CoordinateMapType.CPU
            st = {"manager": ME.CoordinateManager(D=3, coordinate_map_type=map_type), "keys": {}}
            ctx.backend_state["minkowski"] = st
        return st

    def _key(self, ctx, stride: int, device: torch.device):
        """ME key of hiclr's stride-``stride`` coordinates, and ME row -> hiclr row (or None: same)."""
        st = self._state(ctx, device)
        if stride not in st["keys"]:
            coords = ctx.coords(stride).to(device=device, dtype=torch.int32).contiguous()
            key, (unique_map, _) = st["manager"].insert_and_map(coords, [stride] * 3, "")
            unique_map = unique_map.long().to(device)
            same = unique_map.numel() == coords.shape[0] and bool(
                (unique_map == torch.arange(coords.shape[0], device=device)).all()
            )
            st["keys"][stride] = (key, None if same else unique_map)
        return st["keys"][stride]

    def conv(self, x, weight: Tensor, kernel_size: int, out_stride: int, transposed: bool) -> Tensor:
        ctx, device = x.context, x.feats.device
        in_key, in_rows = self._key(ctx, x.stride, device)
        out_key, out_rows = self._key(ctx, out_stride, device)
        ratio = max(x.stride, out_stride) // min(x.stride, out_stride)
        generator = ME.KernelGenerator(
            kernel_size=kernel_size, stride=ratio, dilation=1, is_transpose=transposed, dimension=3
        )
        function = MinkowskiConvolutionTransposeFunction if transposed else MinkowskiConvolutionFunction
        feats = x.feats if in_rows is None else x.feats[in_rows]
        out = function.apply(
            feats.contiguous(),
            to_me_weight(weight, kernel_size).contiguous(),
            generator,
            ConvolutionMode.DEFAULT,
            in_key,
            out_key,
            self._state(ctx, device)["manager"],
        )
        if out_rows is None:
            return out
        return out.new_zeros(out.shape).index_copy(0, out_rows, out)  # ME row j is hiclr row out_rows[j]


BACKEND = MinkowskiBackend()
