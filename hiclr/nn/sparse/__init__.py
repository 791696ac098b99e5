"""hiclr's sparse-tensor interface (see :mod:`hiclr.nn.sparse.coords` for the weight layout)."""

from hiclr.nn.sparse.backends import available_backends, get_backend, resolve_backend
from hiclr.nn.sparse.functional import conv3d
from hiclr.nn.sparse.modules import BatchNorm, Conv3d, Linear, ReLU, as_dense_weight, conv_bn_relu
from hiclr.nn.sparse.tensor import CoordinateContext, SparseTensor, cat
from hiclr.nn.sparse.voxelize import PointSet, devoxelize, point_to_voxel, voxel_to_point, voxelize

__all__ = [
    "BatchNorm",
    "Conv3d",
    "CoordinateContext",
    "Linear",
    "PointSet",
    "ReLU",
    "SparseTensor",
    "as_dense_weight",
    "available_backends",
    "cat",
    "conv3d",
    "conv_bn_relu",
    "devoxelize",
    "get_backend",
    "point_to_voxel",
    "resolve_backend",
    "voxel_to_point",
    "voxelize",
]
