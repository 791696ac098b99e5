"""Ray-cast rendering of triangle meshes with open3d's ``RaycastingScene`` (CPU, headless).

Camera model (the one ScanNet and the rest of hiclr use): pinhole intrinsics ``K`` (3,3) in pixels,
camera-to-world pose (4,4) in the OpenCV convention (x right, y down, z forward). Pixel ``(u, v)``
(column, row, integers) is the ray through the image point ``(u, v)``, so a world point projected
with ``u = fx·x/z + cx`` and rounded lands on the pixel whose ray it lies on. Depth is the z
coordinate in the camera frame (not the ray length), in metres; 0 marks pixels whose ray hits
nothing, as in the store's depth frames.

One :class:`MeshRenderer` builds the acceleration structure once and renders any number of views;
the module-level functions are one-shot conveniences.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hiclr.errors import HiclrError

_INVALID = np.uint32(0xFFFFFFFF)


def _open3d() -> Any:
    try:
        import open3d as o3d
    except (ImportError, OSError) as exc:  # pragma: no cover - open3d is a core dependency
        if "libusb" in str(exc):
            raise HiclrError(f"open3d cannot load a system library ({exc})",
                             "install it: apt-get install -y libusb-1.0-0") from exc
        raise HiclrError(f"rendering views of a mesh needs open3d, which does not import ({exc})",
                         "pip install open3d (or open3d-cpu)") from exc
    return o3d


def pixel_rays(K: np.ndarray, cam_to_world: np.ndarray, width: int, height: int) -> np.ndarray:
    """Rays of every pixel: (H, W, 6) float32 = origin (3) and direction (3) in world coordinates.

    The direction is ``R · ((u - cx)/fx, (v - cy)/fy, 1)``: its camera-frame z is 1, so a hit at
    ray parameter ``t`` has depth ``t``."""
    K = np.asarray(K, dtype=np.float64)
    T = np.asarray(cam_to_world, dtype=np.float64)
    R = T[:3, :3]
    x = (np.arange(width, dtype=np.float64) - K[0, 2]) / K[0, 0]  # (W,)
    y = (np.arange(height, dtype=np.float64) - K[1, 2]) / K[1, 1]  # (H,)
    rays = np.empty((height, width, 6), dtype=np.float32)
    rays[..., :3] = T[:3, 3]
    # d_world = R · (x, y, 1) = x·R[:,0] + y·R[:,1] + R[:,2], built separably
    rays[..., 3:] = x[None, :, None] * R[:, 0] + (y[:, None] * R[:, 1] + R[:, 2])[:, None, :]
    return rays


@dataclass
class RayHits:
    """What each pixel's ray hit. All (H, W, ...) arrays."""

    depth: np.ndarray  # float32 (H,W) metres, camera z; 0 = no hit
    triangle: np.ndarray  # int32 (H,W) index into the mesh faces; -1 = no hit
    bary: np.ndarray  # float32 (H,W,2) barycentric (b1, b2): hit = (1-b1-b2)·v0 + b1·v1 + b2·v2
    normal: np.ndarray  # float32 (H,W,3) geometric normal of the hit triangle (world frame)
    direction: np.ndarray  # float32 (H,W,3) ray direction (camera-frame z = 1), world frame

    @property
    def valid(self) -> np.ndarray:
        return self.triangle >= 0


@dataclass
class RenderedView:
    """One rendered RGB-D frame with its ground truth."""

    depth: np.ndarray  # float32 (H,W) metres, 0 = no hit
    color: np.ndarray  # uint8 (H,W,3)
    label: np.ndarray  # int16 (H,W), -1 = no hit or ignored
    triangle: np.ndarray  # int32 (H,W), -1 = no hit


class MeshRenderer:
    """A triangle mesh ready for ray casting: vertices (N,3) metres, faces (F,3) vertex indices."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray) -> None:
        o3d = _open3d()
        self.vertices = np.ascontiguousarray(vertices, dtype=np.float32)
        self.faces = np.ascontiguousarray(faces, dtype=np.int64)
        self._o3d = o3d
        self.scene = o3d.t.geometry.RaycastingScene()
        self.scene.add_triangles(
            o3d.core.Tensor(self.vertices), o3d.core.Tensor(self.faces.astype(np.uint32))
        )

    # -- geometry
    def cast(self, rays: np.ndarray) -> dict[str, np.ndarray]:
        """Cast (..., 6) rays; returns open3d's answers as numpy arrays of shape (...)."""
        ans = self.scene.cast_rays(self._o3d.core.Tensor(np.ascontiguousarray(rays, dtype=np.float32)))
        return {k: ans[k].numpy() for k in ("t_hit", "primitive_ids", "primitive_uvs", "primitive_normals")}

    def hits(self, K: np.ndarray, cam_to_world: np.ndarray, width: int, height: int) -> RayHits:
        """Depth, hit triangle, barycentrics and normal for every pixel of a view."""
        rays = pixel_rays(K, cam_to_world, width, height)
        ans = self.cast(rays)
        ids = ans["primitive_ids"]
        valid = ids != _INVALID
        depth = np.where(valid, ans["t_hit"], np.float32(0.0)).astype(np.float32)
        tri = ids.astype(np.int64).astype(np.int32)  # the invalid id 2^32 - 1 wraps to -1
        tri[~valid] = -1
        return RayHits(depth=depth, triangle=tri, bary=ans["primitive_uvs"], normal=ans["primitive_normals"],
                       direction=rays[..., 3:])

    def distance(self, points: np.ndarray) -> np.ndarray:
        """Unsigned distance (M,) float32 of world points (M,3) to the mesh surface, metres."""
        q = self._o3d.core.Tensor(np.ascontiguousarray(points, dtype=np.float32))
        return self.scene.compute_distance(q).numpy()

    # -- images
    def depth_and_triangles(self, K: np.ndarray, cam_to_world: np.ndarray, width: int,
                            height: int) -> tuple[np.ndarray, np.ndarray]:
        """(depth float32 (H,W) metres with 0 = no hit, hit triangle int32 (H,W) with -1 = no hit)."""
        h = self.hits(K, cam_to_world, width, height)
        return h.depth, h.triangle

    def _corners(self, h: RayHits) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Flat indices (M,) of the pixels that hit, their triangles' vertex ids (M,3) and the
        barycentric weight of each corner (M,3) float32 (rows sum to 1)."""
        tri = h.triangle.reshape(-1)
        idx = np.flatnonzero(tri >= 0)
        full = len(idx) == tri.size  # the usual case indoors: skip the gathers
        b = h.bary.reshape(-1, 2) if full else h.bary.reshape(-1, 2)[idx]
        w = np.empty((len(idx), 3), dtype=np.float32)
        w[:, 1:] = b
        w[:, 0] = 1.0 - b[:, 0] - b[:, 1]
        return idx, self.faces[tri if full else tri[idx]], w

    def labels(self, vertex_labels: np.ndarray, K: np.ndarray, cam_to_world: np.ndarray, width: int,
               height: int, hits: RayHits | None = None) -> np.ndarray:
        """Per-pixel label (H,W) int16: the label of the hit triangle's vertex nearest to the hit
        point (largest barycentric weight); -1 where the ray hits nothing."""
        h = hits if hits is not None else self.hits(K, cam_to_world, width, height)
        return self._labels(h, self._corners(h), vertex_labels)

    def colors(self, vertex_colors: np.ndarray, K: np.ndarray, cam_to_world: np.ndarray, width: int,
               height: int, hits: RayHits | None = None, shading: bool = True) -> np.ndarray:
        """Per-pixel RGB (H,W,3) uint8 (black where no hit): vertex colours interpolated with the
        hit's barycentrics, times Lambertian shading (0.6 + 0.4·|cos| to a light at the camera)."""
        h = hits if hits is not None else self.hits(K, cam_to_world, width, height)
        return self._colors(h, self._corners(h), vertex_colors, shading)

    @staticmethod
    def _labels(h: RayHits, corners: tuple[np.ndarray, np.ndarray, np.ndarray],
                vertex_labels: np.ndarray) -> np.ndarray:
        idx, vid, w = corners
        out = np.full(h.triangle.size, -1, dtype=np.int16)
        nearest = vid[np.arange(len(vid)), np.argmax(w, axis=1)]
        out[idx] = np.asarray(vertex_labels)[nearest]
        return out.reshape(h.triangle.shape)

    @staticmethod
    def _colors(h: RayHits, corners: tuple[np.ndarray, np.ndarray, np.ndarray], vertex_colors: np.ndarray,
                shading: bool) -> np.ndarray:
        idx, vid, w = corners
        vc = np.asarray(vertex_colors, dtype=np.float32)
        rgb = np.einsum("mk,mkc->mc", w, vc[vid])  # (M,3)
        if shading:
            d = h.direction.reshape(-1, 3)[idx]
            n = h.normal.reshape(-1, 3)[idx]
            cos = np.abs(np.einsum("ij,ij->i", d, n)) / np.linalg.norm(d, axis=1)
            rgb *= (0.6 + 0.4 * cos)[:, None]
        out = np.zeros((h.triangle.size, 3), dtype=np.uint8)
        out[idx] = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
        return out.reshape(h.triangle.shape + (3,))

    def render(self, vertex_colors: np.ndarray, vertex_labels: np.ndarray | None, K: np.ndarray,
               cam_to_world: np.ndarray, width: int, height: int, shading: bool = True) -> RenderedView:
        """Depth, colour, label and triangle images of one view, from one ray cast."""
        h = self.hits(K, cam_to_world, width, height)
        corners = self._corners(h)
        label = (self._labels(h, corners, vertex_labels) if vertex_labels is not None
                 else np.full(h.triangle.shape, -1, dtype=np.int16))
        color = self._colors(h, corners, vertex_colors, shading)
        return RenderedView(depth=h.depth, color=color, label=label, triangle=h.triangle)


# ------------------------------------------------------------------------------------------------
# one-shot conveniences


def render_depth_and_triangles(vertices: np.ndarray, faces: np.ndarray, K: np.ndarray,
                               cam_to_world: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Depth (H,W) float32 metres (0 = no hit) and hit triangle (H,W) int32 (-1 = no hit) of one view."""
    return MeshRenderer(vertices, faces).depth_and_triangles(K, cam_to_world, width, height)


def render_labels(vertices: np.ndarray, faces: np.ndarray, vertex_labels: np.ndarray, K: np.ndarray,
                  cam_to_world: np.ndarray, width: int, height: int) -> np.ndarray:
    """Ground-truth label image (H,W) int16 of one view (-1 where no hit). See :meth:`MeshRenderer.labels`."""
    return MeshRenderer(vertices, faces).labels(vertex_labels, K, cam_to_world, width, height)


def render_view(vertices: np.ndarray, faces: np.ndarray, vertex_colors: np.ndarray,
                vertex_labels: np.ndarray | None, K: np.ndarray, cam_to_world: np.ndarray, width: int,
                height: int) -> RenderedView:
    """Depth, colour, label and triangle images of one view (for many views, build one
    :class:`MeshRenderer` and call its ``render``)."""
    return MeshRenderer(vertices, faces).render(vertex_colors, vertex_labels, K, cam_to_world, width, height)


def backproject(depth: np.ndarray, K: np.ndarray, cam_to_world: np.ndarray) -> np.ndarray:
    """World points (M,3) float64 of the pixels with depth > 0 (row-major order), metres."""
    K = np.asarray(K, dtype=np.float64)
    T = np.asarray(cam_to_world, dtype=np.float64)
    v, u = np.nonzero(depth > 0)
    z = depth[v, u].astype(np.float64)
    p = np.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z], axis=1)
    return p @ T[:3, :3].T + T[:3, 3]
