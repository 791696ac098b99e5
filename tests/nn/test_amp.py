"""The ``torch`` backend under bf16 autocast (CPU): values and gradients against float32.

Tolerances (relative to the float32 result, as norms): one convolution 1e-2 (bf16 keeps 8
significant bits, relative rounding 2^-9 ≈ 2e-3 per input, a few of them per product). The whole
MinkUNet14A (eval mode: batch norm with running statistics) output 2e-2 and weight gradients 2e-1:
its weight gradients are ill-conditioned at initialisation. Measured: perturbing only the input
features of a float32 run by one bf16 rounding (2^-9 relative) already moves them by 6 %; bf16
autocast moves them by 10 % (output 0.6 %). In train mode, batch statistics over the few voxels of
the coarse levels make it worse (20 % from the same perturbation), so that is not a useful check.
Sums over kernel offsets are float32: checked exactly on a case where bf16 accumulation would lose
every small term.
"""

from __future__ import annotations

import pytest
import torch

from hiclr.nn import PointNetwork
from hiclr.nn.sparse import SparseTensor, conv3d
from hiclr.nn.sparse.backends import torch_backend


@pytest.fixture(params=["offsets", "fused", "fused-grouped", "table"], autouse=True)
def algorithm(request):
    """Every test runs with every algorithm of the ``torch`` backend (``table`` on every layer;
    ``fused-grouped``: ``fused`` with its grouped GEMMs wherever the channels allow them)."""
    name = request.param
    gemm = "grouped" if name == "fused-grouped" else "auto"
    with torch_backend.settings(algorithm=name.split("-")[0], table_min_density=0.0, fused_gemm=gemm):
        yield name


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a.double() - b.double()).norm() / b.double().norm())


def _tensor(seed: int = 0, channels: int = 16, density: float = 0.3) -> SparseTensor:
    g = torch.Generator().manual_seed(seed)
    coords = (torch.rand(2, 12, 12, 12, generator=g) < density).nonzero().to(torch.int32)
    feats = torch.randn(coords.shape[0], channels, generator=g)
    return SparseTensor.from_coords(coords, feats.requires_grad_(True))


def _conv_and_grads(x: SparseTensor, w: torch.Tensor, amp: bool, **kw) -> tuple[torch.Tensor, ...]:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        out = conv3d(x, w, **kw)
    r = torch.randn(out.feats.shape, generator=torch.Generator().manual_seed(1))
    gx, gw = torch.autograd.grad((out.feats.float() * r).sum(), [x.feats, w])
    return out.feats, gx, gw


@pytest.mark.parametrize("kw", [{"kernel_size": 3}, {"kernel_size": 5}, {"kernel_size": 2, "stride": 2}], ids=str)
def test_conv_bf16_matches_fp32(kw):
    x = _tensor()
    w = (torch.randn(kw["kernel_size"] ** 3, 16, 24) * 0.1).requires_grad_(True)
    ref = _conv_and_grads(x, w, amp=False, **kw)
    low = _conv_and_grads(x, w, amp=True, **kw)
    assert low[0].dtype == torch.bfloat16 and low[1].dtype == low[2].dtype == torch.float32
    for name, a, b in zip(("output", "input grad", "weight grad"), low, ref):
        assert _rel(a, b) < 1e-2, f"{name}: {_rel(a, b):.2e}"


def test_transposed_bf16_matches_fp32():
    x1 = _tensor(density=0.4)
    down = conv3d(x1, torch.randn(8, 16, 16) * 0.2, kernel_size=2, stride=2)
    x = down.replace(down.feats.detach().requires_grad_(True))
    w = (torch.randn(8, 16, 8) * 0.2).requires_grad_(True)
    kw = {"kernel_size": 2, "stride": 2, "transposed": True}
    ref, low = _conv_and_grads(x, w, False, **kw), _conv_and_grads(x, w, True, **kw)
    for a, b in zip(low, ref):
        assert _rel(a, b) < 1e-2


def test_offset_sums_accumulate_in_fp32():
    """A full 3³ block, one channel: the middle voxel sums 256 (centre) + 26 × 1. In bf16 (8 bits)
    256 + 1 rounds back to 256 at every step; summed in float32 the total 282 is exact in bf16."""
    coords = torch.cartesian_prod(torch.zeros(1), torch.arange(3.0), torch.arange(3.0), torch.arange(3.0)).to(torch.int32)
    x = SparseTensor.from_coords(coords, torch.ones(27, 1))
    w = torch.ones(27, 1, 1)
    w[13] = 256.0
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv3d(x, w, kernel_size=3)
    middle = int(((x.coords[:, 1:] == 1).all(1)).nonzero())
    assert out.feats.dtype == torch.bfloat16 and float(out.feats[middle, 0]) == 282.0


def test_float64_is_not_cast_under_autocast():
    x = _tensor()
    x = x.replace(x.feats.detach().double())
    w = torch.randn(27, 16, 4, dtype=torch.float64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv3d(x, w)
    assert out.feats.dtype == torch.float64
    torch.testing.assert_close(out.feats, conv3d(x, w).feats, rtol=0, atol=0)


def _room(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    floor = torch.rand(n // 2, 3, generator=g) * torch.tensor([3.0, 2.0, 0.0])
    box = torch.rand(n - n // 2, 3, generator=g) * torch.tensor([0.8, 0.8, 0.8]) + torch.tensor([1.0, 0.5, 0.0])
    return torch.cat([floor, box]), torch.rand(n, 3, generator=g) * 2 - 1


def test_minkunet_bf16_matches_fp32():
    torch.manual_seed(0)
    net = PointNetwork("MinkUNet14A", 3, 32, voxel_size=0.05, backend="torch").eval()
    pts, fts = _room(6000, 0)
    results = []
    for amp in (False, True):
        net.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            rows, _, _ = net.forward_rows([pts], [fts])
        (rows.float() * torch.randn(rows.shape, generator=torch.Generator().manual_seed(5))).sum().backward()
        grads = torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])
        results.append((rows.detach().float(), grads))
    (ref, gref), (low, glow) = results
    assert _rel(low, ref) < 2e-2, f"output {_rel(low, ref):.2e}"
    assert _rel(glow, gref) < 2e-1, f"weight grads {_rel(glow, gref):.2e}"
