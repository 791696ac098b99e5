"""One state dict, the same MinkUNet14A / SPVCNN outputs on every installed backend.

Tolerance: float32 outputs and parameter gradients agree with the ``torch`` backend to
2e-4 absolute + 1e-3 relative (different summation orders through ~20 layers; the outputs are O(1)).
spconv's CPU backward needs CUDA, so on CPU only its forward pass is compared.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from hiclr.nn import PointNetwork

PACKAGES = {"minkowski": "MinkowskiEngine", "spconv": "spconv", "torchsparse": "torchsparse"}
TOL = {"atol": 2e-4, "rtol": 1e-3}


def _scene():
    g = torch.Generator().manual_seed(1)
    # a floor and a box: surface-like, as real scans are
    floor = torch.cat([torch.rand(600, 2, generator=g) * 1.6, torch.zeros(600, 1)], 1)
    box = torch.rand(300, 3, generator=g) * 0.4 + torch.tensor([0.5, 0.5, 0.0])
    pts = [torch.cat([floor, box]), floor[:250] + 0.3]
    feats = [torch.rand(p.shape[0], 3, generator=g) * 2 - 1 for p in pts]
    return pts, feats


@pytest.mark.backend
@pytest.mark.parametrize("backend", list(PACKAGES))
@pytest.mark.parametrize("arch", ["MinkUNet14A", "SPVCNN"])
def test_same_outputs_with_one_state_dict(backend, arch):
    if importlib.util.find_spec(PACKAGES[backend]) is None:
        pytest.skip(f"{PACKAGES[backend]} is not installed")
    torch.manual_seed(0)
    ref = PointNetwork(arch=arch, out_channels=16, voxel_size=0.1, backend="torch")
    other = PointNetwork.from_config({**ref.arch_config(), "backend": backend})
    other.load_state_dict(ref.state_dict())
    ref.eval(), other.eval()  # eval: no dropout, so both see the same function
    pts, feats = _scene()
    with_grad = not (backend == "spconv" and not torch.cuda.is_available())
    with torch.set_grad_enabled(with_grad):
        a = ref(pts, feats)
        b = other(pts, feats)
    for x, y in zip(a, b):
        torch.testing.assert_close(y, x, **TOL)
    if with_grad:
        r = [torch.randn_like(x) for x in a]
        sum((x * w).sum() for x, w in zip(a, r)).backward()
        sum((y * w).sum() for y, w in zip(b, r)).backward()
        named = dict(other.named_parameters())
        for name, p in ref.named_parameters():
            torch.testing.assert_close(named[name].grad, p.grad, **TOL, msg=name)
