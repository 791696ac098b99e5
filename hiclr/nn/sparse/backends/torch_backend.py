"""The pure-PyTorch backend: sorted keys + searchsorted kernel maps, gather → matmul → index_add_.

It runs wherever PyTorch runs (CPU and GPU) and is the reference the other backends are tested
against. Kernel maps come from :meth:`CoordinateContext.kernel_map` and are cached there.
"""

from __future__ import annotations

from torch import Tensor


class TorchBackend:
    name = "torch"

    def conv(self, x, weight: Tensor, kernel_size: int, out_stride: int, transposed: bool) -> Tensor:
        ctx = x.context
        kmap = ctx.kernel_map(x.stride, out_stride, kernel_size, transposed)
        n_out = ctx.coords(out_stride).shape[0]
        center = None
        if out_stride == x.stride and kernel_size % 2 == 1:
            center = (kernel_size**3) // 2  # the identity offset: every row maps to itself
            out = x.feats @ weight[center]
        else:
            out = x.feats.new_zeros(n_out, weight.shape[2])
        for k, (i, o) in enumerate(kmap):
            if k == center or i.numel() == 0:
                continue
            out.index_add_(0, o, x.feats[i] @ weight[k])
        return out


BACKEND = TorchBackend()
