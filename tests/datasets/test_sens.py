"""ScanNet .sens reader: a file packed here field by field as ScanNet's SensorData.py reads it."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from hiclr.datasets.sens import read_sens_header, write_sens
from hiclr.errors import HiclrError


def _pack_sens(colors, depths, poses, K_c, K_d, shift=1000.0, name=b"StructureSensor"):
    """Independent packer: version, strlen+name, 4 matrices, compression, sizes, shift, frames."""
    b = struct.pack("I", 4) + struct.pack("Q", len(name)) + name
    for m in (K_c, np.eye(4), K_d, np.eye(4)):
        b += struct.pack("f" * 16, *np.asarray(m, np.float32).ravel())
    ch, cw = colors[0].shape[:2]
    dh, dw = depths[0].shape
    b += struct.pack("i", 2) + struct.pack("i", 1)  # jpeg, zlib_ushort
    b += struct.pack("IIII", cw, ch, dw, dh) + struct.pack("f", shift) + struct.pack("Q", len(colors))
    for k, (c, d, T) in enumerate(zip(colors, depths, poses)):
        buf = io.BytesIO()
        Image.fromarray(c).save(buf, format="JPEG", quality=100)
        cb, db = buf.getvalue(), zlib.compress(d.astype("<u2").tobytes())
        b += struct.pack("f" * 16, *np.asarray(T, np.float32).ravel())
        b += struct.pack("QQQQ", 100 + k, 200 + k, len(cb), len(db)) + cb + db
    return b


def _frames(n=3):
    colors = [np.full((24, 32, 3), 40 * k + 20, np.uint8) for k in range(n)]
    depths = [np.arange(12 * 16, dtype=np.uint16).reshape(12, 16) * (k + 1) for k in range(n)]
    poses = [np.eye(4) for _ in range(n)]
    for k, T in enumerate(poses):
        T[:3, 3] = (k, 2 * k, -k)
    poses[1][0, 0] = -np.inf  # ScanNet's invalid-pose marker
    return colors, depths, poses


K_C = np.array([[30.0, 0, 15.5, 0], [0, 31.0, 11.5, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
K_D = np.array([[15.0, 0, 7.25, 0], [0, 15.5, 5.75, 0], [0, 0, 1, 0], [0, 0, 0, 1]])


def test_header_poses_and_frames(tmp_path):
    colors, depths, poses = _frames()
    p = tmp_path / "scene0000_00.sens"
    p.write_bytes(_pack_sens(colors, depths, poses, K_C, K_D, shift=1000.0))
    s = read_sens_header(p)
    assert s.sensor_name == "StructureSensor"
    assert (s.color_width, s.color_height, s.depth_width, s.depth_height) == (32, 24, 16, 12)
    assert s.color_compression == "jpeg" and s.depth_compression == "zlib_ushort" and s.depth_shift == 1000.0
    np.testing.assert_array_equal(s.intrinsic_color, K_C.astype(np.float32))
    np.testing.assert_array_equal(s.intrinsic_depth, K_D.astype(np.float32))
    assert len(s.frames) == 3
    assert [f.timestamp_color for f in s.frames] == [100, 101, 102]
    assert [f.timestamp_depth for f in s.frames] == [200, 201, 202]
    np.testing.assert_array_equal(s.frames[2].camera_to_world[:3, 3], [2, 4, -2])
    assert np.isneginf(s.frames[1].camera_to_world[0, 0])
    for k in range(3):
        np.testing.assert_array_equal(s.depth(k), depths[k])  # lossless
        assert np.abs(s.color(k).astype(int) - colors[k]).max() <= 2  # JPEG of a flat colour


def test_writer_matches_reader(tmp_path):
    colors, depths, poses = _frames(2)
    p = tmp_path / "w.sens"
    write_sens(p, K_C, K_D, colors, depths, poses, depth_shift=500.0)
    s = read_sens_header(p)
    assert s.depth_shift == 500.0 and len(s.frames) == 2
    np.testing.assert_array_equal(s.depth(1), depths[1])


def test_truncated_and_wrong_version(tmp_path):
    colors, depths, poses = _frames(2)
    data = _pack_sens(colors, depths, poses, K_C, K_D)
    p = tmp_path / "t.sens"
    p.write_bytes(data[:-10])
    with pytest.raises(HiclrError, match="truncated at frame 1"):
        read_sens_header(p)
    p.write_bytes(struct.pack("I", 3) + data[4:])
    with pytest.raises(HiclrError, match="version 3"):
        read_sens_header(p)
