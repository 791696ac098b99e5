"""The torchsparse backend: torchsparse builds the kernel maps and runs the convolutions.

What was proven where (``pytest -m backend``: ``tests/nn/test_conv_dense.py``,
``tests/nn/test_backend_models.py``):

* **torchsparse 1.4.0, CPU build, forward only** (built by ``scripts/build_torchsparse.sh`` from the
  vendored upstream tree; torch 2.14.1, CPU): submanifold (k = 3, 5), strided (k = 2, 3; stride 2 → 4)
  and transposed (k = 2, 3) convolutions equal a dense ``conv3d`` / ``conv_transpose3d`` to 1e-4, and
  MinkUNet14A and SPVCNN give the ``torch`` backend's outputs with the same state dict. Its CPU
  backward raises ``NotImplementedError`` upstream (``torchsparse/nn/functional/conv.py``): gradients
  were **not** proven on CPU (those tests skip, saying so).
* **torchsparse 1.4.0 / 2.1.0 on CUDA: not proven yet.** The same tests move their tensors to the GPU
  when one is visible (gradients included); ``benchmarks/gpu_throughput.sh`` builds 2.1.0 with
  ``FORCE_CUDA=1`` and runs them. The 2.x path below (batch-first, per-level voxel indices) follows
  2.1.0's source but has never run.
* torchsparse 2.1.0 cannot run a convolution on CPU at all (its kernel-map builders exist only in its
  CUDA build), and ``import torchsparse`` 2.x calls ``torch.cuda.get_device_capability()``, which
  raises without an NVIDIA driver: this module turns that into one :class:`HiclrError` line.

How it maps hiclr onto torchsparse 1.x (coordinates ``[x, y, z, batch]``, in stride-1 units):

* batch folded into ``x``: 1.4.0's CPU ``kernel_hash`` hashes every query with the batch index of
  the *first* row (``cur_coord[3] = data[3]`` in ``backend/hash/hash_cpu.cpp``; the CUDA kernel
  advances ``data`` first), so scene 1 of a batch would read scene 0's voxels. The adapter hands
  torchsparse ``[x + b·2¹⁸, y, z, 0]``: one "scene" whose parts lie 2¹⁸ voxels apart (hiclr keeps
  ``|x| < 2¹⁷``, so no kernel reaches across, and strides up to 2¹⁸ divide the shift, so
  downsampling commutes with it). On CUDA it changes nothing.
* kernel maps: one torchsparse cache (``cmaps``/``kmaps``) per hiclr context, shared by every
  torchsparse tensor the adapter creates. Inputs are always given in hiclr's row order, so
  submanifold outputs are in hiclr's order and so are transposed outputs (their rows are those of
  the input of the strided convolution that went down).
* strided: torchsparse's output voxels (for odd kernels a superset: every stride-aligned voxel a
  kernel reaches) are looked up and hiclr's voxels taken, in hiclr's order; the coordinates are kept
  per (level, kernel, ratio).
* transposed: torchsparse builds a transposed map only by reversing the strided map of the same
  kernel from the finer level. If no strided convolution with that kernel went down in this
  context (a U-Net that goes down with k = 2 and comes up with k = 3), the adapter builds that map
  with a one-channel all-zero strided convolution first. The coarse features are put in that convolution's
  output order, zeros on its extra voxels.
* weights: (k³, C_in, C_out) like hiclr's; torchsparse enumerates offsets with ``x`` fastest for
  odd kernels (MinkowskiEngine's order) and ``z`` fastest for even kernels (hiclr's order); odd
  kernels are centred, even ones start at 0, as hiclr's.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor

from hiclr.errors import HiclrError, MissingDependencyError, one_line
from hiclr.nn.sparse import coords as C

_BUILD_HINT = "bash scripts/build_torchsparse.sh .venv  (torchsparse 1.4.0 from ../shared/vendor; needs the apt package libsparsehash-dev)"

try:
    import torchsparse
    import torchsparse.nn.functional as tsF
except ImportError as exc:  # pragma: no cover - only without torchsparse
    err = MissingDependencyError("torchsparse", "torchsparse", "the 'torchsparse' sparse backend")
    err.hint = _BUILD_HINT
    raise err from exc
except Exception as exc:  # noqa: BLE001 - torchsparse 2.x probes CUDA at import and raises without a driver
    raise HiclrError(
        f"torchsparse cannot be imported here: {type(exc).__name__}: {one_line(str(exc), 200)}",
        "torchsparse 2.x needs an NVIDIA GPU and driver even to import; on a CPU-only machine build "
        "torchsparse 1.4.0 (" + _BUILD_HINT + ") or use the torch backend (--set train.backend=torch)",
    ) from None

FOLD = C.R  # 1.x: scene b lies at x + b * FOLD (see the module docstring)


def _version() -> tuple[int, int]:
    parts = str(getattr(torchsparse, "__version__", "2.1.0")).split(".")
    major = int(parts[0])
    minor = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    return major, minor


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
        self.version = str(getattr(torchsparse, "__version__", "?"))
        # torchsparse >= 2.1: [b, x, y, z] with per-level voxel indices; earlier: [x, y, z, b]
        self.batch_first = _version() >= (2, 1)
        # torchsparse 2.1's conv3d takes `training` (it keeps backward data only when set)
        self.has_training_flag = "training" in inspect.signature(tsF.conv3d).parameters
        if self.batch_first and hasattr(torchsparse, "tensor"):
            allow = getattr(torchsparse.tensor, "set_allow_negative_coordinates", None)
            if allow is not None:
                allow(True)  # hiclr's coordinates are centred on the scene

    # -- coordinates ---------------------------------------------------------------------------
    def _to_ts_coords(self, c: Tensor, stride: int) -> Tensor:
        """hiclr ``[b, x, y, z]`` (multiples of ``stride``) -> torchsparse's layout of this version."""
        if self.batch_first:
            return torch.cat([c[:, :1], torch.div(c[:, 1:], stride, rounding_mode="floor")], 1).to(torch.int32)
        if FOLD % stride != 0:
            raise ValueError(f"the torchsparse 1.x adapter supports strides dividing {FOLD}, got {stride}")
        c = c.to(torch.int32)
        x = c[:, 1] + c[:, 0] * FOLD
        return torch.stack([x, c[:, 2], c[:, 3], torch.zeros_like(x)], 1).contiguous()

    def _ts_keys(self, ts: Tensor, stride: int) -> Tensor:
        """hiclr linear keys of torchsparse coordinates at ``stride``."""
        ts = ts.long()
        if self.batch_first:
            return C.linearize(torch.cat([ts[:, :1], ts[:, 1:] * stride], 1))
        b = torch.div(ts[:, 0] + C.H, FOLD, rounding_mode="floor")
        return C.linearize(torch.stack([b, ts[:, 0] - b * FOLD, ts[:, 1], ts[:, 2]], 1))

    def _ts_rows(self, ctx, ts: Tensor, stride: int) -> Tensor:
        """hiclr row of each torchsparse voxel at ``stride``; -1 where hiclr has no such voxel."""
        found, pos = C.lookup(ctx.keys(stride), self._ts_keys(ts, stride))
        return torch.where(found, pos, torch.full_like(pos, -1))

    # -- torchsparse tensors sharing one cache per context ------------------------------------------
    def _state(self, ctx) -> dict[str, Any]:
        st = ctx.backend_state.get("torchsparse")
        if st is None:
            st = {"coords": {}, "down": {}, "caches": None}
            ctx.backend_state["torchsparse"] = st
        return st

    def _level(self, ctx, stride: int, device: torch.device) -> Tensor:
        st = self._state(ctx)
        if stride not in st["coords"]:
            st["coords"][stride] = self._to_ts_coords(ctx.coords(stride).to(device), stride)
        return st["coords"][stride]

    def _tensor(self, ctx, feats: Tensor, ts_coords: Tensor, stride: int):
        """A torchsparse tensor at ``stride`` sharing this context's torchsparse caches."""
        st = self._state(ctx)
        t = torchsparse.SparseTensor(feats, ts_coords, stride)
        if hasattr(t, "_caches"):  # 2.x
            if st["caches"] is None:
                st["caches"] = t._caches
            t._caches = st["caches"]
        else:  # 1.x
            if st["caches"] is None:
                st["caches"] = (t.cmaps, t.kmaps)
            t.cmaps, t.kmaps = st["caches"]
            # a transposed convolution takes its output coordinates from cmaps: hiclr's, in hiclr's order
            t.cmaps[(stride,) * 3] = self._level(ctx, stride, feats.device)
        return t

    def _conv3d(self, t, w: Tensor, k: int, ratio: int, transposed: bool):
        extra = {"training": torch.is_grad_enabled()} if self.has_training_flag else {}
        return tsF.conv3d(t, w, k, None, ratio, transposed=transposed, **extra)

    def _down(self, ctx, fine: int, k: int, ratio: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """(torchsparse output coordinates, their hiclr rows or -1) of the strided convolution with
        kernel ``k`` from ``fine``, building its kernel map (a one-channel all-zero convolution) if needed."""
        st = self._state(ctx)
        key = (fine, k, ratio)
        if key not in st["down"]:
            n = ctx.coords(fine).shape[0]
            t = self._tensor(ctx, torch.zeros(n, 1, device=device), self._level(ctx, fine, device), fine)
            with torch.no_grad():
                out = self._conv3d(t, torch.zeros(k**3, 1, 1, device=device), k, ratio, False)
            st["down"][key] = (out.C, self._ts_rows(ctx, out.C, fine * ratio))
        return st["down"][key]

    def conv(self, x, weight: Tensor, kernel_size: int, out_stride: int, transposed: bool) -> Tensor:
        ctx, k, device = x.context, kernel_size, x.feats.device
        w = to_ts_weight(weight, k)
        if out_stride == x.stride:  # submanifold: rows follow the input, hiclr's order
            t = self._tensor(ctx, x.feats, self._level(ctx, x.stride, device), x.stride)
            return self._conv3d(t, w, k, 1, False).F
        ratio = max(x.stride, out_stride) // min(x.stride, out_stride)
        if not transposed:
            t = self._tensor(ctx, x.feats, self._level(ctx, x.stride, device), x.stride)
            out = self._conv3d(t, w, k, ratio, False)
            rows = self._ts_rows(ctx, out.C, out_stride)
            self._state(ctx)["down"].setdefault((x.stride, k, ratio), (out.C, rows))
            keep = (rows >= 0).nonzero().squeeze(1)
            if keep.numel() != ctx.coords(out_stride).shape[0]:
                raise RuntimeError("torchsparse's strided convolution missed voxels that hiclr has at this stride")
            return out.F.new_zeros(keep.numel(), out.F.shape[1]).index_copy(0, rows[keep], out.F[keep])
        # transposed: the coarse features in the order of the strided map's outputs, zeros where hiclr
        # has no voxel (torchsparse's extra voxels of odd kernels)
        ts_coarse, rows = self._down(ctx, out_stride, k, ratio, device)
        keep = (rows >= 0).nonzero().squeeze(1)
        feats = x.feats.new_zeros(ts_coarse.shape[0], x.feats.shape[1]).index_copy(0, keep, x.feats[rows[keep]])
        t = self._tensor(ctx, feats, ts_coarse, x.stride)
        return self._conv3d(t, w, k, ratio, True).F


BACKEND = TorchsparseBackend()
