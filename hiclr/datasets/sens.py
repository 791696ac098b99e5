"""Reader (and, for tests, writer) of ScanNet's SensorData ``.sens`` files, format version 4.

Byte layout, as ScanNet's ``SensReader/python/SensorData.py`` reads it (little-endian)::

    uint32   version (= 4)
    uint64   strlen, then strlen bytes: sensor name
    float32  intrinsic_color[4,4], extrinsic_color[4,4], intrinsic_depth[4,4], extrinsic_depth[4,4]
    int32    color_compression_type   (-1 unknown, 0 raw, 1 png, 2 jpeg)
    int32    depth_compression_type   (-1 unknown, 0 raw_ushort, 1 zlib_ushort, 2 occi_ushort)
    uint32   color_width, color_height, depth_width, depth_height
    float32  depth_shift              (raw depth value per metre, typically 1000)
    uint64   num_frames
    per frame:
      float32 camera_to_world[4,4]
      uint64  timestamp_color, timestamp_depth, color_size_bytes, depth_size_bytes
      bytes   colour (color_size_bytes), depth (depth_size_bytes)

Matrices are row-major. Invalid poses are stored as ``-inf`` (or NaN) entries. Frames are read
lazily: :func:`read_sens_header` scans the file once and records where each frame's bytes are,
and :meth:`SensFile.color` / :meth:`SensFile.depth` decode one frame on demand, so a 1.5 GB
``.sens`` file never sits in memory.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hiclr.errors import HiclrError

SENS_VERSION = 4
COLOR_COMPRESSION = {-1: "unknown", 0: "raw", 1: "png", 2: "jpeg"}
DEPTH_COMPRESSION = {-1: "unknown", 0: "raw_ushort", 1: "zlib_ushort", 2: "occi_ushort"}
_FRAME_HEAD = struct.Struct("<16f4Q")  # pose, timestamp_color, timestamp_depth, color bytes, depth bytes


@dataclass
class SensFrame:
    """Where one frame lives in the file, and its pose."""

    camera_to_world: np.ndarray  # (4, 4) float32
    timestamp_color: int
    timestamp_depth: int
    color_offset: int
    color_size: int
    depth_offset: int
    depth_size: int


@dataclass
class SensFile:
    """Header of a ``.sens`` file plus the frame index; decode frames with :meth:`color` / :meth:`depth`."""

    path: Path
    sensor_name: str
    intrinsic_color: np.ndarray  # (4, 4) float32, pixels of the colour image
    extrinsic_color: np.ndarray  # (4, 4) float32
    intrinsic_depth: np.ndarray  # (4, 4) float32, pixels of the depth image
    extrinsic_depth: np.ndarray  # (4, 4) float32
    color_compression: str
    depth_compression: str
    color_width: int
    color_height: int
    depth_width: int
    depth_height: int
    depth_shift: float  # raw depth units per metre
    frames: list[SensFrame] = field(default_factory=list)

    def _bytes(self, offset: int, size: int) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(offset)
            data = f.read(size)
        if len(data) != size:
            raise HiclrError(f"{self.path}: truncated frame data", "re-download the .sens file")
        return data

    def color(self, i: int) -> np.ndarray:
        """Colour frame ``i`` as uint8 (color_height, color_width, 3) RGB."""
        fr = self.frames[i]
        data = self._bytes(fr.color_offset, fr.color_size)
        shape = (self.color_height, self.color_width, 3)
        if self.color_compression == "raw":
            return np.frombuffer(data, dtype=np.uint8).reshape(shape).copy()
        if self.color_compression not in ("jpeg", "png"):
            raise HiclrError(f"{self.path}: colour compression {self.color_compression!r} is not supported",
                             "ScanNet .sens files use jpeg; convert the file with ScanNet's SensReader")
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            rgb = np.asarray(im.convert("RGB"))
        if rgb.shape != shape:
            raise HiclrError(f"{self.path}: frame {i} colour is {rgb.shape[1]}x{rgb.shape[0]}, header says "
                             f"{self.color_width}x{self.color_height}", "the file is corrupt: re-download it")
        return rgb

    def depth(self, i: int) -> np.ndarray:
        """Depth frame ``i`` as raw uint16 (depth_height, depth_width); metres = raw / depth_shift."""
        fr = self.frames[i]
        data = self._bytes(fr.depth_offset, fr.depth_size)
        if self.depth_compression == "zlib_ushort":
            try:
                data = zlib.decompress(data)
            except zlib.error as exc:
                raise HiclrError(f"{self.path}: frame {i} depth does not decompress ({exc})",
                                 "the file is corrupt: re-download it") from exc
        elif self.depth_compression != "raw_ushort":
            raise HiclrError(f"{self.path}: depth compression {self.depth_compression!r} is not supported",
                             "ScanNet .sens files use zlib_ushort")
        n = self.depth_width * self.depth_height
        if len(data) != 2 * n:
            raise HiclrError(f"{self.path}: frame {i} depth has {len(data)} bytes, expected {2 * n}",
                             "the file is corrupt: re-download it")
        return np.frombuffer(data, dtype="<u2").reshape(self.depth_height, self.depth_width).astype(np.uint16)


def _read(f, fmt: str, path: Path) -> tuple:
    s = struct.Struct("<" + fmt)
    data = f.read(s.size)
    if len(data) != s.size:
        raise HiclrError(f"{path}: truncated .sens header", "re-download the file")
    return s.unpack(data)


def read_sens_header(path: Path | str) -> SensFile:
    """Parse the header and index every frame (poses read, image bytes skipped)."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        (version,) = _read(f, "I", path)
        if version != SENS_VERSION:
            raise HiclrError(f"{path}: .sens version {version}, expected {SENS_VERSION}",
                             "only ScanNet v2 .sens files (version 4) are supported")
        (strlen,) = _read(f, "Q", path)
        if strlen > 4096:
            raise HiclrError(f"{path}: implausible sensor-name length {strlen}", "the file is corrupt")
        name = f.read(strlen).decode("utf-8", errors="replace")
        mats = [np.array(_read(f, "16f", path), dtype=np.float32).reshape(4, 4) for _ in range(4)]
        ctype, dtype_ = _read(f, "ii", path)
        cw, ch, dw, dh = _read(f, "4I", path)
        (shift,) = _read(f, "f", path)
        (n,) = _read(f, "Q", path)
        if ctype not in COLOR_COMPRESSION or dtype_ not in DEPTH_COMPRESSION:
            raise HiclrError(f"{path}: unknown compression types ({ctype}, {dtype_})", "the file is corrupt")
        sens = SensFile(path, name, *mats, COLOR_COMPRESSION[ctype], DEPTH_COMPRESSION[dtype_],
                        cw, ch, dw, dh, float(shift))
        pos = f.tell()
        for i in range(n):
            head = f.read(_FRAME_HEAD.size)
            if len(head) != _FRAME_HEAD.size:
                raise HiclrError(f"{path}: truncated at frame {i} of {n}", "re-download the .sens file")
            vals = _FRAME_HEAD.unpack(head)
            pose = np.array(vals[:16], dtype=np.float32).reshape(4, 4)
            ts_c, ts_d, csize, dsize = vals[16:]
            pos += _FRAME_HEAD.size
            if pos + csize + dsize > size:
                raise HiclrError(f"{path}: truncated at frame {i} of {n}", "re-download the .sens file")
            sens.frames.append(SensFrame(pose, ts_c, ts_d, pos, csize, pos + csize, dsize))
            pos += csize + dsize
            f.seek(pos)
    return sens


def write_sens(path: Path | str, intrinsic_color: np.ndarray, intrinsic_depth: np.ndarray,
               colors: list[np.ndarray], depths: list[np.ndarray], poses: list[np.ndarray],
               depth_shift: float = 1000.0, sensor_name: str = "StructureSensor",
               extrinsic_color: np.ndarray | None = None, extrinsic_depth: np.ndarray | None = None,
               jpeg_quality: int = 95) -> None:
    """Write a version-4 ``.sens`` file (JPEG colour, zlib uint16 depth), the layout ScanNet ships.

    Used by the tests to make real-format inputs; ``colors`` are uint8 (Hc, Wc, 3), ``depths``
    raw uint16 (Hd, Wd), ``poses`` camera-to-world (4, 4)."""
    from PIL import Image

    eye = np.eye(4, dtype=np.float32)
    ch, cw = colors[0].shape[:2]
    dh, dw = depths[0].shape
    name = sensor_name.encode()
    out = io.BytesIO()
    out.write(struct.pack("<IQ", SENS_VERSION, len(name)) + name)
    for m in (intrinsic_color, extrinsic_color if extrinsic_color is not None else eye,
              intrinsic_depth, extrinsic_depth if extrinsic_depth is not None else eye):
        out.write(np.asarray(m, dtype="<f4").reshape(16).tobytes())
    out.write(struct.pack("<ii4IfQ", 2, 1, cw, ch, dw, dh, depth_shift, len(colors)))
    for k, (rgb, d, pose) in enumerate(zip(colors, depths, poses)):
        buf = io.BytesIO()
        Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(buf, format="JPEG", quality=jpeg_quality)
        cbytes = buf.getvalue()
        dbytes = zlib.compress(np.asarray(d, dtype="<u2").tobytes())
        out.write(np.asarray(pose, dtype="<f4").reshape(16).tobytes())
        out.write(struct.pack("<4Q", 1000 * k, 1000 * k, len(cbytes), len(dbytes)))
        out.write(cbytes + dbytes)
    from hiclr.store import atomic_write_bytes

    atomic_write_bytes(Path(path), out.getvalue())
