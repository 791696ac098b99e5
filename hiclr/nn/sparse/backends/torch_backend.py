"""The pure-PyTorch backend: sorted keys + searchsorted kernel maps, gather → matmul → scatter-add.

It runs wherever PyTorch runs (CPU and GPU) and is the reference the other backends are tested
against. Kernel maps come from :meth:`CoordinateContext.kernel_map` and are cached there.

The convolution is one autograd function with a hand-written backward: letting autograd
differentiate the per-offset gathers would allocate and sum one full-size (N_in, C_in) gradient
per kernel offset (27 per layer); here each offset adds its rows into one buffer.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hiclr.nn.sparse.coords import KernelMap


def add_rows_(out: Tensor, index: Tensor, rows: Tensor) -> Tensor:
    """``out[index[j]] += rows[j]`` in place (repeated indices accumulate).

    On CPU, ``index_put_(accumulate=True)`` is several times faster than ``index_add_`` (measured
    5-10x at 2-77 k rows, benchmarks/bench_backbone.py); on CUDA ``index_add_`` is the fast one."""
    if out.is_cuda:
        return out.index_add_(0, index, rows)
    return out.index_put_((index,), rows, accumulate=True)


class _SparseConvFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, feats: Tensor, weight: Tensor, kmap: KernelMap, n_out: int, center: int) -> Tensor:
        """``out[o] = Σ_k Σ_{(i, o) ∈ kmap[k]} feats[i] @ weight[k]``; ``center`` >= 0 is an identity offset."""
        ctx.kmap, ctx.center = kmap, center
        ctx.save_for_backward(feats, weight)
        if center >= 0:
            out = feats @ weight[center]
        else:
            out = feats.new_zeros(n_out, weight.shape[2])
        for k, (i, o) in enumerate(kmap):
            if k != center and i.numel() > 0:
                add_rows_(out, o, feats.index_select(0, i) @ weight[k])
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        feats, weight = ctx.saved_tensors
        kmap, center = ctx.kmap, ctx.center
        grad_out = grad_out.contiguous()
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_x = grad_w = None
        if need_w:
            grad_w = torch.zeros_like(weight)
        if need_x:
            grad_x = grad_out @ weight[center].T if center >= 0 else torch.zeros_like(feats)
        for k, (i, o) in enumerate(kmap):
            if i.numel() == 0:
                continue
            if k == center:
                if need_w:
                    grad_w[k] = feats.T @ grad_out
                continue
            g = grad_out.index_select(0, o)  # (M_k, C_out)
            if need_w:
                grad_w[k] = feats.index_select(0, i).T @ g
            if need_x:
                add_rows_(grad_x, i, g @ weight[k].T)
        return grad_x, grad_w, None, None, None


class TorchBackend:
    name = "torch"

    def conv(self, x, weight: Tensor, kernel_size: int, out_stride: int, transposed: bool) -> Tensor:
        ctx = x.context
        kmap = ctx.kernel_map(x.stride, out_stride, kernel_size, transposed)
        n_out = ctx.coords(out_stride).shape[0]
        center = (kernel_size**3) // 2 if out_stride == x.stride and kernel_size % 2 == 1 else -1
        return _SparseConvFunction.apply(x.feats, weight, kmap, n_out, center)


BACKEND = TorchBackend()
