"""Furniture of the synthetic rooms, built from labelled axis-aligned boxes.

Every builder returns a :class:`Proto` in its own frame: x to the object's right, y towards its
front (its back stands against a wall when it is wall-mounted), z up from the floor, metres. A part
carries a ScanNet-20 class index, so one object can hold several classes (a kitchen counter run is
cabinet + counter + sink). Colours are RGB in [0, 255] before per-vertex variation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from hiclr.datasets.classes import scannet20_index as _cls

Color = tuple[float, float, float]

# A few base colours per class; an object picks one and jitters it (see rooms.py).
PALETTE: dict[str, list[Color]] = {
    "wall": [(226, 221, 205), (208, 214, 222), (236, 228, 208), (204, 214, 196)],
    "floor": [(150, 110, 76), (176, 136, 96), (122, 92, 66), (168, 164, 156)],
    "cabinet": [(236, 236, 228), (160, 118, 82), (88, 100, 112)],
    "bed": [(62, 82, 142), (152, 62, 62), (92, 132, 92), (200, 172, 122)],
    "chair": [(42, 42, 48), (142, 32, 32), (172, 122, 72)],
    "sofa": [(92, 92, 104), (122, 72, 52), (62, 92, 124), (152, 142, 122)],
    "table": [(132, 92, 56), (204, 172, 132), (64, 64, 64)],
    "door": [(244, 240, 232), (142, 96, 60), (112, 72, 44)],
    "window": [(250, 250, 250), (84, 84, 88)],
    "bookshelf": [(102, 72, 46), (230, 230, 224), (58, 50, 44)],
    "picture": [(40, 36, 30), (190, 160, 80), (230, 230, 230)],
    "counter": [(62, 62, 62), (222, 216, 204), (122, 112, 102)],
    "desk": [(182, 142, 102), (240, 240, 240), (96, 70, 50)],
    "curtain": [(182, 52, 52), (222, 212, 172), (72, 92, 132)],
    "refrigerator": [(226, 226, 226), (186, 190, 196)],
    "shower curtain": [(228, 240, 246), (200, 222, 236), (240, 226, 236)],
    "toilet": [(248, 248, 248), (236, 236, 240)],
    "sink": [(196, 200, 210), (244, 244, 244)],
    "bathtub": [(240, 236, 224), (250, 250, 250)],
    "otherfurniture": [(202, 162, 62), (62, 142, 122), (152, 152, 152)],
}
GLASS = np.array([168.0, 198.0, 220.0])
METAL = np.array([150.0, 150.0, 156.0])
LINEN = np.array([236.0, 234.0, 228.0])


@dataclass
class Part:
    """An axis-aligned box ``lo``–``hi`` (metres) of one class (ScanNet-20 index) and base colour."""

    lo: np.ndarray  # (3,)
    hi: np.ndarray  # (3,)
    label: int
    color: np.ndarray  # (3,) float RGB


@dataclass
class Proto:
    """An object in its own frame: parts, the class it is named after, and extra keep-out space in
    front of it (a door's swing) that other objects must not occupy."""

    name: str
    parts: list[Part] = field(default_factory=list)
    front_clearance: float = 0.0

    def box(self, x0: float, x1: float, y0: float, y1: float, z0: float, z1: float,
            cls: str | None = None, color: Color | np.ndarray | None = None) -> None:
        """Add the box [x0,x1]×[y0,y1]×[z0,z1] labelled ``cls`` (default: the object's class)."""
        lo = np.array([min(x0, x1), min(y0, y1), min(z0, z1)], dtype=np.float64)
        hi = np.array([max(x0, x1), max(y0, y1), max(z0, z1)], dtype=np.float64)
        c = np.asarray(color if color is not None else PALETTE[cls or self.name][0], dtype=np.float64)
        self.parts.append(Part(lo, hi, _cls(cls or self.name), c))

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo = np.min([p.lo for p in self.parts], axis=0)
        hi = np.max([p.hi for p in self.parts], axis=0)
        return lo, hi

    def centred(self) -> Proto:
        """The same object shifted so its footprint is centred on the origin (z unchanged)."""
        lo, hi = self.bounds()
        shift = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, 0.0])
        parts = [Part(p.lo - shift, p.hi - shift, p.label, p.color) for p in self.parts]
        return Proto(self.name, parts, self.front_clearance)


def _pick(rng: np.random.Generator, name: str) -> np.ndarray:
    options = PALETTE[name]
    return np.asarray(options[int(rng.integers(len(options)))], dtype=np.float64)


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _legs(o: Proto, w: float, d: float, h: float, t: float, inset: float, color: np.ndarray) -> None:
    for sx in (-1, 1):
        for sy in (-1, 1):
            x = sx * (w / 2 - inset - t / 2)
            y = sy * (d / 2 - inset - t / 2)
            o.box(x - t / 2, x + t / 2, y - t / 2, y + t / 2, 0.0, h, color=color)


def _panels(o: Proto, x0: float, x1: float, z0: float, z1: float, y: float, rows: int, cols: int,
            cls: str, color: np.ndarray, handle: bool = True) -> None:
    """Door/drawer fronts on the plane y (protruding 1.5 cm), with 6 mm gaps and small handles."""
    gap, dw, dh = 0.006, (x1 - x0) / cols, (z1 - z0) / rows
    for r in range(rows):
        for c in range(cols):
            a, b = x0 + c * dw + gap, x0 + (c + 1) * dw - gap
            lo, hi = z0 + r * dh + gap, z0 + (r + 1) * dh - gap
            o.box(a, b, y, y + 0.015, lo, hi, cls, color * 0.97)
            if handle:
                hx = (a + b) / 2 if rows > 1 or cols == 1 else (b - 0.05 if c % 2 == 0 else a + 0.05)
                hz = hi - 0.06 if rows > 1 else (lo + hi) / 2
                o.box(hx - 0.05, hx + 0.05, y + 0.015, y + 0.035, hz - 0.012, hz + 0.012, cls, METAL)


# ------------------------------------------------------------------------------------------------
# floor furniture


def bed(rng: np.random.Generator) -> Proto:
    o, wood, cover = Proto("bed"), _pick(rng, "cabinet") * 0.7, _pick(rng, "bed")
    w, d = _u(rng, 1.0, 1.9), _u(rng, 1.95, 2.15)
    o.box(-w / 2, w / 2, 0.0, 0.07, 0.0, _u(rng, 0.9, 1.2), color=wood)  # headboard
    o.box(-w / 2, w / 2, 0.07, d, 0.0, 0.3, color=wood)  # base
    o.box(-w / 2 + 0.02, w / 2 - 0.02, 0.09, d - 0.02, 0.3, 0.5, color=LINEN)  # mattress
    o.box(-w / 2 + 0.01, w / 2 - 0.01, 0.7, d - 0.01, 0.5, 0.54, color=cover)  # blanket
    n = 1 if w < 1.3 else 2
    for i in range(n):
        cx = -w / 2 + (i + 0.5) * w / n
        o.box(cx - 0.3 * w / n, cx + 0.3 * w / n, 0.14, 0.5, 0.5, 0.62, color=LINEN * 0.98)
    return o


def chair(rng: np.random.Generator) -> Proto:
    o, c = Proto("chair"), _pick(rng, "chair")
    w, d, h = _u(rng, 0.42, 0.5), _u(rng, 0.42, 0.5), _u(rng, 0.43, 0.47)
    _legs(o, w, d, h - 0.05, 0.04, 0.0, c * 0.8)
    o.box(-w / 2, w / 2, -d / 2, d / 2, h - 0.05, h, color=c)  # seat
    o.box(-w / 2, w / 2, -d / 2, -d / 2 + 0.04, h, h + _u(rng, 0.38, 0.5), color=c)  # backrest
    return o


def sofa(rng: np.random.Generator) -> Proto:
    o, c = Proto("sofa"), _pick(rng, "sofa")
    w, d, arm = _u(rng, 1.5, 2.3), _u(rng, 0.8, 0.95), _u(rng, 0.14, 0.2)
    o.box(-w / 2, w / 2, 0.0, d, 0.0, 0.25, color=c * 0.9)  # base
    o.box(-w / 2 + arm, w / 2 - arm, 0.0, 0.22, 0.25, _u(rng, 0.75, 0.9), color=c)  # back
    for sx in (-1, 1):  # arms
        o.box(sx * w / 2, sx * (w / 2 - arm), 0.0, d, 0.25, 0.6, color=c)
    n = 2 if w < 1.9 else 3
    inner = w - 2 * arm
    for i in range(n):  # seat cushions with 1 cm gaps
        a = -w / 2 + arm + i * inner / n
        o.box(a + 0.005, a + inner / n - 0.005, 0.22, d - 0.01, 0.25, 0.43, color=c * 1.05)
    return o


def table(rng: np.random.Generator, coffee: bool = False) -> Proto:
    o, c = Proto("table"), _pick(rng, "table")
    if coffee:
        w, d, h = _u(rng, 0.8, 1.2), _u(rng, 0.5, 0.7), _u(rng, 0.4, 0.48)
    else:
        w, d, h = _u(rng, 1.0, 1.6), _u(rng, 0.75, 1.0), _u(rng, 0.72, 0.77)
    t = _u(rng, 0.03, 0.05)
    o.box(-w / 2, w / 2, -d / 2, d / 2, h - t, h, color=c)
    _legs(o, w, d, h - t, 0.05, 0.04, c * 0.85)
    if coffee and rng.random() < 0.5:  # lower shelf
        o.box(-w / 2 + 0.09, w / 2 - 0.09, -d / 2 + 0.09, d / 2 - 0.09, 0.1, 0.12, color=c * 0.9)
    return o


def desk(rng: np.random.Generator) -> Proto:
    o, c = Proto("desk"), _pick(rng, "desk")
    w, d, h = _u(rng, 1.1, 1.6), _u(rng, 0.6, 0.75), _u(rng, 0.72, 0.76)
    o.box(-w / 2, w / 2, 0.0, d, h - 0.03, h, color=c)  # top
    for sx in (-1, 1):  # side panels
        o.box(sx * w / 2, sx * (w / 2 - 0.025), 0.02, d - 0.02, 0.0, h - 0.03, color=c * 0.9)
    o.box(-w / 2 + 0.025, w / 2 - 0.025, 0.02, 0.04, 0.3, h - 0.03, color=c * 0.9)  # modesty panel
    if rng.random() < 0.5:  # drawer unit under one side
        x0 = w / 2 - 0.025 - 0.4 if rng.random() < 0.5 else -w / 2 + 0.025
        o.box(x0, x0 + 0.4, 0.04, d - 0.05, 0.0, h - 0.03, color=c * 0.95)
        _panels(o, x0, x0 + 0.4, 0.02, h - 0.05, d - 0.05, 3, 1, "desk", c * 0.95)
    return o


def cabinet(rng: np.random.Generator, kind: str = "dresser") -> Proto:
    o, c = Proto("cabinet"), _pick(rng, "cabinet")
    w, d, h, rows, cols = {
        "nightstand": (_u(rng, 0.4, 0.5), _u(rng, 0.35, 0.45), _u(rng, 0.5, 0.6), 2, 1),
        "dresser": (_u(rng, 0.8, 1.2), _u(rng, 0.45, 0.55), _u(rng, 0.75, 0.95), 3, 2),
        "wardrobe": (_u(rng, 0.9, 1.3), _u(rng, 0.55, 0.62), _u(rng, 1.8, 2.1), 1, 2),
        "tv": (_u(rng, 1.2, 1.7), _u(rng, 0.4, 0.5), _u(rng, 0.45, 0.55), 1, 3),
        "pantry": (_u(rng, 0.5, 0.7), _u(rng, 0.55, 0.62), _u(rng, 1.9, 2.1), 2, 1),
    }[kind]
    o.box(-w / 2, w / 2, 0.0, d, 0.0, h, color=c)
    _panels(o, -w / 2 + 0.02, w / 2 - 0.02, 0.08, h - 0.03, d, rows, cols, "cabinet", c)
    return o


def bookshelf(rng: np.random.Generator) -> Proto:
    o, c = Proto("bookshelf"), _pick(rng, "bookshelf")
    w, d, h, t = _u(rng, 0.7, 1.2), _u(rng, 0.28, 0.38), _u(rng, 1.4, 2.0), 0.02
    o.box(-w / 2, w / 2, 0.0, 0.01, 0.0, h, color=c * 0.85)  # back
    for sx in (-1, 1):
        o.box(sx * w / 2, sx * (w / 2 - t), 0.01, d, 0.0, h, color=c)  # sides
    o.box(-w / 2 + t, w / 2 - t, 0.01, d, h - t, h, color=c)  # top
    o.box(-w / 2 + t, w / 2 - t, 0.01, d, 0.0, 0.08, color=c)  # plinth
    n = max(2, int(h / 0.36))
    for i in range(1, n):
        z = 0.08 + i * (h - 0.08 - t) / n
        o.box(-w / 2 + t, w / 2 - t, 0.01, d, z - t, z, color=c)
    for i in range(n):  # books on every shelf, left-aligned runs of random widths and colours
        z0, x = 0.08 + i * (h - 0.08 - t) / n, -w / 2 + t + 0.01
        end = x + _u(rng, 0.3, 0.9) * (w - 2 * t - 0.02)
        while True:
            bw = _u(rng, 0.02, 0.05)
            if x + bw > end:
                break
            bh, bd = _u(rng, 0.16, min(0.3, (h - 0.1) / n - 0.04)), _u(rng, 0.15, d - 0.03)
            o.box(x, x + bw, 0.02, 0.02 + bd, z0, z0 + bh, color=rng.uniform(40, 230, 3))
            x += bw + 0.002
    return o


def counter(rng: np.random.Generator) -> Proto:
    """A kitchen counter run: base cabinets, a countertop (counter) and a sink with a tap."""
    o = Proto("counter")
    body, top = _pick(rng, "cabinet"), _pick(rng, "counter")
    w, d, h = _u(rng, 1.6, 2.6), 0.6, _u(rng, 0.86, 0.92)
    o.box(-w / 2, w / 2, 0.0, d - 0.03, 0.0, h - 0.04, "cabinet", body)
    o.box(-w / 2 + 0.02, w / 2 - 0.02, 0.0, d - 0.05, 0.0, 0.1, "cabinet", body * 0.7)  # kick plate
    _panels(o, -w / 2 + 0.02, w / 2 - 0.02, 0.1, h - 0.06, d - 0.03, 1, max(2, int(w / 0.5)), "cabinet", body)
    o.box(-w / 2, w / 2, 0.0, d, h - 0.04, h, "counter", top)
    sx = _u(rng, -w / 2 + 0.45, w / 2 - 0.45)
    sink_c = _pick(rng, "sink")
    o.box(sx - 0.35, sx + 0.35, 0.12, 0.52, h, h + 0.02, "sink", sink_c)  # rim
    o.box(sx - 0.03, sx + 0.03, 0.04, 0.1, h, h + 0.3, "sink", METAL)  # tap column
    o.box(sx - 0.02, sx + 0.02, 0.04, 0.25, h + 0.26, h + 0.3, "sink", METAL)  # spout
    return o


def refrigerator(rng: np.random.Generator) -> Proto:
    o, c = Proto("refrigerator"), _pick(rng, "refrigerator")
    w, d, h = _u(rng, 0.6, 0.8), _u(rng, 0.62, 0.72), _u(rng, 1.7, 1.95)
    o.box(-w / 2, w / 2, 0.0, d, 0.0, h, color=c * 0.95)
    split = h * _u(rng, 0.6, 0.7)
    o.box(-w / 2 + 0.01, w / 2 - 0.01, d, d + 0.04, 0.05, split - 0.01, color=c)
    o.box(-w / 2 + 0.01, w / 2 - 0.01, d, d + 0.04, split + 0.01, h - 0.01, color=c)
    hx = w / 2 - 0.07
    o.box(hx - 0.015, hx + 0.015, d + 0.04, d + 0.07, split - 0.5, split - 0.1, color=METAL)
    o.box(hx - 0.015, hx + 0.015, d + 0.04, d + 0.07, split + 0.1, split + 0.35, color=METAL)
    return o


def toilet(rng: np.random.Generator) -> Proto:
    o, c = Proto("toilet"), _pick(rng, "toilet")
    w = _u(rng, 0.36, 0.42)
    o.box(-0.23, 0.23, 0.0, 0.2, 0.38, _u(rng, 0.75, 0.85), color=c)  # tank
    o.box(-0.12, 0.12, 0.15, 0.5, 0.0, 0.34, color=c)  # pedestal
    o.box(-w / 2, w / 2, 0.14, 0.7, 0.34, 0.41, color=c)  # bowl
    o.box(-w / 2 + 0.01, w / 2 - 0.01, 0.2, 0.69, 0.41, 0.43, color=c * 0.97)  # seat
    return o


def vanity(rng: np.random.Generator) -> Proto:
    """A bathroom vanity: a cabinet with a sink basin and tap on top."""
    o = Proto("sink")
    c = _pick(rng, "cabinet")
    w, d, h = _u(rng, 0.6, 0.9), _u(rng, 0.45, 0.52), _u(rng, 0.78, 0.84)
    o.box(-w / 2, w / 2, 0.0, d, 0.0, h, "cabinet", c)
    _panels(o, -w / 2 + 0.02, w / 2 - 0.02, 0.08, h - 0.03, d, 1, 2, "cabinet", c)
    o.box(-w / 2 + 0.04, w / 2 - 0.04, 0.08, d - 0.02, h, h + 0.14, "sink", _pick(rng, "sink"))
    o.box(-0.02, 0.02, 0.02, 0.14, h + 0.14, h + 0.3, "sink", METAL)
    return o


def bathtub(rng: np.random.Generator) -> Proto:
    """A bathtub (hollow: four rims and a floor) with a half-drawn shower curtain along its front."""
    o, c = Proto("bathtub"), _pick(rng, "bathtub")
    w, d, h, t = _u(rng, 1.5, 1.75), _u(rng, 0.7, 0.8), _u(rng, 0.5, 0.58), 0.07
    o.box(-w / 2, w / 2, 0.0, t, 0.0, h, color=c)  # back rim
    o.box(-w / 2, w / 2, d - t, d, 0.0, h, color=c)  # front rim
    for sx in (-1, 1):
        o.box(sx * w / 2, sx * (w / 2 - t), t, d - t, 0.0, h, color=c)
    o.box(-w / 2 + t, w / 2 - t, t, d - t, 0.0, 0.12, color=c * 0.97)  # floor
    sc = _pick(rng, "shower curtain")
    x, end = -w / 2 + 0.02, -w / 2 + _u(rng, 0.35, 0.75) * w
    top, k = 1.95, 0
    while x < end:  # folds: slats alternating 4 cm in and out, joined by thin webs (a square wave)
        y0 = d - 0.05 + (0.04 if k % 2 else 0.0)
        o.box(x, x + 0.08, y0, y0 + 0.015, h + 0.05, top, "shower curtain", sc * (0.96 if k % 2 else 1.0))
        if x + 0.08 < end:
            o.box(x + 0.075, x + 0.085, d - 0.05, d + 0.005, h + 0.05, top, "shower curtain", sc * 0.93)
        x, k = x + 0.08, k + 1
    o.box(-w / 2, w / 2, d - 0.04, d - 0.02, top, top + 0.02, "shower curtain", METAL)  # rail
    return o


def other(rng: np.random.Generator) -> Proto:
    """Other furniture: an ottoman, a bin, a side stand or a laundry basket."""
    o, c = Proto("otherfurniture"), _pick(rng, "otherfurniture")
    w, d, h = _u(rng, 0.3, 0.6), _u(rng, 0.3, 0.6), _u(rng, 0.35, 0.7)
    o.box(-w / 2, w / 2, -d / 2, d / 2, 0.0, h - 0.03, color=c)
    o.box(-w / 2 - 0.01, w / 2 + 0.01, -d / 2 - 0.01, d / 2 + 0.01, h - 0.03, h, color=c * 0.85)  # lid
    return o


# ------------------------------------------------------------------------------------------------
# wall-mounted objects (their back at y = 0 is the wall plane)


def door(rng: np.random.Generator) -> Proto:
    o, c = Proto("door", front_clearance=0.9), _pick(rng, "door")
    w, h, jamb = _u(rng, 0.8, 0.95), _u(rng, 2.0, 2.1), 0.06
    o.box(-w / 2, w / 2, 0.0, 0.035, 0.0, h, color=c)  # leaf
    for sx in (-1, 1):
        o.box(sx * w / 2, sx * (w / 2 + jamb), 0.0, 0.05, 0.0, h + jamb, color=c * 0.92)  # jambs
    o.box(-w / 2, w / 2, 0.0, 0.05, h, h + jamb, color=c * 0.92)  # head
    hx = w / 2 - 0.08
    o.box(hx - 0.07, hx + 0.03, 0.035, 0.09, 1.0, 1.03, color=METAL)  # handle
    return o


def window(rng: np.random.Generator, curtains: bool) -> Proto:
    o, frame = Proto("window"), _pick(rng, "window")
    w, h, sill = _u(rng, 0.8, 1.6), _u(rng, 1.0, 1.4), _u(rng, 0.8, 1.0)
    f = 0.05
    o.box(-w / 2, w / 2, 0.0, 0.01, sill, sill + h, color=GLASS)  # pane
    o.box(-w / 2 - 0.02, w / 2 + 0.02, 0.0, 0.14, sill - 0.03, sill, color=frame)  # sill board
    o.box(-w / 2, w / 2, 0.0, 0.06, sill + h - f, sill + h, color=frame)
    o.box(-w / 2, w / 2, 0.0, 0.06, sill, sill + f, color=frame)
    for sx in (-1, 1):
        o.box(sx * w / 2, sx * (w / 2 - f), 0.0, 0.06, sill + f, sill + h - f, color=frame)
    if w > 1.1:  # mullion
        o.box(-f / 2, f / 2, 0.0, 0.05, sill + f, sill + h - f, color=frame)
    if curtains:
        c, top = _pick(rng, "curtain"), sill + h + 0.15
        bottom = 0.03 if rng.random() < 0.5 else sill - 0.15
        pw = _u(rng, 0.25, 0.45)
        for sx in (-1, 1):  # one folded panel each side, 10 cm off the wall
            x0, k = sx * (w / 2 + 0.06), 0
            while k * 0.07 < pw:  # slats alternating 3.5 cm in and out, joined by thin webs
                a = x0 + sx * k * 0.07
                y0 = 0.1 + (0.035 if k % 2 else 0.0)
                o.box(a, a + sx * 0.07, y0, y0 + 0.015, bottom, top, "curtain", c * (0.95 if k % 2 else 1.0))
                if (k + 1) * 0.07 < pw:
                    e = a + sx * 0.07
                    o.box(e - 0.005, e + 0.005, 0.1, 0.15, bottom, top, "curtain", c * 0.9)
                k += 1
        o.box(-w / 2 - pw - 0.1, w / 2 + pw + 0.1, 0.06, 0.18, top, top + 0.03, "curtain", METAL)  # rod
    return o


def picture(rng: np.random.Generator) -> Proto:
    o, frame = Proto("picture"), _pick(rng, "picture")
    w, h, zc, t = _u(rng, 0.35, 1.0), _u(rng, 0.3, 0.8), _u(rng, 1.35, 1.7), _u(rng, 0.02, 0.035)
    f = 0.03
    z0, z1 = zc - h / 2, zc + h / 2
    o.box(-w / 2, w / 2, 0.0, t, z1 - f, z1, color=frame)
    o.box(-w / 2, w / 2, 0.0, t, z0, z0 + f, color=frame)
    for sx in (-1, 1):
        o.box(sx * w / 2, sx * (w / 2 - f), 0.0, t, z0 + f, z1 - f, color=frame)
    n = int(rng.integers(1, 4))  # canvas: a few colour blocks
    for i in range(n):
        a = -w / 2 + f + i * (w - 2 * f) / n
        o.box(a, a + (w - 2 * f) / n, 0.0, t - 0.008, z0 + f, z1 - f, color=rng.uniform(30, 240, 3))
    return o


Builder = Callable[[np.random.Generator], Proto]
