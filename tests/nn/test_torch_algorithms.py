"""The ``torch`` backend's two algorithms and two scatters compute the same network.

``tests/nn/test_conv_dense.py`` checks each convolution of the ``table`` algorithm against a dense
conv3d; here: the neighbour tables by hand, the density rule, and the whole MinkUNet14A (float64,
values and every weight gradient) under every setting against the default.
"""

from __future__ import annotations

import pytest
import torch

from hiclr.errors import HiclrError
from hiclr.nn import PointNetwork
from hiclr.nn.sparse import SparseTensor, conv3d
from hiclr.nn.sparse.backends import torch_backend
from hiclr.nn.sparse.backends.torch_backend import _grouped, _span_groups, fused_map, kernel_table


def _line(n: int) -> SparseTensor:
    """``n`` voxels in a row along z: (0, 0, 0, 0), (0, 0, 0, 1), ..."""
    z = torch.arange(n, dtype=torch.int32)
    coords = torch.stack([z * 0, z * 0, z * 0, z], 1)
    return SparseTensor.from_coords(coords, torch.ones(n, 1))


def test_kernel_table_of_a_line_by_hand():
    """Three voxels along z, kernel 3: only the offsets (0, 0, -1), (0, 0, 0), (0, 0, 1) (indices
    12, 13, 14 with z fastest) have pairs; voxel 0 has no neighbour below, voxel 2 none above."""
    x = _line(3)
    kmap = x.context.kernel_map(1, 1, 3, False)
    t = kernel_table(kmap, 3, 3)
    assert t.offsets.tolist() == [12, 13, 14]
    assert t.rows_in.tolist() == [[3, 0, 1], [0, 1, 2], [1, 2, 3]]  # 3 = the zero row
    assert t.rows_out.tolist() == [[1, 0, 3], [2, 1, 0], [3, 2, 1]]
    assert t.density == pytest.approx(7 / 9)


def test_fused_map_of_a_line_by_hand():
    """The same line: without the centre (13), offset 12 pairs (input 0 → output 1), (1 → 2) and
    offset 14 pairs (1 → 0), (2 → 1), concatenated in offset order."""
    x = _line(3)
    f = fused_map(x.context.kernel_map(1, 1, 3, False), center=13)
    assert f.rows_in.tolist() == [0, 1, 1, 2]
    assert f.rows_out.tolist() == [1, 2, 0, 1]
    assert f.spans == ((12, 0, 2), (14, 2, 4))
    with_centre = fused_map(x.context.kernel_map(1, 1, 3, False), center=-1)
    assert with_centre.spans == ((12, 0, 2), (13, 2, 5), (14, 5, 7))


def test_fused_groups_stay_within_the_block():
    spans = ((0, 0, 3), (1, 3, 5), (2, 5, 11), (3, 11, 12))
    with torch_backend.settings(fused_block=5 * 2):  # width 2: at most 5 pairs per group
        groups = list(_span_groups(spans, 2))
    assert groups == [((0, 0, 3), (1, 3, 5)), ((2, 5, 11),), ((3, 11, 12),)]  # a lone span may exceed it


def test_density_rule_keeps_sparse_layers_on_offsets():
    """A full 4³ cube: the kernel-2 strided convolution reads all 8 inputs of each output (table
    full), the transposed one back reads one input per output at one of 8 offsets (1/8 full, under
    the default 0.25): it runs on ``offsets`` unless the threshold is 0."""
    coords = torch.cartesian_prod(*[torch.arange(n) for n in (1, 4, 4, 4)]).to(torch.int32)
    torch.manual_seed(0)
    x = SparseTensor.from_coords(coords, torch.randn(64, 2))
    w_down, w_up = torch.randn(8, 2, 3), torch.randn(8, 3, 2)
    ref = conv3d(conv3d(x, w_down, kernel_size=2, stride=2), w_up, kernel_size=2, stride=2, transposed=True)
    for threshold in (0.25, 0.0):
        with torch_backend.settings(algorithm="table", table_min_density=threshold):
            down = conv3d(x, w_down, kernel_size=2, stride=2)
            up = conv3d(down, w_up, kernel_size=2, stride=2, transposed=True)
        torch.testing.assert_close(up.feats, ref.feats, rtol=1e-5, atol=1e-5)
    density = {key[1:]: t.density for key, t in x.context.backend_state.items() if key[0] == "torch-table"}
    assert density == {(1, 2, 2, False): 1.0, (2, 1, 2, True): 1 / 8}


@pytest.mark.parametrize(
    "key", [(1, 1, 3, False), (1, 1, 5, False), (2, 2, 3, False), (1, 2, 2, False), (2, 1, 2, True), (2, 1, 3, True)]
)
def test_reused_kernel_maps_equal_searched_ones(key):
    """Mirrored submanifold offsets and transposed maps reversed from strided ones are the maps a
    full search gives: the same pairs, in the same order, offset by offset."""
    g = torch.Generator().manual_seed(3)
    coords = (torch.rand(2, 10, 10, 10, generator=g) < 0.3).nonzero().to(torch.int32)
    reused = SparseTensor.from_coords(coords, torch.ones(len(coords), 1)).context
    searched = SparseTensor.from_coords(coords, torch.ones(len(coords), 1)).context
    in_s, out_s, k, transposed = key
    if transposed:  # the encoder's strided map comes first, as in a U-Net
        reused.kernel_map(out_s, in_s, k, False)
    got = reused.kernel_map(*key)
    want = searched.kernel_map(*key, reuse=False)
    assert len(got) == len(want) == k**3 and sum(i.numel() for i, _ in want) > 0
    for (gi, go), (wi, wo) in zip(got, want):
        assert torch.equal(gi, wi) and torch.equal(go, wo)


def test_settings_are_restored_and_checked():
    before = torch_backend.current_settings()
    with torch_backend.settings(algorithm="table", scatter="index_put") as s:
        assert torch_backend.current_settings() is s and s.algorithm == "table"
    assert torch_backend.current_settings() is before
    with pytest.raises(HiclrError, match="HICLR_TORCH_CONV='gemm'"):
        torch_backend.ConvSettings(algorithm="gemm")
    with pytest.raises(HiclrError):
        torch_backend.ConvSettings(scatter="atomic")


def _room(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    floor = torch.rand(n // 2, 3, generator=g) * torch.tensor([3.0, 2.0, 0.0])
    box = torch.rand(n - n // 2, 3, generator=g) * torch.tensor([0.8, 0.8, 0.8]) + torch.tensor([1.0, 0.5, 0.0])
    return torch.cat([floor, box]).double(), (torch.rand(n, 3, generator=g) * 2 - 1).double()


def _run(net: PointNetwork, pts, fts) -> tuple[torch.Tensor, torch.Tensor]:
    net.zero_grad(set_to_none=True)
    rows, _, _ = net.forward_rows([pts], [fts])
    (rows * torch.randn(rows.shape, generator=torch.Generator().manual_seed(5), dtype=rows.dtype)).sum().backward()
    return rows.detach(), torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])


@pytest.mark.parametrize(
    "changes",
    [{"algorithm": "table"}, {"algorithm": "table", "table_min_density": 0.0, "table_block": 4096}, {"scatter": "index_put"},
     {"algorithm": "fused"}, {"algorithm": "fused", "fused_block": 4096}],
    ids=["table", "table-everywhere-blocked", "index_put", "fused", "fused-blocked"],
)
def test_minkunet_is_the_same_under_every_setting(changes):
    torch.manual_seed(0)
    net = PointNetwork("MinkUNet14A", 3, 32, voxel_size=0.05, backend="torch").double().eval()
    pts, fts = _room(4000, 0)
    ref_out, ref_grad = _run(net, pts, fts)
    with torch_backend.settings(**changes):
        out, grad = _run(net, pts, fts)
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-9, atol=1e-9)


def test_grouped_gemm_is_chosen_only_where_it_applies():
    """``auto`` keeps the loop on CPU; ``grouped`` needs rows of a multiple of 16 bytes and no float64."""
    x32, w = torch.zeros(4, 16), torch.zeros(27, 16, 32)
    with torch_backend.settings(fused_gemm="auto"):
        assert not _grouped(x32, w)
    with torch_backend.settings(fused_gemm="grouped"):
        assert _grouped(x32, w) and _grouped(x32.bfloat16(), w.bfloat16())
        assert not _grouped(x32.double(), w.double())
        assert not _grouped(torch.zeros(4, 6), torch.zeros(27, 6, 32))  # 6 × 4 bytes: not a multiple of 16
        assert not _grouped(torch.zeros(4, 4).bfloat16(), torch.zeros(27, 4, 32).bfloat16())  # 4 × 2 bytes
    with torch_backend.settings(fused_gemm="loop"):
        assert not _grouped(x32, w)
    with pytest.raises(HiclrError, match="fused_gemm"):
        torch_backend.ConvSettings(fused_gemm="cutlass")


@pytest.mark.parametrize("block", [64, 1 << 26], ids=["many-groups", "one-group"])
def test_grouped_gemm_equals_the_loop(monkeypatch, block):
    """One submanifold convolution in float32: forward, input and weight gradients through
    ``grouped_mm`` equal the per-offset loop, and ``grouped_mm`` really ran in all three."""
    g = torch.Generator().manual_seed(3)
    coords = (torch.rand(1, 10, 10, 10, generator=g) < 0.3).nonzero().to(torch.int32)
    feats = torch.randn(coords.shape[0], 16, generator=g)
    w = torch.randn(27, 16, 8, generator=g)
    r = torch.randn(coords.shape[0], 8, generator=g)

    def run(gemm: str) -> list[torch.Tensor]:
        x = SparseTensor.from_coords(coords, feats.clone().requires_grad_(True))
        wk = w.clone().requires_grad_(True)
        with torch_backend.settings(algorithm="fused", fused_block=block, fused_gemm=gemm):
            out = conv3d(x, wk, kernel_size=3)
            gx, gw = torch.autograd.grad((out.feats * r).sum(), [x.feats, wk])
        return [out.feats.detach(), gx, gw]

    calls = []
    real = torch.nn.functional.grouped_mm
    monkeypatch.setattr(torch.nn.functional, "grouped_mm", lambda *a, **k: calls.append(1) or real(*a, **k))
    loop = run("loop")
    assert not calls
    grouped = run("grouped")
    assert len(calls) >= 3
    for a, b in zip(grouped, loop):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-5)


def test_minkunet_float32_is_the_same_with_grouped_gemms():
    """The whole network in float32: its 3-channel first layer stays on the loop, the rest grouped."""
    torch.manual_seed(0)
    net = PointNetwork("MinkUNet14A", 3, 32, voxel_size=0.05, backend="torch").eval()
    pts, fts = (t.float() for t in _room(4000, 0))
    with torch_backend.settings(algorithm="fused", fused_gemm="loop"):
        ref_out, ref_grad = _run(net, pts, fts)
    with torch_backend.settings(algorithm="fused", fused_gemm="grouped"):
        out, grad = _run(net, pts, fts)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-4)


def test_a_refused_grouped_gemm_falls_back_to_the_loop_once(monkeypatch):
    """Under ``auto`` a grouped GEMM the kernels refuse is one warning, and the loop gives the
    same convolution; under ``grouped`` the refusal is raised."""
    g = torch.Generator().manual_seed(4)
    coords = (torch.rand(1, 8, 8, 8, generator=g) < 0.4).nonzero().to(torch.int32)
    x = SparseTensor.from_coords(coords, torch.randn(coords.shape[0], 16, generator=g))
    w = torch.randn(27, 16, 16, generator=g)
    with torch_backend.settings(algorithm="fused", fused_gemm="loop"):
        ref = conv3d(x, w, kernel_size=3).feats

    def refuse(*a, **k):
        raise RuntimeError("strides should be multiple of 16 bytes")

    monkeypatch.setattr(torch.nn.functional, "grouped_mm", refuse)
    monkeypatch.setattr(torch_backend, "_one_kernel_grouped", lambda t: True)  # as on an H100 in bf16
    monkeypatch.setattr(torch_backend, "_grouped_failed", set())
    with torch_backend.settings(algorithm="fused", fused_gemm="auto"):
        with pytest.warns(RuntimeWarning, match="grouped GEMMs failed"):
            out = conv3d(x, w, kernel_size=3).feats
        assert torch_backend._grouped_failed == {("cpu", torch.float32)}
        torch.testing.assert_close(out, ref, rtol=0, atol=0)
    with torch_backend.settings(algorithm="fused", fused_gemm="grouped"), pytest.raises(RuntimeError, match="16 bytes"):
        conv3d(x, w, kernel_size=3)
