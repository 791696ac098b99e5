"""The pure-PyTorch backend: sorted keys + searchsorted kernel maps, gather → matmul → scatter-add.

It runs wherever PyTorch runs (CPU and GPU) and is the reference the other backends are tested
against. Kernel maps come from :meth:`CoordinateContext.kernel_map` and are cached there.

The convolution is one autograd function with a hand-written backward: letting autograd
differentiate the per-offset gathers would allocate and sum one full-size (N_in, C_in) gradient
per kernel offset (27 per layer); here each offset adds its rows into one buffer.

Mixed precision. Under ``torch.autocast`` (bf16 or fp16, CPU or CUDA) the GEMMs run in the autocast
dtype, as ``torch.mm`` does there, but the sums over kernel offsets (forward output, input gradient)
and the weight gradient are accumulated in float32 and rounded once; the output is in the autocast
dtype, the gradients in the dtypes of the inputs. float64 inputs are never cast (as autocast).
"""

from __future__ import annotations

import torch
from torch import Tensor

from hiclr.nn.sparse.coords import KernelMap

_LOW = (torch.float16, torch.bfloat16)


def add_rows_(out: Tensor, index: Tensor, rows: Tensor) -> Tensor:
    """``out[index[j]] += rows[j]`` in place (repeated indices accumulate).

    On CPU, ``index_put_(accumulate=True)`` is several times faster than ``index_add_`` (measured
    5-10x at 2-77 k rows, benchmarks/bench_backbone.py); on CUDA ``index_add_`` is the fast one."""
    if out.is_cuda:
        return out.index_add_(0, index, rows)
    return out.index_put_((index,), rows, accumulate=True)


def compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype the GEMMs of a convolution on ``x`` run in: autocast's when it is on, else ``x``'s."""
    dev = x.device.type
    if x.dtype == torch.float64 or not torch.is_autocast_enabled(dev):
        return x.dtype
    return torch.get_autocast_dtype(dev)


def _accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in _LOW else dtype


class _SparseConvFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, feats: Tensor, weight: Tensor, kmap: KernelMap, n_out: int, center: int) -> Tensor:
        """``out[o] = Σ_k Σ_{(i, o) ∈ kmap[k]} feats[i] @ weight[k]``; ``center`` >= 0 is an identity offset."""
        dtype = compute_dtype(feats)
        acc = _accumulate_dtype(dtype)
        ctx.kmap, ctx.center, ctx.dtypes = kmap, center, (feats.dtype, weight.dtype)
        f, w = feats.to(dtype), weight.to(dtype)  # no copies without autocast
        ctx.save_for_backward(f, w)
        if center >= 0:
            out = (f @ w[center]).to(acc)
        else:
            out = f.new_zeros(n_out, w.shape[2], dtype=acc)
        for k, (i, o) in enumerate(kmap):
            if k != center and i.numel() > 0:
                add_rows_(out, o, (f.index_select(0, i) @ w[k]).to(acc))
        return out.to(dtype)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        f, w = ctx.saved_tensors
        kmap, center = ctx.kmap, ctx.center
        acc = _accumulate_dtype(f.dtype)
        g_all = grad_out.to(f.dtype).contiguous()
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_x = grad_w = None
        if need_w:
            grad_w = torch.zeros(w.shape, dtype=acc, device=w.device)
        if need_x:
            grad_x = (g_all @ w[center].T).to(acc) if center >= 0 else f.new_zeros(f.shape, dtype=acc)
        for k, (i, o) in enumerate(kmap):
            if i.numel() == 0:
                continue
            if k == center:
                if need_w:
                    grad_w[k] = f.T @ g_all
                continue
            g = g_all.index_select(0, o)  # (M_k, C_out)
            if need_w:
                grad_w[k] = f.index_select(0, i).T @ g
            if need_x:
                add_rows_(grad_x, i, (g @ w[k].T).to(acc))
        x_dtype, w_dtype = ctx.dtypes
        return (grad_x.to(x_dtype) if need_x else None, grad_w.to(w_dtype) if need_w else None, None, None, None)


class TorchBackend:
    name = "torch"

    def conv(self, x, weight: Tensor, kernel_size: int, out_stride: int, transposed: bool) -> Tensor:
        ctx = x.context
        kmap = ctx.kernel_map(x.stride, out_stride, kernel_size, transposed)
        n_out = ctx.coords(out_stride).shape[0]
        center = (kernel_size**3) // 2 if out_stride == x.stride and kernel_size % 2 == 1 else -1
        return _SparseConvFunction.apply(x.feats, weight, kmap, n_out, center)


BACKEND = TorchBackend()
