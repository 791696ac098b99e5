"""Every sparse convolution of every installed backend equals a dense conv3d on the densified grid.

Tolerances: the ``torch`` backend runs in float64 and must match to 1e-9; the library backends run in
float32 and must match to 1e-4 absolute + 1e-4 relative (sums of ≤125 products of unit normals).
Gradients of the library backends are checked by ``test_gradients_equal_dense``, which skips (saying
why) where the backend has no backward on this machine: spconv's CPU backward needs CUDA, and
torchsparse 1.4.0's CPU backward raises ``NotImplementedError``. spconv's CPU build is only exact
with one torch thread. torchsparse runs on the GPU when one is visible (2.x cannot run on CPU).
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F
from sparse_backends import PACKAGES, backend_device, grads_unsupported

from hiclr.nn.sparse import SparseTensor, as_dense_weight, conv3d
from hiclr.nn.sparse import coords as C
from hiclr.nn.sparse.backends import torch_backend

G = 8  # grid edge (stride-1 voxels)
BACKENDS = ["torch", "torch-table", "torch-fused"] + [pytest.param(b, marks=pytest.mark.backend) for b in PACKAGES]


@pytest.fixture
def backend(request):
    """The backend name; ``torch-table`` is ``torch`` with its ``table`` algorithm on every layer,
    ``torch-fused`` with ``fused``."""
    name = request.param
    if name in ("torch-table", "torch-fused"):
        with torch_backend.settings(algorithm=name[6:], table_min_density=0.0, table_block=64, fused_block=64):
            yield "torch"  # a 64-element block: several row blocks (table) or offset groups (fused) per layer
        return
    if name != "torch" and importlib.util.find_spec(PACKAGES[name]) is None:
        pytest.skip(f"{PACKAGES[name]} is not installed")
    threads = torch.get_num_threads()
    if name == "spconv":
        torch.set_num_threads(1)  # spconv's CPU kernels are wrong with several threads
    yield name
    torch.set_num_threads(threads)


def _dtype(backend: str) -> torch.dtype:
    return torch.float64 if backend == "torch" else torch.float32


def _tol(backend: str) -> dict:
    return {"atol": 1e-9, "rtol": 1e-9} if backend == "torch" else {"atol": 1e-4, "rtol": 1e-4}


def random_tensor(backend: str, channels: int = 3, seed: int = 0, density: float = 0.3) -> SparseTensor:
    """Two scenes of random voxels in an 8³ grid with random features."""
    g = torch.Generator().manual_seed(seed)
    occupied = torch.rand(2, G, G, G, generator=g) < density
    coords = occupied.nonzero().to(torch.int32)  # (N, 4) [b, x, y, z]
    feats = torch.randn(coords.shape[0], channels, generator=g, dtype=_dtype(backend))
    dev = backend_device(backend)
    return SparseTensor.from_coords(coords.to(dev), feats.to(dev).requires_grad_(True), backend=backend)


def _randn(backend: str, *shape: int, requires_grad: bool = False) -> torch.Tensor:
    return torch.randn(*shape, dtype=_dtype(backend), device=backend_device(backend), requires_grad=requires_grad)


def densify(x: SparseTensor, feats: torch.Tensor, edge: int) -> torch.Tensor:
    """(B, C, edge, edge, edge) grid at the tensor's stride, zero where no voxel; differentiable."""
    idx = (x.coords[:, 1:] // x.stride).long()
    dense = feats.new_zeros(2, edge, edge, edge, feats.shape[1])
    dense = dense.index_put((x.coords[:, 0].long(), idx[:, 0], idx[:, 1], idx[:, 2]), feats)
    return dense.permute(0, 4, 1, 2, 3)


def sample(dense: torch.Tensor, coords: torch.Tensor, stride: int) -> torch.Tensor:
    """Rows (N, C) of a dense grid at sparse coordinates of a given stride."""
    idx = (coords[:, 1:] // stride).long()
    return dense[coords[:, 0].long(), :, idx[:, 0], idx[:, 1], idx[:, 2]]


def _compare(backend, x, weight, out, dense_out_fn, dense_in_edge, grads: bool | None = None):
    """Values and gradients (w.r.t. input features and weight) of sparse vs dense.

    ``grads``: check gradients too (default: for the ``torch`` backend; the library backends' are
    checked by :func:`test_gradients_equal_dense`)."""
    dense_out = sample(dense_out_fn(densify(x, x.feats, dense_in_edge)), out.coords, out.stride)
    torch.testing.assert_close(out.feats, dense_out, **_tol(backend))
    if not (backend == "torch" if grads is None else grads):
        return
    r = torch.randn_like(out.feats)
    gx, gw = torch.autograd.grad((out.feats * r).sum(), [x.feats, weight])
    dense_out = sample(dense_out_fn(densify(x, x.feats, dense_in_edge)), out.coords, out.stride)
    dx, dw = torch.autograd.grad((dense_out * r).sum(), [x.feats, weight])
    torch.testing.assert_close(gx, dx, **_tol(backend))
    torch.testing.assert_close(gw, dw, **_tol(backend))


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("k", [3, 5])
def test_submanifold_equals_dense(backend, k, grads=None):
    x = random_tensor(backend)
    w = _randn(backend, k**3, 3, 4, requires_grad=True)
    out = conv3d(x, w, kernel_size=k)
    assert torch.equal(out.coords, x.coords)  # submanifold: same voxels, same order
    _compare(backend, x, w, out, lambda d: F.conv3d(d, as_dense_weight(w, k), padding=k // 2), G, grads)


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("k", [2, 3])
def test_strided_equals_dense(backend, k, grads=None):
    x = random_tensor(backend)
    w = _randn(backend, k**3, 3, 4, requires_grad=True)
    out = conv3d(x, w, kernel_size=k, stride=2)
    # documented coordinates: the stride-2 voxels that contain an input voxel
    expected = torch.unique(C.linearize(torch.cat([x.coords[:, :1], x.coords[:, 1:] // 2 * 2], 1)))
    assert out.stride == 2 and torch.equal(C.linearize(out.coords), expected)
    pad = (k - 1) // 2
    _compare(backend, x, w, out, lambda d: F.conv3d(d, as_dense_weight(w, k), stride=2, padding=pad), G, grads)


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_strided_from_stride_two(backend, grads=None):
    """Offsets scale with the input stride: stride 2 -> 4 equals a dense conv on the 4³ grid."""
    x1 = random_tensor(backend, density=0.5)
    x = conv3d(x1, _randn(backend, 8, 3, 3), kernel_size=2, stride=2)
    x = x.replace(x.feats.detach().requires_grad_(True))
    w = _randn(backend, 8, 3, 5, requires_grad=True)
    out = conv3d(x, w, kernel_size=2, stride=2)
    assert out.stride == 4 and bool((out.coords[:, 1:] % 4 == 0).all())
    _compare(backend, x, w, out, lambda d: F.conv3d(d, as_dense_weight(w, 2), stride=2), G // 2, grads)


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("k", [2, 3])
def test_transposed_equals_dense(backend, k, grads=None):
    x1 = random_tensor(backend)
    down = conv3d(x1, _randn(backend, 8, 3, 3), kernel_size=2, stride=2)
    x = down.replace(down.feats.detach().requires_grad_(True))
    w = _randn(backend, k**3, 3, 4, requires_grad=True)
    out = conv3d(x, w, kernel_size=k, stride=2, transposed=True)
    # documented coordinates: the finer level's existing voxels, in their order
    assert out.stride == 1 and torch.equal(out.coords, x1.coords)
    wt = w.reshape(k, k, k, 3, 4).permute(3, 4, 0, 1, 2)  # conv_transpose3d: (C_in, C_out, k, k, k)
    pad = (k - 1) // 2

    def dense(d):
        return F.conv_transpose3d(d, wt, stride=2, padding=pad, output_padding=pad)

    _compare(backend, x, w, out, dense, G // 2, grads)


@pytest.mark.parametrize("backend", BACKENDS[3:], indirect=True)
@pytest.mark.parametrize("case", ["submanifold-3", "strided-3", "stride-two", "transposed-2", "transposed-3"])
def test_gradients_equal_dense(backend, case):
    """The library backends' gradients (input features and weight) against the dense ones."""
    reason = grads_unsupported(backend)
    if reason:
        pytest.skip(reason)
    name, _, k = case.partition("-")
    if name == "submanifold":
        test_submanifold_equals_dense(backend, int(k), grads=True)
    elif name == "strided":
        test_strided_equals_dense(backend, int(k), grads=True)
    elif name == "stride":
        test_strided_from_stride_two(backend, grads=True)
    else:
        test_transposed_equals_dense(backend, int(k), grads=True)


def test_transposed_needs_finer_level():
    x = random_tensor("torch")
    with pytest.raises(ValueError, match="previous strided convolution"):
        conv3d(x, torch.randn(8, 3, 2, dtype=torch.float64), kernel_size=2, stride=2, transposed=True)


def test_kernel_offsets_order():
    """z varies fastest; odd kernels are centred, even kernels start at 0."""
    off = C.kernel_offsets(3)
    assert off[0].tolist() == [-1, -1, -1] and off[1].tolist() == [-1, -1, 0]
    assert off[3].tolist() == [-1, 0, -1] and off[13].tolist() == [0, 0, 0]
    assert C.kernel_offsets(2).tolist()[:3] == [[0, 0, 0], [0, 0, 1], [0, 1, 0]]


def test_linearize_roundtrip_and_order():
    coords = torch.tensor([[0, -5, 3, 9], [1, -100, 0, 0], [0, -5, 3, 10], [0, 7, -2, 1]], dtype=torch.int32)
    keys = C.linearize(coords)
    assert torch.equal(C.delinearize(keys), coords)
    order = torch.argsort(keys).tolist()
    assert order == [0, 2, 3, 1]  # lexicographic in (b, x, y, z)
