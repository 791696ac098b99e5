"""Ray-cast rendering of triangle meshes with open3d's ``RaycastingScene`` (CPU, headless), or
without open3d by :class:`TorchRaycaster` (Möller–Trumbore in PyTorch, on a GPU when there is one).

Camera model (the one ScanNet and the rest of hiclr use): pinhole intrinsics ``K`` (3,3) in pixels,
camera-to-world pose (4,4) in the OpenCV convention (x right, y down, z forward). Pixel ``(u, v)``
(column, row, integers) is the ray through the image point ``(u, v)``, so a world point projected
with ``u = fx·x/z + cx`` and rounded lands on the pixel whose ray it lies on. Depth is the z
coordinate in the camera frame (not the ray length), in metres; 0 marks pixels whose ray hits
nothing, as in the store's depth frames.

One :class:`MeshRenderer` builds the acceleration structure once and renders any number of views;
the module-level functions are one-shot conveniences. ``engine="auto"`` uses open3d when it imports
and :class:`TorchRaycaster` otherwise (a machine without open3d, such as a bare GPU server, can
still prepare synthetic rooms); both answer the same questions (tests/test_render.py runs every
check on both, and compares them on a furnished room).
"""

from __future__ import annotations

import math
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


def open3d_available() -> bool:
    try:
        _open3d()
    except HiclrError:
        return False
    return True


class TorchRaycaster:
    """First hits of rays on a triangle mesh, answered as open3d's ``RaycastingScene.cast_rays`` does
    (``t_hit`` inf, ``primitive_ids`` 2³²-1 on a miss; ``primitive_uvs`` the barycentrics of corners
    1 and 2; ``primitive_normals`` the unit geometric normal ``(v1-v0)×(v2-v0)``).

    Möller–Trumbore tests in float32 over (rays × triangles) blocks. An image of rays, shape
    (H, W, 6), is cast in ``tile``×``tile`` pixel tiles, each against only the triangles that can
    meet it: for a tile whose rays share an origin, triangles wholly behind the origin (along the
    tile's mean direction) are dropped, and the rest must overlap the tile's rays in the projected
    plane of that direction; triangles that straddle the origin's plane are always tested.
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, device: str | None = None,
                 tile: int = 16, block: int = 1 << 22) -> None:
        import torch

        self.torch = torch
        if device is None:  # CUDA unless this is a process forked after its parent started CUDA
            bad_fork = getattr(torch.cuda, "_is_in_bad_fork", lambda: False)()
            device = "cuda" if torch.cuda.is_available() and not bad_fork else "cpu"
        self.device = torch.device(device)
        v = torch.as_tensor(np.asarray(vertices, dtype=np.float32), device=self.device)
        f = torch.as_tensor(np.asarray(faces, dtype=np.int64), device=self.device)
        self.tri = v[f]  # (F, 3 corners, 3)
        self.e1 = self.tri[:, 1] - self.tri[:, 0]
        self.e2 = self.tri[:, 2] - self.tri[:, 0]
        n = torch.linalg.cross(self.e1, self.e2)
        self.normal = n / n.norm(dim=1, keepdim=True).clamp_min(1e-30)
        self.tile, self.block = tile, block

    def cast(self, rays: np.ndarray) -> dict[str, np.ndarray]:
        """(..., 6) rays (origin, direction) -> open3d's four answers, each of shape (...)."""
        torch = self.torch
        r = torch.as_tensor(np.ascontiguousarray(rays, dtype=np.float32), device=self.device)
        shape = r.shape[:-1]
        t = torch.full(shape, math.inf, device=self.device)
        ids = torch.full(shape, -1, dtype=torch.long, device=self.device)
        uv = torch.zeros(shape + (2,), device=self.device)
        if r.dim() == 3:  # an image: tiles of nearby, same-origin rays
            H, W = shape
            for y in range(0, H, self.tile):
                for x in range(0, W, self.tile):
                    tile = (slice(y, y + self.tile), slice(x, x + self.tile))
                    block = r[tile]
                    tb, ib, ub = self._first_hits(block.reshape(-1, 6))
                    t[tile], ids[tile], uv[tile] = tb.view(block.shape[:2]), ib.view(block.shape[:2]), ub.view(block.shape[:2] + (2,))
        else:
            flat_t, flat_ids, flat_uv = t.view(-1), ids.view(-1), uv.view(-1, 2)
            flat = r.reshape(-1, 6)
            for s in range(0, flat.shape[0], self.tile**2):
                sl = slice(s, s + self.tile**2)
                flat_t[sl], flat_ids[sl], flat_uv[sl] = self._first_hits(flat[sl])
        return self._answers(t, ids, uv)

    def _answers(self, t, ids, uv) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
        """open3d's four answers from first-hit distances, triangle ids (-1: none) and barycentrics."""
        torch = self.torch
        hit = ids >= 0
        normals = torch.zeros(ids.shape + (3,), device=self.device)
        normals[hit] = self.normal[ids[hit]]
        prim = torch.where(hit, ids, torch.full_like(ids, 0xFFFFFFFF))
        return {"t_hit": t.cpu().numpy(), "primitive_ids": prim.cpu().numpy().astype(np.uint32),
                "primitive_uvs": uv.cpu().numpy(), "primitive_normals": normals.cpu().numpy()}

    def _candidates(self, rays):  # type: ignore[no-untyped-def]
        """Indices of the triangles the rays (R, 6) may hit (all of them unless they share an origin)."""
        torch = self.torch
        o, d = rays[0, :3], rays[:, 3:]
        if not bool((rays[:, :3] == o).all()):
            return torch.arange(self.tri.shape[0], device=self.device)
        c = d.mean(0)
        c = c / c.norm()
        a = torch.linalg.cross(c, torch.tensor([1.0, 0.0, 0.0], device=self.device))
        if float(a.norm()) < 1e-3:
            a = torch.linalg.cross(c, torch.tensor([0.0, 1.0, 0.0], device=self.device))
        a = a / a.norm()
        b = torch.linalg.cross(c, a)
        basis = torch.stack([a, b, c], 1)  # columns: the tile's frame
        dz = d @ c
        if not bool((dz > 0).all()):
            return torch.arange(self.tri.shape[0], device=self.device)
        dp = (d @ basis[:, :2]) / dz[:, None]  # rays in the projected plane z = 1
        lo, hi = dp.min(0).values, dp.max(0).values
        p = (self.tri - o) @ basis  # (F, 3, 3) corners in the tile's frame
        z = p[..., 2]
        front = (z > 0).all(1)
        behind = (z <= 0).all(1)
        q = p[..., :2] / z.clamp_min(1e-12)[..., None]
        overlap = ((q.min(1).values <= hi) & (q.max(1).values >= lo)).all(1)
        keep = (front & overlap) | (~front & ~behind)
        return keep.nonzero().squeeze(1)

    def cast_image(self, K: np.ndarray, cam_to_world: np.ndarray, width: int, height: int) -> dict[str, np.ndarray]:
        """:meth:`cast` of a view's :func:`pixel_rays`, with the triangles binned into pixel tiles:
        a triangle is tested only in the tiles that the projected bounding box of its part in front
        of the camera covers (pixel ``(u, v)``'s ray meets it only if ``(u, v)`` lies in that
        projection); one wholly behind the camera in none."""
        torch = self.torch
        rays = torch.as_tensor(pixel_rays(K, cam_to_world, width, height), device=self.device)
        Tm = torch.as_tensor(np.asarray(cam_to_world, dtype=np.float32), device=self.device)
        pc = (self.tri - Tm[:3, 3]) @ Tm[:3, :3]  # (F, 3, 3) corners in the camera frame
        near = 1e-4  # hits closer than 0.1 mm to the camera plane are not looked for
        # the part of each triangle in front of the near plane: its corners there, and the points
        # where its edges cross that plane; a pixel's ray meets the triangle only inside the
        # projection of that part, whose bounding box is finite
        a, b = pc, pc[:, [1, 2, 0]]
        za, zb = a[..., 2], b[..., 2]
        cross = (za - near) * (zb - near) < 0
        s_ = ((near - za) / torch.where(cross, zb - za, torch.ones_like(za))).clamp(0, 1)
        pts = torch.cat([a, a + s_[..., None] * (b - a)], 1)  # (F, 6, 3)
        ok = torch.cat([za >= near, cross], 1)
        zp = pts[..., 2].clamp_min(near)
        fx, fy, cx, cy = float(K[0][0]), float(K[1][1]), float(K[0][2]), float(K[1][2])
        u, v = fx * pts[..., 0] / zp + cx, fy * pts[..., 1] / zp + cy
        big = torch.tensor(math.inf, device=self.device)
        umin, umax = torch.where(ok, u, big).min(1).values, torch.where(ok, u, -big).max(1).values
        vmin, vmax = torch.where(ok, v, big).min(1).values, torch.where(ok, v, -big).max(1).values
        eps, n = 1e-3, self.tile
        u0 = torch.ceil(umin - eps).clamp(0, width - 1)
        u1 = torch.floor(umax + eps).clamp(0, width - 1)
        v0 = torch.ceil(vmin - eps).clamp(0, height - 1)
        v1 = torch.floor(vmax + eps).clamp(0, height - 1)
        inside = ok.any(1) & (umax >= -eps) & (umin <= width - 1 + eps) & (vmax >= -eps) & (vmin <= height - 1 + eps)
        f = inside.nonzero().squeeze(1)
        tx0, tx1 = (u0[f] // n).long(), (u1[f] // n).long()
        ty0, ty1 = (v0[f] // n).long(), (v1[f] // n).long()
        nx, ny = -(-width // n), -(-height // n)
        w = tx1 - tx0 + 1
        count = w * (ty1 - ty0 + 1)
        face = torch.repeat_interleave(f, count)
        k = torch.arange(face.numel(), device=self.device) - torch.repeat_interleave(torch.cumsum(count, 0) - count, count)
        wk = torch.repeat_interleave(w, count)
        tile_id = (torch.repeat_interleave(ty0, count) + k // wk) * nx + torch.repeat_interleave(tx0, count) + k % wk
        order = torch.argsort(tile_id, stable=True)
        face, tile_id = face[order], tile_id[order]
        starts = torch.searchsorted(tile_id, torch.arange(nx * ny + 1, device=self.device)).tolist()
        t = torch.full((height, width), math.inf, device=self.device)
        ids = torch.full((height, width), -1, dtype=torch.long, device=self.device)
        uv = torch.zeros(height, width, 2, device=self.device)
        for ty in range(ny):
            for tx in range(nx):
                j = ty * nx + tx
                cand = face[starts[j] : starts[j + 1]]
                if cand.numel() == 0:
                    continue
                tile = (slice(ty * n, ty * n + n), slice(tx * n, tx * n + n))
                block = rays[tile]
                tb, ib, ub = self._first_hits(block.reshape(-1, 6), cand)
                t[tile], ids[tile], uv[tile] = tb.view(block.shape[:2]), ib.view(block.shape[:2]), ub.view(block.shape[:2] + (2,))
        return self._answers(t, ids, uv)

    def _first_hits(self, rays, cand=None):  # type: ignore[no-untyped-def]
        """(t (R,), triangle (R,) or -1, barycentrics (R, 2)) of the first hits of rays (R, 6) on
        the triangles ``cand`` (default: those :meth:`_candidates` keeps)."""
        torch = self.torch
        cand = self._candidates(rays) if cand is None else cand
        t = torch.full((rays.shape[0],), math.inf, device=self.device)
        ids = torch.full((rays.shape[0],), -1, dtype=torch.long, device=self.device)
        uv = torch.zeros(rays.shape[0], 2, device=self.device)
        o, d = rays[:, None, :3], rays[:, None, 3:]
        step = max(1, self.block // max(1, rays.shape[0]))
        for s in range(0, cand.numel(), step):
            f = cand[s : s + step]
            v0, e1, e2 = self.tri[f, 0][None], self.e1[f][None], self.e2[f][None]
            pvec = torch.linalg.cross(d.expand(-1, f.numel(), -1), e2.expand(rays.shape[0], -1, -1))
            det = (e1 * pvec).sum(-1)
            inv = 1.0 / torch.where(det.abs() > 1e-12, det, torch.ones_like(det))
            tvec = o - v0
            u = (tvec * pvec).sum(-1) * inv
            qvec = torch.linalg.cross(tvec, e1.expand_as(tvec))
            v = (d * qvec).sum(-1) * inv
            tt = (e2 * qvec).sum(-1) * inv
            ok = (det.abs() > 1e-12) & (u >= 0) & (v >= 0) & (u + v <= 1) & (tt > 0)
            tt = torch.where(ok, tt, torch.full_like(tt, math.inf))
            best, j = tt.min(1)
            better = best < t
            rows = better.nonzero().squeeze(1)
            t[rows] = best[rows]
            ids[rows] = f[j[rows]]
            uv[rows, 0] = u[rows, j[rows]]
            uv[rows, 1] = v[rows, j[rows]]
        return t, ids, uv


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

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, engine: str = "auto") -> None:
        """``engine``: ``open3d``, ``torch`` (:class:`TorchRaycaster`), or ``auto`` (open3d when it imports)."""
        if engine not in ("auto", "open3d", "torch"):
            raise HiclrError(f"unknown ray-casting engine {engine!r}", "use auto, open3d or torch")
        self.vertices = np.ascontiguousarray(vertices, dtype=np.float32)
        self.faces = np.ascontiguousarray(faces, dtype=np.int64)
        if engine == "auto":
            engine = "open3d" if open3d_available() else "torch"
        self.engine = engine
        if engine == "torch":
            self._torch = TorchRaycaster(self.vertices, self.faces)
            return
        o3d = _open3d()
        self._o3d = o3d
        self.scene = o3d.t.geometry.RaycastingScene()
        self.scene.add_triangles(
            o3d.core.Tensor(self.vertices), o3d.core.Tensor(self.faces.astype(np.uint32))
        )

    # -- geometry
    def cast(self, rays: np.ndarray) -> dict[str, np.ndarray]:
        """Cast (..., 6) rays; returns open3d's answers as numpy arrays of shape (...)."""
        if self.engine == "torch":
            return self._torch.cast(rays)
        ans = self.scene.cast_rays(self._o3d.core.Tensor(np.ascontiguousarray(rays, dtype=np.float32)))
        return {k: ans[k].numpy() for k in ("t_hit", "primitive_ids", "primitive_uvs", "primitive_normals")}

    def hits(self, K: np.ndarray, cam_to_world: np.ndarray, width: int, height: int) -> RayHits:
        """Depth, hit triangle, barycentrics and normal for every pixel of a view."""
        rays = pixel_rays(K, cam_to_world, width, height)
        ans = self._torch.cast_image(K, cam_to_world, width, height) if self.engine == "torch" else self.cast(rays)
        ids = ans["primitive_ids"]
        valid = ids != _INVALID
        depth = np.where(valid, ans["t_hit"], np.float32(0.0)).astype(np.float32)
        tri = ids.astype(np.int64).astype(np.int32)  # the invalid id 2^32 - 1 wraps to -1
        tri[~valid] = -1
        return RayHits(depth=depth, triangle=tri, bary=ans["primitive_uvs"], normal=ans["primitive_normals"],
                       direction=rays[..., 3:])

    def distance(self, points: np.ndarray) -> np.ndarray:
        """Unsigned distance (M,) float32 of world points (M,3) to the mesh surface, metres (open3d only)."""
        if self.engine == "torch":
            raise HiclrError("point-to-mesh distances need open3d", "pip install open3d (or open3d-cpu)")
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
