"""One state dict, the same MinkUNet14A / SPVCNN outputs on every installed backend.

Tolerance: float32 outputs and parameter gradients agree with the ``torch`` backend to
2e-4 absolute + 1e-3 relative (different summation orders through ~20 layers; the outputs are O(1)).
Gradients are compared by their own test, which skips (saying why) where a backend has no backward
here: spconv's CPU backward needs CUDA, torchsparse 1.4.0's CPU backward raises NotImplementedError.
torchsparse runs on the GPU when one is visible (2.x has no CPU convolution).
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
from sparse_backends import PACKAGES, backend_device, grads_unsupported

from hiclr.nn import PointNetwork

TOL = {"atol": 2e-4, "rtol": 1e-3}


def _scene():
    g = torch.Generator().manual_seed(1)
    # a floor and a box: surface-like, as real scans are
    floor = torch.cat([torch.rand(600, 2, generator=g) * 1.6, torch.zeros(600, 1)], 1)
    box = torch.rand(300, 3, generator=g) * 0.4 + torch.tensor([0.5, 0.5, 0.0])
    pts = [torch.cat([floor, box]), floor[:250] + 0.3]
    feats = [torch.rand(p.shape[0], 3, generator=g) * 2 - 1 for p in pts]
    return pts, feats


def _pair(backend: str, arch: str):
    """The reference ``torch`` network and the same state dict on ``backend``, in eval mode (no
    dropout, so both see the same function), on the device the backend's tests use."""
    if importlib.util.find_spec(PACKAGES[backend]) is None:
        pytest.skip(f"{PACKAGES[backend]} is not installed")
    torch.manual_seed(0)
    ref = PointNetwork(arch=arch, out_channels=16, voxel_size=0.1, backend="torch")
    other = PointNetwork.from_config({**ref.arch_config(), "backend": backend})
    other.load_state_dict(ref.state_dict())
    dev = backend_device(backend)
    ref.to(dev).eval(), other.to(dev).eval()
    pts, feats = _scene()
    return ref, other, [p.to(dev) for p in pts], [f.to(dev) for f in feats]


@pytest.mark.backend
@pytest.mark.parametrize("backend", list(PACKAGES))
@pytest.mark.parametrize("arch", ["MinkUNet14A", "SPVCNN"])
def test_same_outputs_with_one_state_dict(backend, arch):
    ref, other, pts, feats = _pair(backend, arch)
    with torch.no_grad():
        a = ref(pts, feats)
        b = other(pts, feats)
    assert [x.shape for x in a] == [(p.shape[0], 16) for p in pts]
    for x, y in zip(a, b):
        torch.testing.assert_close(y, x, **TOL)


@pytest.mark.backend
@pytest.mark.parametrize("backend", list(PACKAGES))
@pytest.mark.parametrize("arch", ["MinkUNet14A", "SPVCNN"])
def test_same_gradients_with_one_state_dict(backend, arch):
    if importlib.util.find_spec(PACKAGES[backend]) is None:
        pytest.skip(f"{PACKAGES[backend]} is not installed")
    reason = grads_unsupported(backend)
    if reason:
        pytest.skip(reason)
    ref, other, pts, feats = _pair(backend, arch)
    a = ref(pts, feats)
    b = other(pts, feats)
    for x, y in zip(a, b):
        torch.testing.assert_close(y, x, **TOL)
    r = [torch.randn_like(x) for x in a]
    sum((x * w).sum() for x, w in zip(a, r)).backward()
    sum((y * w).sum() for y, w in zip(b, r)).backward()
    named = dict(other.named_parameters())
    for name, p in ref.named_parameters():
        torch.testing.assert_close(named[name].grad, p.grad, **TOL, msg=name)
