"""PNG renders of labelled scenes: an oblique orthographic point splat with a z-buffer, and a legend.

No GPU and no open3d renderer (its OffscreenRenderer does not work headless here): points are
projected with a fixed orthographic camera looking down at 75° from the south-west, each point is a
small square splat, and per pixel the splat nearest to the camera wins.
"""

from __future__ import annotations

import colorsys
import math
from pathlib import Path

import numpy as np

# 20 well-separated colours (ScanNet-20 benchmark palette, in class order), then generated hues.
_BASE = np.array([
    (174, 199, 232), (152, 223, 138), (31, 119, 180), (255, 187, 120), (188, 189, 34), (140, 86, 75),
    (255, 152, 150), (214, 39, 40), (197, 176, 213), (148, 103, 189), (196, 156, 148), (23, 190, 207),
    (247, 182, 210), (219, 219, 141), (255, 127, 14), (158, 218, 229), (44, 160, 44), (112, 128, 144),
    (227, 119, 194), (82, 84, 163)], dtype=np.uint8)


def palette(n: int) -> np.ndarray:
    """(n, 3) uint8 class colours: the ScanNet-20 palette, then evenly spaced golden-ratio hues."""
    if n <= len(_BASE):
        return _BASE[:n].copy()
    extra = [tuple(int(255 * c) for c in colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.65, 0.9)) for i in range(n - len(_BASE))]
    return np.concatenate([_BASE, np.array(extra, dtype=np.uint8)])


def project(coord: np.ndarray, azimuth: float = -45.0, elevation: float = 75.0) -> tuple[np.ndarray, np.ndarray]:
    """Orthographic view: (N, 3) metres → image-plane (N, 2) metres (u right, v down) and depth (N,)
    (larger = farther from the camera). The camera looks down at ``elevation`` degrees."""
    a, e = math.radians(azimuth), math.radians(elevation)
    fwd = np.array([math.cos(e) * math.sin(a), math.cos(e) * math.cos(a), -math.sin(e)])  # viewing direction
    right = np.array([math.cos(a), -math.sin(a), 0.0])
    up = np.cross(right, fwd)
    c = coord.astype(np.float64) - coord.mean(0)
    return np.stack([c @ right, -(c @ up)], axis=1), c @ fwd


def splat(coord: np.ndarray, colors: np.ndarray, size: int = 800, radius: int | None = None,
          background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """(size, size, 3) uint8 image of the points, nearest splat per pixel; the scene fills the frame.

    ``radius`` (pixels) defaults to one that closes the gaps between neighbouring points: 0.5 × the
    median nearest-neighbour distance (from up to 2000 sampled points) in pixels, between 1 and 4."""
    img = np.empty((size, size, 3), np.uint8)
    img[:] = background
    if len(coord) == 0:
        return img
    uv, depth = project(coord)
    lo, hi = uv.min(0), uv.max(0)
    if radius is None:
        radius = _auto_radius(coord, size / max(float((hi - lo).max()), 1e-9))
    scale = (size - 2 * radius - 9) / max(float((hi - lo).max()), 1e-9)
    px = ((uv - lo) * scale + radius + 4 + (size - 2 * radius - 9 - (hi - lo) * scale) / 2).round().astype(np.int64)
    offs = [(dx, dy) for dx in range(-radius, radius + 1) for dy in range(-radius, radius + 1)]
    pix = np.concatenate([(px[:, 1] + dy) * size + (px[:, 0] + dx) for dx, dy in offs])
    dep = np.tile(depth, len(offs))
    idx = np.tile(np.arange(len(coord)), len(offs))
    order = np.lexsort((dep, pix))  # by pixel, then nearest first
    first = order[np.unique(pix[order], return_index=True)[1]]
    # slight depth cue: nearer points brighter
    d = (depth - depth.min()) / max(float(np.ptp(depth)), 1e-9)
    shade = (1.0 - 0.35 * d)[idx[first], None]
    img.reshape(-1, 3)[pix[first]] = (colors[idx[first]].astype(np.float64) * shade).round().clip(0, 255).astype(np.uint8)
    return img


def _auto_radius(coord: np.ndarray, px_per_metre: float) -> int:
    if len(coord) < 2:
        return 1
    from scipy.spatial import cKDTree

    probe = coord[np.random.default_rng(0).choice(len(coord), size=min(2000, len(coord)), replace=False)]
    dist, _ = cKDTree(coord).query(probe, k=2)
    spacing = float(np.median(dist[:, 1])) * px_per_metre
    return int(np.clip(math.ceil(0.5 * spacing), 1, 4))


def render_labels(coord: np.ndarray, labels: np.ndarray, classes: list[str], path: Path | str, size: int = 800) -> Path:
    """Write a PNG: the splat of the points in class colours (-1 grey) with a legend of present classes."""
    from PIL import Image, ImageDraw

    from hiclr.store import atomic_write_bytes

    pal = np.concatenate([palette(len(classes)), np.array([[128, 128, 128]], np.uint8)])
    lab = np.where((labels >= 0) & (labels < len(classes)), labels, len(classes))
    scene = Image.fromarray(splat(coord, pal[lab], size))
    present = [i for i in range(len(classes)) if (lab == i).any()]
    width = 20 + 9 * max([len(classes[i]) for i in present] + [4]) + 30
    canvas = Image.new("RGB", (size + width, size), (255, 255, 255))
    canvas.paste(scene, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for row, i in enumerate(present):
        y = 10 + 18 * row
        draw.rectangle([size + 8, y, size + 22, y + 12], fill=tuple(int(v) for v in pal[i]), outline=(0, 0, 0))
        draw.text((size + 28, y), classes[i], fill=(0, 0, 0))
    import io

    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)
