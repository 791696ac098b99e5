"""Camera model, projection and point↔pixel pairing with a visibility test.

Camera model: OpenCV pinhole. A camera looks down its +z axis, x to the right, y down; a
camera-frame point ``(x, y, z)`` lands at ``u = fx·x/z + cx`` (column) and ``v = fy·y/z + cy``
(row). Poses are camera-to-world 4×4 matrices ``T = [R t; 0 1]`` (ScanNet's ``pose/*.txt``), so a
world point ``p`` has camera coordinates ``R^T (p − t)``.

Pixel convention: the centre of pixel (row i, column j) is at ``(u, v) = (j, i)`` — integer
coordinates are pixel centres, as in ScanNet's intrinsics and OpenCV. A projection ``(u, v)``
therefore belongs to the pixel ``(floor(v + 0.5), floor(u + 0.5))``, i.e. it is rounded to the
nearest integer with halves going up. (``np.round``, used by OpenScene/CLIP2Scene-style code,
rounds halves to even; the two differ only on exact half-pixel coordinates.)

Visibility (PROTOCOL.md, ScanNet): a point is paired with a pixel when it projects inside the
image, lies in front of the camera and passes a depth test against the measured depth ``D`` at
that pixel:

- ``absolute``: ``|D − z| ≤ tol`` (default 0.05 m);
- ``relative``: ``|D − z| ≤ rel·D`` (default 0.25).

``D = 0`` means no measurement: never visible. Views without depth (LiDAR datasets) keep every
point in the image with ``z ≥ min_distance`` (default 1 m, as for nuScenes).

Everything is vectorised in torch and runs on the device of the input tensors (GPU when given
CUDA tensors); :func:`pair_points_with_view_np` is the NumPy-in/NumPy-out convenience wrapper.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from hiclr.errors import HiclrError

__all__ = [
    "DEPTH_TESTS",
    "pair_points_with_view",
    "pair_points_with_view_np",
    "pixel_of",
    "project_points",
    "world_to_camera",
]

DEPTH_TESTS = ("absolute", "relative")
_MIN_Z = 1e-6  # metres: points closer to the camera plane than this are never projected


def _as_tensor(x: Any, like: torch.Tensor | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    device = like.device if like is not None else None
    t = torch.as_tensor(x, device=device)
    if dtype is not None:
        t = t.to(dtype)
    return t


def world_to_camera(points: torch.Tensor, cam_to_world: torch.Tensor) -> torch.Tensor:
    """Camera-frame coordinates of world points.

    Args:
        points: (N, 3) world coordinates, metres.
        cam_to_world: (4, 4) camera-to-world pose ``[R t; 0 1]``.
    Returns:
        (N, 3) camera coordinates ``R^T (p − t)`` (x right, y down, z forward), metres.
    """
    R = cam_to_world[:3, :3]
    t = cam_to_world[:3, 3]
    return (points - t) @ R  # (N,3): row-vector form of R^T (p − t)


def project_points(
    points: torch.Tensor, K: torch.Tensor, cam_to_world: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Project world points with an OpenCV pinhole camera.

    Args:
        points: (N, 3) world coordinates, metres (float tensor; its dtype is kept).
        K: (3, 3) intrinsics in pixels ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]``.
        cam_to_world: (4, 4) camera-to-world pose.
    Returns:
        ``(u, v, z)``, each (N,): continuous column and row (pixel centres at integers) and the
        camera-frame depth z in metres. For points with ``z ≤ 1e-6`` (on or behind the camera
        plane) u and v are meaningless (computed with z clamped); test ``z`` before using them.
    """
    points = torch.as_tensor(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise HiclrError(f"points have shape {tuple(points.shape)}, expected (N, 3)", "pass an (N, 3) coordinate array")
    dtype = points.dtype if points.is_floating_point() else torch.float32
    points = points.to(dtype)
    K = _as_tensor(K, points, dtype)
    cam_to_world = _as_tensor(cam_to_world, points, dtype)
    if K.shape != (3, 3) or cam_to_world.shape != (4, 4):
        raise HiclrError(f"intrinsics {tuple(K.shape)} / pose {tuple(cam_to_world.shape)}: expected (3,3) / (4,4)",
                         "pass one view's intrinsics and camera-to-world pose")
    # one 3×4 projection matrix P = K [R^T | −R^T t]; the products are written out per column
    # because a skinny (N,3)@(3,3) matmul costs ~10× more than nine fused multiply-adds on CPU
    Rt = cam_to_world[:3, :3].T
    P = K @ torch.cat([Rt, -(Rt @ cam_to_world[:3, 3:4])], dim=1)  # (3,4)
    x, y, w = points.unbind(1)  # three (N,) strided views
    Pl = P.tolist()  # Python floats: 12 scalars (one small host sync on GPU)
    proj = [x * Pl[i][0] + y * Pl[i][1] + w * Pl[i][2] + Pl[i][3] for i in range(3)]
    z = proj[2]  # camera-frame depth (K's last row is [0, 0, 1])
    zc = z.clamp_min(_MIN_Z)
    u = proj[0] / zc
    v = proj[1] / zc
    return u, v, z


def pixel_of(u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The integer pixel (column, row) containing continuous coordinates ``(u, v)``: ``floor(x + 0.5)``."""
    return torch.floor(u + 0.5).long(), torch.floor(v + 0.5).long()


def pair_points_with_view(
    points: torch.Tensor,
    K: torch.Tensor,
    cam_to_world: torch.Tensor,
    depth: torch.Tensor | None = None,
    width: int | None = None,
    height: int | None = None,
    mode: str = "absolute",
    tol: float = 0.05,
    rel: float = 0.25,
    min_distance: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The points visible in one view and the pixel each one falls in.

    Args:
        points: (N, 3) world coordinates, metres. Its device is where the work runs.
        K: (3, 3) intrinsics of the view, pixels of the (H, W) grid.
        cam_to_world: (4, 4) camera-to-world pose.
        depth: (H, W) measured depth in metres, 0 = no measurement; None for views without depth.
        width, height: image size; needed when ``depth`` is None, else taken from ``depth`` (and
            must agree with it if given).
        mode: ``"absolute"`` (``|D − z| ≤ tol``) or ``"relative"`` (``|D − z| ≤ rel·D``).
        tol: metres, absolute depth tolerance.
        rel: fraction of the measured depth, relative tolerance.
        min_distance: metres; without depth, points with ``z < min_distance`` are dropped.
    Returns:
        ``(point_idx, pixel_u, pixel_v)``, each (P,) int64 on the device of ``points``: the
        indices of visible points (ascending), their pixel column and row.
    """
    if mode not in DEPTH_TESTS:
        raise HiclrError(f"unknown depth test {mode!r}", f"use one of {', '.join(DEPTH_TESTS)} (pseudolabel.depth_test)")
    if depth is not None:
        depth = _as_tensor(depth, points)
        if depth.ndim != 2:
            raise HiclrError(f"depth map has shape {tuple(depth.shape)}, expected (H, W)", "pass one view's depth image")
        H, W = depth.shape
        if (width is not None and width != W) or (height is not None and height != H):
            raise HiclrError(f"depth map is {W}×{H} but the image size given is {width}×{height}",
                             "the depth grid and the label grid must match")
    else:
        if width is None or height is None:
            raise HiclrError("a view without depth needs its image width and height", "pass width= and height=")
        H, W = int(height), int(width)
    u, v, z = project_points(points, K, cam_to_world)
    fu = torch.floor(u + 0.5)  # (N,) pixel column as float
    fv = torch.floor(v + 0.5)  # (N,) pixel row as float
    keep = (z > _MIN_Z) & (fu >= 0) & (fu <= W - 1) & (fv >= 0) & (fv <= H - 1)
    if depth is None:
        keep &= z >= min_distance
    else:
        # gather D for every point through one flat index (0 where out of image), then one mask:
        # cheaper than compacting the columns before the lookup
        lin = torch.where(keep, fv.clamp(0, H - 1).long() * W + fu.clamp(0, W - 1).long(), 0)
        D = depth.reshape(-1).index_select(0, lin).to(z.dtype)  # (N,) measured depth, metres
        bound = tol if mode == "absolute" else rel * D
        keep &= (D > 0) & ((D - z).abs() <= bound)
    idx = torch.nonzero(keep).squeeze(1)
    return idx, fu[idx].long(), fv[idx].long()


def pair_points_with_view_np(
    points: np.ndarray,
    K: np.ndarray,
    cam_to_world: np.ndarray,
    depth: np.ndarray | None = None,
    width: int | None = None,
    height: int | None = None,
    **kwargs: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`pair_points_with_view` on NumPy arrays (computed in float64 on the CPU).

    Returns ``(point_idx, pixel_u, pixel_v)`` as (P,) int64 NumPy arrays."""
    pts = torch.as_tensor(np.asarray(points, dtype=np.float64))
    d = None if depth is None else torch.as_tensor(np.asarray(depth, dtype=np.float64))
    idx, pu, pv = pair_points_with_view(
        pts, torch.as_tensor(np.asarray(K, dtype=np.float64)), torch.as_tensor(np.asarray(cam_to_world, dtype=np.float64)),
        d, width, height, **kwargs,
    )
    return idx.numpy(), pu.numpy(), pv.numpy()
