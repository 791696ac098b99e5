"""The point-level front door: one feature per input point, configs, backend-neutral weights."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from hiclr.errors import HiclrError
from hiclr.nn import PointNetwork, available_backends


def _scenes(sizes=(300, 120), seed=0):
    g = torch.Generator().manual_seed(seed)
    pts = [torch.rand(n, 3, generator=g) * 1.2 - 0.4 for n in sizes]  # includes negative coordinates
    feats = [torch.rand(n, 3, generator=g) * 2 - 1 for n in sizes]
    return pts, feats


@pytest.mark.parametrize("arch", ["MinkUNet14A", "SPVCNN"])
def test_one_feature_per_point_for_a_batch_of_different_sizes(arch):
    torch.manual_seed(0)
    net = PointNetwork(arch=arch, out_channels=16, voxel_size=0.1, backend="torch")
    pts, feats = _scenes()
    out = net(pts, feats)
    assert [tuple(o.shape) for o in out] == [(300, 16), (120, 16)]
    assert all(bool(torch.isfinite(o).all()) for o in out)
    sum(o.sum() for o in out).backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


@pytest.mark.parametrize("arch", ["MinkUNet14A", "SPVCNN"])
def test_scenes_in_a_batch_do_not_mix(arch):
    """In eval mode (running BN statistics) a scene's output does not depend on its batch mates."""
    torch.manual_seed(0)
    net = PointNetwork(arch=arch, out_channels=8, voxel_size=0.1, backend="torch").eval()
    pts, feats = _scenes()
    with torch.no_grad():
        both = net(pts, feats)
        alone = net(pts[1:], feats[1:])
    torch.testing.assert_close(both[1], alone[0], atol=1e-5, rtol=1e-5)


def test_points_in_one_voxel_share_the_minkunet_feature():
    net = PointNetwork(arch="MinkUNet14A", out_channels=4, voxel_size=1.0, backend="torch").eval()
    pts = [torch.tensor([[0.1, 0.1, 0.1], [0.9, 0.9, 0.9], [1.5, 0.2, 0.2]])]
    with torch.no_grad():
        out = net(pts, [torch.randn(3, 3)])[0]
    torch.testing.assert_close(out[0], out[1])
    assert not torch.allclose(out[0], out[2])


def test_config_roundtrip_and_state_dict():
    net = PointNetwork(arch="SPVCNN", in_channels=6, out_channels=32, voxel_size=0.08, backend="torch")
    cfg = json.loads(json.dumps(net.arch_config()))
    twin = PointNetwork.from_config(cfg)
    twin.load_state_dict(net.state_dict())
    assert twin.arch_config() == net.arch_config()
    with pytest.raises(HiclrError, match="unknown network config keys"):
        PointNetwork.from_config({**cfg, "depth": 3})
    with pytest.raises(HiclrError, match="unknown network architecture"):
        PointNetwork(arch="PointNet")


def test_wrong_feature_width_is_a_clear_error():
    net = PointNetwork(arch="MinkUNet14A", in_channels=3, out_channels=4, backend="torch")
    with pytest.raises(HiclrError, match="channels"):
        net([torch.rand(5, 3)], [torch.rand(5, 6)])


def test_param_count_minkunet14a():
    # 8.07 M with a 512-wide head (MinkowskiEngine's MinkUNet14A layout; the paper rounds to 8.2 M)
    net = PointNetwork(arch="MinkUNet14A", out_channels=512)
    assert sum(p.numel() for p in net.parameters()) == 8_072_224


def test_available_backends_imports_no_backend_library():
    code = (
        "import sys; from hiclr.nn import available_backends; b = available_backends(); "
        "assert b['torch'] is True; "
        "assert not any(m.split('.')[0] in ('spconv', 'MinkowskiEngine', 'torchsparse') for m in sys.modules); "
        "print(sorted(b))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['minkowski', 'spconv', 'torch', 'torchsparse']"
    assert set(available_backends()) == {"torch", "minkowski", "spconv", "torchsparse"}


def test_auto_backend_resolution():
    from hiclr.nn.sparse.backends import resolve_backend

    assert resolve_backend("auto", "cpu") == "torch"  # the fastest correct CPU backend
    assert resolve_backend("minkowski", "cpu") == "minkowski"
    with pytest.raises(HiclrError, match="unknown sparse backend"):
        resolve_backend("tensorrt", "cpu")


def test_forward_rows_gathered_equal_forward():
    """forward_rows + index gives exactly the per-point features of forward (MinkUNet: one row per voxel)."""
    import torch

    from hiclr.nn import PointNetwork

    torch.manual_seed(0)
    net = PointNetwork("MinkUNet14A", in_channels=3, out_channels=8, voxel_size=0.5).eval()
    pts = [torch.rand(200, 3) * 3, torch.rand(120, 3) * 2]
    fts = [torch.rand(200, 3), torch.rand(120, 3)]
    with torch.no_grad():
        per_point = torch.cat(net(pts, fts))
        rows, index, sizes = net.forward_rows(pts, fts)
    assert sizes == [200, 120] and index.shape == (320,)
    assert rows.shape[0] < 320  # voxels are shared by points
    assert torch.equal(rows[index], per_point)
