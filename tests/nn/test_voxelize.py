"""Voxelisation, devoxelisation and point <-> voxel interpolation, checked by hand."""

from __future__ import annotations

import torch

from hiclr.nn.sparse import devoxelize, point_to_voxel, voxel_to_point, voxelize


def test_voxelize_means_and_inverse():
    pts = torch.tensor([[0.01, 0.01, 0.01], [0.04, 0.02, 0.03], [-0.01, 0.0, 0.0], [0.12, 0.0, 0.0]])
    feats = torch.tensor([[1.0], [3.0], [5.0], [7.0]])
    x, ps = voxelize([pts], [feats], voxel_size=0.05)
    # voxels: (0,0,0) holds points 0 and 1; (-1,0,0) holds point 2 (floor of a negative); (2,0,0) point 3
    assert x.coords.tolist() == [[0, -1, 0, 0], [0, 0, 0, 0], [0, 2, 0, 0]]
    assert x.feats.squeeze(1).tolist() == [5.0, 2.0, 7.0]
    assert ps.inverse.tolist() == [1, 1, 0, 2]
    assert devoxelize(x, ps)[0].squeeze(1).tolist() == [2.0, 2.0, 5.0, 7.0]


def test_batch_column_separates_scenes():
    a = torch.zeros(2, 3)
    b = torch.zeros(3, 3)  # same place, another scene
    x, ps = voxelize([a, b], [torch.ones(2, 1), 2 * torch.ones(3, 1)], voxel_size=0.1)
    assert x.coords.tolist() == [[0, 0, 0, 0], [1, 0, 0, 0]]
    out = devoxelize(x, ps)
    assert [o.shape[0] for o in out] == [2, 3]
    assert out[1].squeeze(1).tolist() == [2.0, 2.0, 2.0]


def _two_voxels():
    # voxels at x = 0 and x = 1 (voxel size 1 m); centres at 0.5 and 1.5
    pts = torch.tensor([[0.5, 0.5, 0.5], [1.5, 0.5, 0.5], [1.0, 0.5, 0.5], [0.75, 0.5, 0.5], [0.2, 0.5, 0.5]])
    x, _ = voxelize([pts[:2]], [torch.tensor([[0.0], [4.0]])], voxel_size=1.0)
    _, ps_all = voxelize([pts], [torch.zeros(5, 1)], voxel_size=1.0)
    return x, ps_all


def test_trilinear_between_voxel_centres():
    x, ps = _two_voxels()
    # the other 6 corners of each cell are empty: weights renormalise over the two voxels
    got = voxel_to_point(x, ps, "trilinear").squeeze(1)
    torch.testing.assert_close(got, torch.tensor([0.0, 4.0, 2.0, 1.0, 0.0]))


def test_nearest_takes_own_voxel():
    x, ps = _two_voxels()
    got = voxel_to_point(x, ps, "nearest").squeeze(1)
    assert got.tolist() == [0.0, 4.0, 4.0, 0.0, 0.0]


def test_point_to_voxel_mean_at_coarser_stride():
    pts = torch.tensor([[0.5, 0.5, 0.5], [1.5, 0.5, 0.5], [2.5, 0.5, 0.5]])
    x, ps = voxelize([pts], [torch.zeros(3, 1)], voxel_size=1.0)
    coarse_coords = x.context.coords(2)  # stride-2 voxels at x = 0 and x = 2
    assert coarse_coords[:, 1].tolist() == [0, 2]
    from hiclr.nn.sparse import SparseTensor

    coarse = SparseTensor(torch.zeros(2, 1), 2, x.context)
    v = point_to_voxel(coarse, ps, torch.tensor([[1.0], [3.0], [10.0]]))
    assert v.feats.squeeze(1).tolist() == [2.0, 10.0]


def test_invalid_points_are_clear_errors():
    import pytest

    from hiclr.errors import HiclrError

    with pytest.raises(HiclrError, match="NaN"):
        voxelize([torch.tensor([[0.0, float("nan"), 0.0]])], [torch.zeros(1, 1)], voxel_size=0.05)
    with pytest.raises(HiclrError, match="beyond the supported"):
        voxelize([torch.tensor([[1e6, 0.0, 0.0]])], [torch.zeros(1, 1)], voxel_size=0.05)
