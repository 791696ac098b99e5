"""The pure-PyTorch backend: sorted keys + searchsorted kernel maps, then one of three algorithms.

It runs wherever PyTorch runs (CPU and GPU) and is the reference the other backends are tested
against. Kernel maps come from :meth:`CoordinateContext.kernel_map` and are cached there, so the
backward pass reuses the forward's maps.

Three algorithms compute the same convolution (``HICLR_TORCH_CONV`` or :func:`settings` picks one):

- ``offsets`` (the default): per kernel offset, gather the input rows, one GEMM, scatter-add into
  the output (``index_add_``). Few FLOPs, but three kernels per offset: 27 × 3 per layer and pass.
- ``fused``: the ``offsets`` arithmetic with one gather and one scatter per group of offsets:
  the pairs of every non-centre offset are concatenated once per kernel map; consecutive offsets
  whose gathered pairs fit in ``fused_block`` elements are gathered in one ``index_select``,
  multiplied offset by offset into slices of one buffer (``torch.mm(out=)``) and scattered in one
  ``index_add_``. With one group per layer that is 27 + 2 kernels per layer and pass instead of
  27 × 3, meant for GPUs; the default block keeps the buffers small enough for a CPU's caches.
  With ``fused_gemm`` ``grouped`` the per-offset GEMMs of a group are one grouped GEMM
  (``torch.nn.functional.grouped_mm``; CUTLASS kernels for bf16 on CUDA 9.x/10.x devices), so a
  layer with one group is a few kernels per pass: 3 forward, 5 backward, plus the centre's GEMMs.
- ``table``: a neighbour table (N_out, K') of input rows per output (a zero row where a neighbour is
  missing) turns the layer into one gather and one GEMM of width K'·C_in with no scatter at all;
  the input gradient is the same with the transposed table (N_in, K'), and the weight gradient one
  GEMM. It does the work of every table slot, occupied or not, so a layer uses it only when at
  least ``table_min_density`` of its slots are occupied (the kernel-2 transposed convolutions,
  one input per output, 1/8 full, stay on ``offsets``). Gathers are split into row blocks of at
  most ``table_block`` elements to bound memory.

Measured on CPU (``benchmarks/profile_torch_conv.py``, MinkUNet14A at 5 cm, one thread, against
``offsets``): ``table`` takes 1.5-2.0× the time, ``fused`` 1.01-1.11× (1.5-1.9× with one group per
layer, with or without grouped GEMMs, which on CPU are a loop inside PyTorch), so ``offsets`` stays
the default. Whether ``fused`` or
``table`` wins on a GPU is what ``benchmarks/gpu_throughput.sh`` measures; it has not run yet.
``fused`` adds each output's terms in the order ``offsets`` does (on CPU it gave bit-identical
outputs and gradients).

Each is one autograd function with a hand-written backward: letting autograd differentiate the
per-offset gathers would allocate and sum one full-size (N_in, C_in) gradient per kernel offset.

Mixed precision. Under ``torch.autocast`` (bf16 or fp16, CPU or CUDA) the GEMMs run in the autocast
dtype, as ``torch.mm`` does there, but the sums over kernel offsets (forward output, input gradient)
and the weight gradient are accumulated in float32 and rounded once (``table``: inside the GEMM,
which accumulates in float32); the output is in the autocast dtype, the gradients in the dtypes of
the inputs. float64 inputs are never cast (as autocast).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from hiclr.errors import HiclrError
from hiclr.nn.sparse.coords import KernelMap

_LOW = (torch.float16, torch.bfloat16)
ALGORITHMS = ("offsets", "fused", "table")
SCATTERS = ("index_add", "index_put")
FUSED_GEMMS = ("auto", "loop", "grouped")


@dataclass(frozen=True)
class ConvSettings:
    """How the ``torch`` backend runs a convolution (see the module docstring).

    Attributes:
        algorithm: ``offsets``, ``fused`` or ``table``.
        scatter: the scatter-add of ``offsets``: ``index_add`` (``index_add_``, measured 1.3-5x
            faster than ``index_put_(accumulate=True)`` on CPU with torch 2.14 at one thread, up to
            8x at two, and the fast one on CUDA) or ``index_put`` (the previous release's CPU
            choice, kept to measure against).
        table_min_density: ``table`` only: the least fraction of occupied table slots for which a
            layer uses the table.
        table_block: ``table`` only: the most elements one gathered block may hold.
        fused_block: ``fused`` only: the most elements the gathered pairs of one group of offsets
            may hold. Small groups keep the buffers in cache: on CPU (MinkUNet14A at 5 cm, one
            thread) 2²¹ made ``fused`` 1.01-1.11× the time of ``offsets``, 2²⁶ 1.5-1.9×.
        fused_gemm: ``fused`` only: how a group's per-offset GEMMs run. ``loop``: one ``torch.mm``
            per offset; ``grouped``: one ``torch.nn.functional.grouped_mm`` per group and pass
            (CUTLASS grouped GEMM kernels for bf16 on CUDA devices of compute capability 9.x and
            10.x, a loop of GEMMs inside PyTorch elsewhere) wherever the channel counts are a
            multiple of 16 bytes and the dtype is not float64, ``loop`` elsewhere; ``auto`` (the
            default): ``grouped`` only where it is one kernel (bf16 on those GPUs), else ``loop``.
        reuse_maps: build kernel maps from maps already built (transposed = reversed strided,
            submanifold offsets mirrored; :meth:`CoordinateContext.kernel_map`). Same maps.
    """

    algorithm: str = "offsets"
    scatter: str = "index_add"
    table_min_density: float = 0.25
    table_block: int = 1 << 26
    fused_block: int = 1 << 21
    fused_gemm: str = "auto"
    reuse_maps: bool = True

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise HiclrError(
                f"HICLR_TORCH_CONV={self.algorithm!r} is not a torch-backend algorithm",
                f"use one of: {', '.join(ALGORITHMS)}",
            )
        if self.scatter not in SCATTERS:
            raise HiclrError(f"unknown scatter {self.scatter!r}", f"use one of: {', '.join(SCATTERS)}")
        if self.fused_gemm not in FUSED_GEMMS:
            raise HiclrError(f"unknown fused_gemm {self.fused_gemm!r}", f"use one of: {', '.join(FUSED_GEMMS)}")
        if not 0.0 <= self.table_min_density <= 1.0 or self.table_block < 1 or self.fused_block < 1:
            raise HiclrError("table_min_density must be in [0, 1], table_block and fused_block >= 1", "fix the setting")


_settings = ConvSettings(algorithm=os.environ.get("HICLR_TORCH_CONV", "offsets"))


def current_settings() -> ConvSettings:
    return _settings


@contextmanager
def settings(**changes) -> Iterator[ConvSettings]:
    """Run the ``torch`` backend with some :class:`ConvSettings` fields changed, then restore them."""
    global _settings
    old = _settings
    _settings = replace(old, **changes)
    try:
        yield _settings
    finally:
        _settings = old


def add_rows_(out: Tensor, index: Tensor, rows: Tensor) -> Tensor:
    """``out[index[j]] += rows[j]`` in place (repeated indices accumulate)."""
    if _settings.scatter == "index_put":
        return out.index_put_((index,), rows, accumulate=True)
    return out.index_add_(0, index, rows)


def compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype the GEMMs of a convolution on ``x`` run in: autocast's when it is on, else ``x``'s."""
    dev = x.device.type
    if x.dtype == torch.float64 or not torch.is_autocast_enabled(dev):
        return x.dtype
    return torch.get_autocast_dtype(dev)


def _accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in _LOW else dtype


def _forward_start(ctx, feats: Tensor, weight: Tensor, n_out: int, center: int) -> tuple[Tensor, Tensor, Tensor]:
    """Features and weights in the compute dtype (saved for backward), and the output accumulator
    holding the centre offset's product (identity pairs, one GEMM) or zeros."""
    dtype = compute_dtype(feats)
    ctx.center, ctx.dtypes = center, (feats.dtype, weight.dtype)
    f, w = feats.to(dtype), weight.to(dtype)  # no copies without autocast
    ctx.save_for_backward(f, w)
    acc = _accumulate_dtype(dtype)
    out = (f @ w[center]).to(acc) if center >= 0 else f.new_zeros(n_out, w.shape[2], dtype=acc)
    return f, w, out


def _backward_start(ctx, grad_out: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:
    """``f``, ``w``, the output gradient in their dtype, and the input and weight gradient
    accumulators (None where not needed) holding the centre offset's terms."""
    f, w = ctx.saved_tensors
    center, acc = ctx.center, _accumulate_dtype(f.dtype)
    g_all = grad_out.to(f.dtype).contiguous()
    grad_x = grad_w = None
    if ctx.needs_input_grad[1]:
        grad_w = torch.zeros(w.shape, dtype=acc, device=w.device)
        if center >= 0:
            grad_w[center] = f.T @ g_all
    if ctx.needs_input_grad[0]:
        grad_x = (g_all @ w[center].T).to(acc) if center >= 0 else f.new_zeros(f.shape, dtype=acc)
    return f, w, g_all, grad_x, grad_w


def _backward_end(ctx, grad_x: Tensor | None, grad_w: Tensor | None) -> tuple:
    x_dtype, w_dtype = ctx.dtypes
    return (None if grad_x is None else grad_x.to(x_dtype), None if grad_w is None else grad_w.to(w_dtype),
            None, None, None)


class _SparseConvFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, feats: Tensor, weight: Tensor, kmap: KernelMap, n_out: int, center: int) -> Tensor:
        """``out[o] = Σ_k Σ_{(i, o) ∈ kmap[k]} feats[i] @ weight[k]``; ``center`` >= 0 is an identity offset."""
        ctx.kmap = kmap
        f, w, out = _forward_start(ctx, feats, weight, n_out, center)
        for k, (i, o) in enumerate(kmap):
            if k != center and i.numel() > 0:
                add_rows_(out, o, (f.index_select(0, i) @ w[k]).to(out.dtype))
        return out.to(f.dtype)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        f, w, g_all, grad_x, grad_w = _backward_start(ctx, grad_out)
        for k, (i, o) in enumerate(ctx.kmap):
            if k == ctx.center or i.numel() == 0:
                continue
            g = g_all.index_select(0, o)  # (M_k, C_out)
            if grad_w is not None:
                grad_w[k] = f.index_select(0, i).T @ g
            if grad_x is not None:
                add_rows_(grad_x, i, (g @ w[k].T).to(grad_x.dtype))
        return _backward_end(ctx, grad_x, grad_w)


@dataclass(frozen=True)
class FusedMap:
    """A kernel map's non-centre pairs concatenated, offset after offset (the ``fused`` algorithm).

    Attributes:
        rows_in: (P,) int64 input rows of every pair.
        rows_out: (P,) int64 output rows of every pair.
        spans: ``(k, start, end)`` per non-empty non-centre offset ``k``: its pairs are
            ``rows_in[start:end]``, ``rows_out[start:end]``.
        groups: per group of spans (its first and last pair), the offsets ``k`` and the span ends
            relative to the group's start, as device tensors for ``grouped_mm`` (built on first use).
    """

    rows_in: Tensor
    rows_out: Tensor
    spans: tuple[tuple[int, int, int], ...]
    groups: dict[tuple[int, int], tuple[Tensor, Tensor]] = field(default_factory=dict, compare=False, repr=False)

    def group_tensors(self, group: tuple[tuple[int, int, int], ...]) -> tuple[Tensor, Tensor]:
        """(G,) int64 offsets and (G,) int32 cumulative span ends of ``group``, on the map's device."""
        key = (group[0][1], group[-1][2])
        if key not in self.groups:
            dev, lo = self.rows_in.device, group[0][1]
            self.groups[key] = (torch.tensor([k for k, _, _ in group], dtype=torch.int64, device=dev),
                                torch.tensor([e - lo for _, _, e in group], dtype=torch.int32, device=dev))
        return self.groups[key]


def fused_map(kmap: KernelMap, center: int) -> FusedMap:
    """The :class:`FusedMap` of ``kmap`` without offset ``center`` (-1: none left out)."""
    keep = [k for k, (i, _) in enumerate(kmap) if k != center and i.numel() > 0]
    spans, start = [], 0
    for k in keep:
        spans.append((k, start, start + kmap[k][0].numel()))
        start = spans[-1][2]
    empty = kmap[0][0].new_zeros(0)
    rows_in = torch.cat([kmap[k][0] for k in keep]) if keep else empty
    rows_out = torch.cat([kmap[k][1] for k in keep]) if keep else empty
    return FusedMap(rows_in, rows_out, tuple(spans))


def _span_groups(spans: tuple[tuple[int, int, int], ...], width: int) -> Iterator[tuple[tuple[int, int, int], ...]]:
    """Consecutive spans in groups of at most ``fused_block`` gathered elements (a lone span may exceed it)."""
    group: list[tuple[int, int, int]] = []
    for span in spans:
        if group and (span[2] - group[0][1]) * width > _settings.fused_block:
            yield tuple(group)
            group = []
        group.append(span)
    if group:
        yield tuple(group)


_grouped_failed: set[tuple[str, torch.dtype]] = set()  # where grouped_mm raised under ``auto``


def _one_kernel_grouped(x: Tensor) -> bool:
    """Whether ``grouped_mm`` on ``x`` is PyTorch's CUTLASS kernel: bf16 on a CUDA 9.x/10.x device."""
    return x.is_cuda and x.dtype == torch.bfloat16 and torch.cuda.get_device_capability(x.device)[0] in (9, 10)


def _grouped(x: Tensor, weights: Tensor) -> bool:
    """Whether a group's GEMMs on ``x`` with ``weights`` (K, C_in, C_out) run as one ``grouped_mm``."""
    mode = _settings.fused_gemm
    if mode == "loop" or x.dtype == torch.float64 or not hasattr(F, "grouped_mm"):
        return False
    align = 16 // x.element_size()  # grouped GEMM kernels need rows of a multiple of 16 bytes
    if weights.shape[1] % align or weights.shape[2] % align:
        return False
    if mode == "grouped":
        return True
    return (x.device.type, x.dtype) not in _grouped_failed and _one_kernel_grouped(x)


def _grouped_mm(a: Tensor, b: Tensor, ends: Tensor) -> Tensor | None:
    """``grouped_mm(a, b, offs=ends)``; under ``auto`` a refusal (a constraint of the kernels this
    code does not check) is one warning and None, and the loop serves that device and dtype from then on."""
    try:
        return F.grouped_mm(a, b, offs=ends)
    except RuntimeError as exc:
        if _settings.fused_gemm == "grouped":
            raise
        _grouped_failed.add((a.device.type, a.dtype))
        warnings.warn(f"torch backend: grouped GEMMs failed on {a.device.type} in {a.dtype} ({str(exc)[:200]}); "
                      "per-offset GEMMs from now on", RuntimeWarning, stacklevel=2)
        return None


def _per_offset_mm(gathered: Tensor, group: tuple[tuple[int, int, int], ...], weights: Tensor,
                   transpose: bool, fmap: FusedMap) -> Tensor:
    """``gathered[span_k] @ w[k]`` (``w[k]ᵀ``) per offset ``k`` of the group, into one buffer."""
    if _grouped(gathered, weights):
        ks, ends = fmap.group_tensors(group)
        wg = weights.index_select(0, ks)
        out = _grouped_mm(gathered, wg.transpose(1, 2) if transpose else wg, ends)
        if out is not None:
            return out
    lo = group[0][1]
    out = gathered.new_empty(gathered.shape[0], weights.shape[1] if transpose else weights.shape[2])
    for k, s, e in group:
        torch.mm(gathered[s - lo:e - lo], weights[k].T if transpose else weights[k], out=out[s - lo:e - lo])
    return out


class _FusedConvFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, feats: Tensor, weight: Tensor, fmap: FusedMap, n_out: int, center: int) -> Tensor:
        """The convolution of :class:`_SparseConvFunction` through a :class:`FusedMap`."""
        ctx.fmap = fmap
        f, w, out = _forward_start(ctx, feats, weight, n_out, center)
        for group in _span_groups(fmap.spans, max(w.shape[1], w.shape[2])):
            lo, hi = group[0][1], group[-1][2]
            products = _per_offset_mm(f.index_select(0, fmap.rows_in[lo:hi]), group, w, False, fmap)
            out.index_add_(0, fmap.rows_out[lo:hi], products.to(out.dtype))
        return out.to(f.dtype)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        f, w, g_all, grad_x, grad_w = _backward_start(ctx, grad_out)
        fmap = ctx.fmap
        for group in _span_groups(fmap.spans, max(w.shape[1], w.shape[2])):
            lo, hi = group[0][1], group[-1][2]
            gg = g_all.index_select(0, fmap.rows_out[lo:hi])
            if grad_x is not None:  # grad_x[i] += g[o] @ w[k]ᵀ over the pairs (i, o) of offset k
                grad_x.index_add_(0, fmap.rows_in[lo:hi], _per_offset_mm(gg, group, w, True, fmap).to(grad_x.dtype))
            if grad_w is not None:  # grad_w[k] = Σ f[i]ᵀ g[o]
                fg = f.index_select(0, fmap.rows_in[lo:hi])
                grouped = _grouped_mm(fg.T, gg, fmap.group_tensors(group)[1]) if _grouped(fg, w) else None
                if grouped is not None:  # (G, C_in, C_out)
                    grad_w.index_copy_(0, fmap.group_tensors(group)[0], grouped.to(grad_w.dtype))
                else:
                    for k, s, e in group:
                        grad_w[k] = fg[s - lo:e - lo].T @ gg[s - lo:e - lo]
        return _backward_end(ctx, grad_x, grad_w)


@dataclass(frozen=True)
class KernelTable:
    """A kernel map as dense neighbour tables over the offsets that have pairs.

    Attributes:
        offsets: (K',) int64 kernel-offset indices with at least one pair, ascending.
        rows_in: (N_out, K') int64: the input row output ``o`` reads at offset ``offsets[j]``,
            ``N_in`` (a zero row) where there is none.
        rows_out: (N_in, K') int64: the output row input ``i`` feeds at ``offsets[j]``, ``N_out``
            where there is none (the transposed table, for the input gradient).
        density: the fraction of ``rows_in`` slots that hold a pair.
    """

    offsets: Tensor
    rows_in: Tensor
    rows_out: Tensor
    density: float


def kernel_table(kmap: KernelMap, n_in: int, n_out: int) -> KernelTable:
    """The :class:`KernelTable` of a kernel map between ``n_in`` input and ``n_out`` output rows.

    Within one offset an output reads at most one input and an input feeds at most one output
    (coordinates are unique), so both tables are well defined."""
    used = [k for k, (i, _) in enumerate(kmap) if i.numel() > 0]
    device = kmap[0][0].device
    rows_in = torch.full((n_out, len(used)), n_in, dtype=torch.long, device=device)
    rows_out = torch.full((n_in, len(used)), n_out, dtype=torch.long, device=device)
    pairs = 0
    for j, k in enumerate(used):
        i, o = kmap[k]
        rows_in[o, j] = i
        rows_out[i, j] = o
        pairs += i.numel()
    density = pairs / max(1, n_out * len(used))
    return KernelTable(torch.tensor(used, dtype=torch.long, device=device), rows_in, rows_out, density)


def _padded(x: Tensor) -> Tensor:
    """``x`` with one zero row appended (the row missing neighbours read)."""
    return torch.cat([x, x.new_zeros(1, x.shape[1])])


def _row_blocks(rows: int, width: int) -> Iterator[slice]:
    """Row slices whose gathered blocks (rows × ``width``) hold at most ``table_block`` elements."""
    step = max(1, _settings.table_block // max(1, width))
    for s in range(0, rows, step):
        yield slice(s, min(rows, s + step))


def _gathered(x: Tensor, table: Tensor) -> Tensor:
    """(R, K'·C): row ``r`` is ``x[table[r, 0]], …, x[table[r, K'-1]]`` side by side."""
    return x.index_select(0, table.reshape(-1)).view(table.shape[0], -1)


def _table_gemm(x: Tensor, table: Tensor, weight: Tensor) -> Tensor:
    """``_gathered(x, table) @ weight`` in row blocks; ``x`` zero-padded (N + 1, C), ``weight`` (K'·C, C_out)."""
    out = x.new_empty(table.shape[0], weight.shape[1])
    for b in _row_blocks(table.shape[0], table.shape[1] * x.shape[1]):
        out[b] = _gathered(x, table[b]) @ weight
    return out


class _TableConvFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, feats: Tensor, weight: Tensor, table: KernelTable) -> Tensor:
        """The convolution of :class:`_SparseConvFunction` through a :class:`KernelTable`."""
        dtype = compute_dtype(feats)
        ctx.table, ctx.dtypes = table, (feats.dtype, weight.dtype)
        f, w = feats.to(dtype), weight.to(dtype)
        ctx.save_for_backward(f, w)
        wk = w.index_select(0, table.offsets)  # (K', C_in, C_out)
        return _table_gemm(_padded(f), table.rows_in, wk.reshape(-1, w.shape[2]))

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        f, w = ctx.saved_tensors
        table = ctx.table
        acc = _accumulate_dtype(f.dtype)
        g = grad_out.to(f.dtype).contiguous()
        wk = w.index_select(0, table.offsets)
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_x = grad_w = None
        if need_x:  # grad_x[i] = Σ_j g[rows_out[i, j]] @ w[offsets[j]]ᵀ: the transposed table
            grad_x = _table_gemm(_padded(g), table.rows_out, wk.transpose(1, 2).reshape(-1, w.shape[1]))
        if need_w:  # grad_w[offsets[j]] = Σ_o f[rows_in[o, j]]ᵀ g[o]
            fp, rows_in = _padded(f), table.rows_in
            flat = torch.zeros(rows_in.shape[1] * f.shape[1], w.shape[2], dtype=acc, device=w.device)
            for b in _row_blocks(rows_in.shape[0], flat.shape[0]):
                flat += (_gathered(fp, rows_in[b]).T @ g[b]).to(acc)
            grad_w = torch.zeros(w.shape, dtype=acc, device=w.device)
            grad_w[table.offsets] = flat.view(-1, w.shape[1], w.shape[2])
        x_dtype, w_dtype = ctx.dtypes
        return (grad_x.to(x_dtype) if need_x else None, grad_w.to(w_dtype) if need_w else None, None)


class TorchBackend:
    name = "torch"

    def conv(self, x, weight: Tensor, kernel_size: int, out_stride: int, transposed: bool) -> Tensor:
        ctx = x.context
        kmap = ctx.kernel_map(x.stride, out_stride, kernel_size, transposed, _settings.reuse_maps)
        n_out = ctx.coords(out_stride).shape[0]
        if _settings.algorithm == "table":
            key = ("torch-table", x.stride, out_stride, kernel_size, transposed)
            table = ctx.backend_state.get(key)
            if table is None:
                with torch.profiler.record_function("hiclr::kernel_table"):
                    table = ctx.backend_state[key] = kernel_table(kmap, x.feats.shape[0], n_out)
            if table.density >= _settings.table_min_density and table.offsets.numel() > 0:
                return _TableConvFunction.apply(x.feats, weight, table)
        center = (kernel_size**3) // 2 if out_stride == x.stride and kernel_size % 2 == 1 else -1
        if _settings.algorithm == "fused":
            key = ("torch-fused", x.stride, out_stride, kernel_size, transposed)
            fmap = ctx.backend_state.get(key)
            if fmap is None:
                fmap = ctx.backend_state[key] = fused_map(kmap, center)
            return _FusedConvFunction.apply(x.feats, weight, fmap, n_out, center)
        return _SparseConvFunction.apply(x.feats, weight, kmap, n_out, center)


BACKEND = TorchBackend()
