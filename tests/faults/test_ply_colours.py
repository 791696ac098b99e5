"""Issue 22, item 1: PLY colours are read by their declared type (uchar 0–255, ushort 0–65535,
float 0–1 or 0–255), the assumption is said in the summary, and ambiguous colours are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from faultkit import cli, prepare_args, refused, scan, write_ply

RNG = np.random.default_rng(3)
XYZ = RNG.uniform(0, 2, (60, 3))
RGB8 = RNG.integers(0, 256, (60, 3)).astype(np.uint8)


def coloured_ply(path: Path, rgb: np.ndarray, kind: str, xyz: np.ndarray = XYZ, faces: np.ndarray | None = None) -> Path:
    """A binary PLY whose red/green/blue are PLY type ``kind`` (uchar, ushort, float, double, short)."""
    write_ply(path, xyz, faces, double=True, rgb=rgb, colour_type=kind)
    return path


def labels_of(res, out: Path) -> np.ndarray:
    assert res.exit_code == 0, (res.output, res.stderr)
    return np.load(out / "labels.npy")


@pytest.mark.parametrize("kind, scale, says", [("float", 1.0, "read as 0–255"), ("float", 1 / 255, "read as 0–1"),
                                               ("double", 1 / 255, "read as 0–1"), ("ushort", 257, "0–65535")])
def test_predict_reads_colours_by_their_type(tmp_path: Path, model_file: Path, kind: str, scale: float, says: str) -> None:
    want = labels_of(cli("predict", coloured_ply(tmp_path / "u8.ply", RGB8, "uchar"), "--model", model_file,
                         "--out", tmp_path / "a"), tmp_path / "a")
    ply = coloured_ply(tmp_path / "other.ply", RGB8.astype(np.float64) * scale, kind)
    res = cli("predict", ply, "--model", model_file, "--out", tmp_path / "b")
    np.testing.assert_array_equal(labels_of(res, tmp_path / "b"), want)  # the same input colours
    notes = [ln for ln in res.stderr.splitlines() if ln.startswith("warning:") and str(ply) in ln]
    assert len(notes) == 1 and says in notes[0], res.stderr


def test_plain_8bit_colours_need_no_note(tmp_path: Path, model_file: Path) -> None:
    res = cli("predict", coloured_ply(tmp_path / "u8.ply", RGB8, "uchar"), "--model", model_file, "--out", tmp_path / "a")
    assert res.exit_code == 0 and "warning" not in res.stderr


@pytest.mark.parametrize("rgb, kind, says", [
    (RNG.integers(0, 2, (60, 3)).astype(np.float64), "float", "fits both 0–1 and 0–255"),
    (RGB8.astype(np.float64) * 2.0, "float", "outside 0–255"),
    (-RGB8.astype(np.float64) / 255, "double", "outside 0–255"),
    (np.full((60, 3), np.nan), "float", "non-finite"),
    (RGB8.astype(np.int64) * 4, "short", "outside 0–255"),
])
def test_predict_refuses_ambiguous_or_impossible_colours(tmp_path: Path, model_file: Path, rgb, kind: str, says: str) -> None:
    ply = coloured_ply(tmp_path / "bad.ply", rgb, kind)
    refused(cli("predict", ply, "--model", model_file, "--out", tmp_path / "out"), str(ply), says, "uchar 0–255")
    assert not (tmp_path / "out").exists()


def test_prepare_scannet_reads_float_colours_and_says_so(tmp_path: Path) -> None:
    from hiclr.store import Store

    listing = scan(tmp_path / "raw")
    mesh = tmp_path / "raw/scene0999_00/scene0999_00_vh_clean_2.ply"
    from hiclr.datasets.plyio import read_ply

    ply = read_ply(mesh)
    xyz = np.stack([ply["vertex"][c] for c in "xyz"], 1)
    rgb = RNG.integers(0, 256, (len(xyz), 3)).astype(np.uint8)
    coloured_ply(mesh, rgb.astype(np.float64), "float", xyz, ply["face"])
    res = cli(*prepare_args(tmp_path / "raw", tmp_path / "out", listing))
    assert res.exit_code == 0, (res.output, res.stderr)
    np.testing.assert_array_equal(Store.open(tmp_path / "out").scene("scene0999_00").read("color"), rgb)
    assert any("note:" in ln and "read as 0–255" in ln for ln in res.stderr.splitlines()), res.stderr
