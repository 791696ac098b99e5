"""Procedural rooms: a non-overlapping furniture layout and its tessellated, labelled triangle mesh.

World frame: x ∈ [0, W], y ∈ [0, D] on the floor, z up ∈ [0, H], metres. Walls are numbered
0: y = 0, 1: x = W, 2: y = D, 3: x = 0; wall k's inward normal is the object frame's +y turned
by k·90° about z, so an object "against wall k" is its :class:`~hiclr.datasets.furniture.Proto`
rotated by k·90° with its back on the wall. Rotations are multiples of 90°, so every part stays
an axis-aligned box and the layout test (no two keep-out boxes closer than a margin) is exact.

Every box face is its own grid of triangles at about ``spacing`` metres (faces are not welded, so
creases stay sharp and vertex normals are exact); faces lying on the floor or a wall plane are
dropped, as a scanner never sees them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hiclr.datasets import furniture as fu
from hiclr.datasets.classes import scannet20_index

ROOM_TYPES: tuple[str, ...] = ("bedroom", "living", "kitchen", "bathroom")
_EPS = 1e-6


@dataclass
class Placed:
    """An object in the room: world-frame parts and the box other objects must keep out of."""

    name: str
    parts: list[fu.Part]
    keep_lo: np.ndarray  # (3,)
    keep_hi: np.ndarray  # (3,)
    wall: int | None  # the wall it stands against, if any

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return np.min([p.lo for p in self.parts], axis=0), np.max([p.hi for p in self.parts], axis=0)


@dataclass
class Layout:
    """A room's size and the objects placed in it."""

    kind: str
    size: np.ndarray  # (3,) W, D, H metres
    objects: list[Placed] = field(default_factory=list)

    def wall_length(self, k: int) -> float:
        return float(self.size[0] if k % 2 == 0 else self.size[1])

    def wall_point(self, k: int, s: float) -> np.ndarray:
        """The floor point at distance ``s`` along wall ``k`` (walls run anticlockwise)."""
        W, D = float(self.size[0]), float(self.size[1])
        return np.array([(s, 0.0), (W, s), (W - s, D), (0.0, D - s)][k])

    def fits(self, lo: np.ndarray, hi: np.ndarray, margin: float) -> bool:
        """True when box lo–hi lies inside the room and clear of every keep-out box by ``margin``."""
        if (lo[:2] < -_EPS).any() or (hi[:2] > self.size[:2] + _EPS).any() or hi[2] > self.size[2]:
            return False
        for o in self.objects:
            if (lo < o.keep_hi + margin).all() and (hi > o.keep_lo - margin).all():
                return False
        return True

    def place(self, proto: fu.Proto, k: int, xy: np.ndarray, wall: int | None,
              margin: float) -> Placed | None:
        """Put ``proto`` (centred) rotated by k·90° at floor point ``xy``; None if it does not fit."""
        parts = [_turn(p.lo, p.hi, k, xy) for p in proto.parts]
        lo, hi = np.min([a for a, _ in parts], axis=0), np.max([b for _, b in parts], axis=0)
        plo, phi = proto.bounds()
        klo, khi = _turn(plo, phi + np.array([0.0, proto.front_clearance, 0.0]), k, xy)
        if not self.fits(lo, hi, margin) or not self.fits(klo, khi, margin):
            return None
        obj = Placed(proto.name, [fu.Part(a, b, p.label, p.color) for (a, b), p in zip(parts, proto.parts)],
                     klo, khi, wall)
        self.objects.append(obj)
        return obj


def _turn(lo: np.ndarray, hi: np.ndarray, k: int, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Box lo–hi rotated by k·90° about z, then shifted by (xy, 0)."""
    c, s = [(1, 0), (0, 1), (-1, 0), (0, -1)][k % 4]
    corners = np.array([[lo[0], lo[1]], [hi[0], hi[1]]])
    x, y = corners[:, 0], corners[:, 1]
    rot = np.stack([c * x - s * y, s * x + c * y], axis=1) + xy
    return (np.array([*rot.min(axis=0), lo[2]]), np.array([*rot.max(axis=0), hi[2]]))


# ------------------------------------------------------------------------------------------------
# placement strategies


def against_wall(layout: Layout, rng: np.random.Generator, proto: fu.Proto, walls: list[int] | None = None,
                 s: float | None = None, tries: int = 40, margin: float = 0.05) -> Placed | None:
    """Stand ``proto`` with its back on a wall (random wall and position unless given)."""
    proto = proto.centred()
    lo, hi = proto.bounds()
    w, d = hi[0] - lo[0], hi[1] - lo[1]
    for _ in range(tries if s is None else 1):
        k = int(rng.choice(walls)) if walls else int(rng.integers(4))
        L = layout.wall_length(k)
        if L < w + 0.1:
            continue
        pos = float(rng.uniform(w / 2 + 0.05, L - w / 2 - 0.05)) if s is None else s
        normal = np.array([(0, 1), (-1, 0), (0, -1), (1, 0)][k], dtype=np.float64)
        xy = layout.wall_point(k, pos) + normal * (d / 2)
        placed = layout.place(proto, k, xy, k, margin)
        if placed is not None:
            return placed
    return None


def beside(layout: Layout, rng: np.random.Generator, proto: fu.Proto, anchor: Placed) -> Placed | None:
    """Stand ``proto`` on the anchor's wall, right next to it (left or right, random order)."""
    if anchor.wall is None:
        return None
    k = anchor.wall
    lo, hi = anchor.bounds()
    centre = (lo + hi) / 2
    along = [centre[0], centre[1], layout.size[0] - centre[0], layout.size[1] - centre[1]][k]
    half = (hi[0] - lo[0] if k % 2 == 0 else hi[1] - lo[1]) / 2
    plo, phi = proto.centred().bounds()
    w = phi[0] - plo[0]
    for side in rng.permutation([-1, 1]):
        got = against_wall(layout, rng, proto, walls=[k], s=along + side * (half + 0.06 + w / 2), margin=0.02)
        if got is not None:
            return got
    return None


def in_front(layout: Layout, rng: np.random.Generator, proto: fu.Proto, anchor: Placed, gap: float,
             facing: bool, margin: float = 0.05) -> Placed | None:
    """Put ``proto`` ``gap`` metres in front of a wall-standing anchor, facing it or facing away."""
    if anchor.wall is None:
        return None
    k = anchor.wall
    proto = proto.centred()
    plo, phi = proto.bounds()
    lo, hi = anchor.bounds()
    normal = np.array([(0, 1), (-1, 0), (0, -1), (1, 0)][k], dtype=np.float64)
    centre = (lo[:2] + hi[:2]) / 2
    depth = abs(float(np.dot(hi[:2] - lo[:2], np.abs(normal))))
    d = phi[1] - plo[1]
    for jitter in (0.0, *rng.uniform(-0.3, 0.3, 4)):
        tangent = np.array([-normal[1], normal[0]])
        xy = centre + normal * (depth / 2 + gap + d / 2) + tangent * jitter
        got = layout.place(proto, (k + 2) % 4 if facing else k, xy, None, margin)
        if got is not None:
            return got
    return None


def free(layout: Layout, rng: np.random.Generator, proto: fu.Proto, tries: int = 40,
         margin: float = 0.3) -> Placed | None:
    """Put ``proto`` anywhere on the floor with a random 90° turn, ``margin`` clear of everything."""
    proto = proto.centred()
    plo, phi = proto.bounds()
    r = float(np.linalg.norm(phi[:2] - plo[:2])) / 2
    for _ in range(tries):
        xy = rng.uniform([r, r], layout.size[:2] - r)
        got = layout.place(proto, int(rng.integers(4)), xy, None, margin)
        if got is not None:
            return got
    return None


def chairs_around(layout: Layout, rng: np.random.Generator, tbl: Placed, n: int) -> int:
    """Up to ``n`` chairs on the sides of a free-standing table, each facing it. Returns how many."""
    lo, hi = tbl.bounds()
    centre = (lo[:2] + hi[:2]) / 2
    count = 0
    # (rotation k that turns the chair's front +y to face the table, outward direction)
    sides = [(0, np.array([0.0, -1.0])), (2, np.array([0.0, 1.0])), (3, np.array([-1.0, 0.0])),
             (1, np.array([1.0, 0.0]))]
    for idx in rng.permutation(4):
        if count >= n:
            break
        k, out = sides[idx]
        c = fu.chair(rng).centred()
        clo, chi = c.bounds()
        extent = float(np.dot(hi[:2] - lo[:2], np.abs(out))) / 2
        xy = centre + out * (extent + 0.08 + (chi[1] - clo[1]) / 2)
        if layout.place(c, k, xy, None, 0.03) is not None:
            count += 1
    return count


# ------------------------------------------------------------------------------------------------
# room programmes


def make_layout(rng: np.random.Generator, kind: str) -> Layout:
    """Draw a room of type ``kind`` (one of :data:`ROOM_TYPES`) and lay out its objects."""
    lo, hi = {"bedroom": ((3.6, 3.4), (5.0, 4.6)), "living": ((4.2, 3.8), (6.0, 5.0)),
              "kitchen": ((3.6, 3.2), (5.0, 4.4)), "bathroom": ((2.6, 2.4), (3.4, 3.0))}[kind]
    W, D = rng.uniform(lo, hi)
    layout = Layout(kind, np.array([W, D, rng.uniform(2.6, 3.0)]))
    door_obj = against_wall(layout, rng, fu.door(rng), margin=0.1)
    others = [k for k in range(4) if door_obj is None or k != door_obj.wall]
    n_windows = {"bedroom": 1 + int(rng.random() < 0.5), "living": 2, "kitchen": 1,
                 "bathroom": int(rng.random() < 0.6)}[kind]
    curtains = kind == "bedroom" or (kind == "living" and rng.random() < 0.6)
    for _ in range(n_windows):
        against_wall(layout, rng, fu.window(rng, curtains), walls=others, margin=0.15)
    if kind == "bedroom":
        b = against_wall(layout, rng, fu.bed(rng))
        d = against_wall(layout, rng, fu.desk(rng))
        if d is not None:
            in_front(layout, rng, fu.chair(rng), d, gap=0.05, facing=True)
        if b is not None:
            for _ in range(int(rng.integers(1, 3))):
                beside(layout, rng, fu.cabinet(rng, "nightstand"), b)
        against_wall(layout, rng, fu.cabinet(rng, "wardrobe" if rng.random() < 0.5 else "dresser"))
        if rng.random() < 0.6:
            against_wall(layout, rng, fu.bookshelf(rng))
    elif kind == "living":
        s = against_wall(layout, rng, fu.sofa(rng))
        if s is not None:
            in_front(layout, rng, fu.table(rng, coffee=True), s, gap=0.35, facing=False)
            opposite = [(s.wall + 2) % 4] if s.wall is not None else None
            against_wall(layout, rng, fu.cabinet(rng, "tv"), walls=opposite)
        against_wall(layout, rng, fu.bookshelf(rng))
        for _ in range(int(rng.integers(1, 3))):
            free(layout, rng, fu.chair(rng), margin=0.25)
        if rng.random() < 0.5:
            t = free(layout, rng, fu.table(rng))
            if t is not None:
                chairs_around(layout, rng, t, int(rng.integers(2, 5)))
    elif kind == "kitchen":
        against_wall(layout, rng, fu.counter(rng))
        against_wall(layout, rng, fu.refrigerator(rng))
        against_wall(layout, rng, fu.cabinet(rng, "pantry"))
        t = free(layout, rng, fu.table(rng))
        if t is not None:
            chairs_around(layout, rng, t, int(rng.integers(2, 5)))
    else:  # bathroom
        against_wall(layout, rng, fu.bathtub(rng))
        against_wall(layout, rng, fu.toilet(rng), margin=0.1)
        against_wall(layout, rng, fu.vanity(rng), margin=0.1)
    for _ in range({"bathroom": 1}.get(kind, 3)):
        against_wall(layout, rng, fu.picture(rng), margin=0.15)
    if rng.random() < 0.7:
        free(layout, rng, fu.other(rng), margin=0.2)
    return layout


# ------------------------------------------------------------------------------------------------
# tessellation


@dataclass
class Mesh:
    """A labelled triangle mesh. N vertices, F faces."""

    vertices: np.ndarray  # float64 (N,3) metres
    faces: np.ndarray  # int64 (F,3), anticlockwise seen from the side the normal points to
    normals: np.ndarray  # float32 (N,3) unit
    colors: np.ndarray  # uint8 (N,3)
    labels: np.ndarray  # int16 (N,) ScanNet-20 index, -1 = ignore
    instances: np.ndarray  # int32 (N,) object index (0 = room shell: walls, floor, ceiling)


def grid(origin: np.ndarray, e1: np.ndarray, e2: np.ndarray, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """A parallelogram origin + [0,1]·e1 + [0,1]·e2 as a grid of triangles ≤ ``spacing`` apart.

    Returns vertices ((n1+1)(n2+1), 3) and faces (2·n1·n2, 3) whose normal is e1 × e2."""
    n1 = max(1, math.ceil(np.linalg.norm(e1) / spacing - 1e-9))
    n2 = max(1, math.ceil(np.linalg.norm(e2) / spacing - 1e-9))
    a, b = np.meshgrid(np.linspace(0.0, 1.0, n1 + 1), np.linspace(0.0, 1.0, n2 + 1), indexing="ij")
    verts = origin + a.reshape(-1, 1) * e1 + b.reshape(-1, 1) * e2
    idx = np.arange((n1 + 1) * (n2 + 1)).reshape(n1 + 1, n2 + 1)
    q00, q10 = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel()
    q11, q01 = idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    faces = np.concatenate([np.stack([q00, q10, q11], 1), np.stack([q00, q11, q01], 1)])
    return verts, faces


def box_faces(lo: np.ndarray, hi: np.ndarray,
              room: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The visible faces of box lo–hi as (origin, e1, e2) with e1 × e2 pointing outwards; faces on
    the floor (z = 0) or on a wall plane of a room of size ``room`` are left out."""
    out = []
    size = hi - lo
    for a in range(3):
        b, c = (a + 1) % 3, (a + 2) % 3
        eb, ec = np.eye(3)[b] * size[b], np.eye(3)[c] * size[c]
        if size[b] < _EPS or size[c] < _EPS:
            continue
        for side in (-1, 1):
            plane = lo[a] if side < 0 else hi[a]
            on_boundary = abs(plane) < _EPS or (a < 2 and abs(plane - room[a]) < _EPS)
            if on_boundary:
                continue
            origin = lo.copy()
            origin[a] = plane
            out.append((origin, eb, ec) if side > 0 else (origin, ec, eb))
    return out


class MeshBuilder:
    """Accumulates grids of one colour/label each and adds per-vertex colour variation."""

    def __init__(self, spacing: float, rng: np.random.Generator) -> None:
        self.spacing, self.rng = spacing, rng
        self.v: list[np.ndarray] = []
        self.f: list[np.ndarray] = []
        self.n: list[np.ndarray] = []
        self.c: list[np.ndarray] = []
        self.lab: list[np.ndarray] = []
        self.inst: list[np.ndarray] = []
        self.count = 0

    def add(self, origin: np.ndarray, e1: np.ndarray, e2: np.ndarray, color: np.ndarray, label: int,
            instance: int, pattern: str | None = None) -> None:
        verts, faces = grid(origin, e1, e2, self.spacing)
        normal = np.cross(e1, e2)
        normal = normal / np.linalg.norm(normal)
        col = np.broadcast_to(np.asarray(color, dtype=np.float64), verts.shape).copy()
        if pattern == "planks":  # floorboards 15–20 cm wide, each a slightly different shade
            width = float(self.rng.uniform(0.15, 0.2))
            plank = np.floor(verts[:, 0] / width).astype(np.int64)
            shade = self.rng.uniform(0.85, 1.1, plank.max() - plank.min() + 1)
            col *= shade[plank - plank.min()][:, None]
        col += self.rng.normal(0.0, 4.0, col.shape)
        self.v.append(verts)
        self.f.append(faces + self.count)
        self.n.append(np.broadcast_to(normal, verts.shape))
        self.c.append(np.clip(np.rint(col), 0, 255).astype(np.uint8))
        self.lab.append(np.full(len(verts), label, dtype=np.int16))
        self.inst.append(np.full(len(verts), instance, dtype=np.int32))
        self.count += len(verts)

    def build(self) -> Mesh:
        return Mesh(np.concatenate(self.v), np.concatenate(self.f), np.concatenate(self.n).astype(np.float32),
                    np.concatenate(self.c), np.concatenate(self.lab), np.concatenate(self.inst))


def room_mesh(layout: Layout, rng: np.random.Generator, spacing: float, ceiling: bool) -> Mesh:
    """Tessellate the room shell (floor, four walls, optional ceiling) and every object part."""
    W, D, H = (float(x) for x in layout.size)
    mb = MeshBuilder(spacing, rng)
    floor_c = np.asarray(fu._pick(rng, "floor"))
    wall_c = np.asarray(fu._pick(rng, "wall"))
    ex, ey, ez = np.array([W, 0, 0.0]), np.array([0, D, 0.0]), np.array([0, 0, H])
    mb.add(np.zeros(3), ex, ey, floor_c, scannet20_index("floor"), 0, pattern="planks")
    mb.add(np.zeros(3), ez, ex, wall_c, scannet20_index("wall"), 0)  # y = 0, normal +y
    mb.add(np.array([W, 0, 0.0]), ez, ey, wall_c, scannet20_index("wall"), 0)  # x = W, normal -x
    mb.add(np.array([0, D, 0.0]), ex, ez, wall_c, scannet20_index("wall"), 0)  # y = D, normal -y
    mb.add(np.zeros(3), ey, ez, wall_c, scannet20_index("wall"), 0)  # x = 0, normal +x
    if ceiling:
        mb.add(np.array([0, 0, H]), ey, ex, np.array([240.0, 240, 240]), -1, 0)
    for i, obj in enumerate(layout.objects, start=1):
        tint = rng.uniform(-12, 12, 3)  # per-object variation
        for p in obj.parts:
            for origin, e1, e2 in box_faces(p.lo, p.hi, layout.size):
                mb.add(origin, e1, e2, p.color + tint, p.label, i)
    return mb.build()
