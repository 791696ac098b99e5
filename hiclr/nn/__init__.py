"""hiclr's 3D networks on one sparse-tensor interface with interchangeable backends.

Importing this package imports only torch: backend libraries (MinkowskiEngine, spconv,
torchsparse) are imported when a network first runs on them.
"""

from hiclr.nn.network import ARCHITECTURES, PointNetwork
from hiclr.nn.sparse.backends import available_backends

__all__ = ["ARCHITECTURES", "PointNetwork", "available_backends"]
