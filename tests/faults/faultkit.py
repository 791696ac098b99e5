"""Helpers of the fault suite (tests/faults): every bad input a user can give, each refused in one line that names the file
and the fix, with no traceback and no existing data changed (issue 11).

Helpers: ``cli`` runs ``hiclr`` in-process (click's CliRunner, stderr apart); ``refused`` asserts
the one-line error; ``snapshot`` hashes every file under a folder, so a test can assert that a
refused command changed nothing; ``scan`` writes a tiny ScanNet-layout scan (double-precision mesh,
exported frames) at any offset; ``model_file`` is a random MinkUNet14A model file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from click.testing import CliRunner, Result
from PIL import Image

from hiclr_cli.main import cli as hiclr_cli

CLASSES = ["floor", "wall", "chair"]


def cli(*args: str | Path) -> Result:
    return CliRunner().invoke(hiclr_cli, [str(a) for a in args], catch_exceptions=True)


def refused(res: Result, *needles: str) -> str:
    """The command failed with exit 1 and exactly one red ``error:`` line that contains every
    needle (a file name, a fix) and a hint; no traceback. Returns that line."""
    assert res.exit_code == 1, (res.exit_code, res.output, res.stderr)
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.output + res.stderr
    line = lines[0]
    assert "— hint:" in line, line
    for needle in needles:
        assert needle in line, (needle, line)
    return line


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (lock files left out: they hold nothing)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(root).rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


# ------------------------------------------------------------------------------------------------
# a ScanNet-layout scan: a wall 2 m in front of the camera, three frames 0.1 m apart

K_D = np.array([[144.4, 0, 79.7], [0, 144.4, 59.6], [0, 0, 1]])
W, H = 160, 120
R = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # looks along world +y, image-down = world -z
T0 = np.array([1.0, -0.5, 1.4])


def scan_pose(k: int, offset: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, T0 + 0.1 * k * R[:, 2] + offset
    return T


def scan_mesh(offset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = np.arange(-1.5, 1.51, 0.05), np.arange(-1.0, 1.01, 0.05)
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    cam = np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, 2.0)], 1)
    idx = np.arange(gx.size).reshape(gx.shape)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel()
    faces = np.concatenate([np.stack([a, c, b], 1), np.stack([b, c, d], 1)]).astype(np.int32)
    return cam @ R.T + T0 + offset, faces


def write_ply(path: Path, xyz: np.ndarray, faces: np.ndarray | None = None, colour: bool = True,
              double: bool = False, count: str | None = None, rgb: np.ndarray | None = None,
              colour_type: str = "uchar") -> None:
    """A binary PLY as ScanNet (or a georeferenced tool, ``double``) writes it. Colours: ``rgb`` (N, 3)
    as PLY type ``colour_type`` (uchar, ushort, float, double, short), else a uchar pattern."""
    f = "<f8" if double else "<f4"
    code = {"uchar": "u1", "ushort": "<u2", "float": "<f4", "double": "<f8", "short": "<i2"}[colour_type]
    dt = [("x", f), ("y", f), ("z", f)] + ([("red", code), ("green", code), ("blue", code)] if colour else [])
    v = np.zeros(len(xyz), dt)
    v["x"], v["y"], v["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    if colour and rgb is not None:
        v["red"], v["green"], v["blue"] = rgb.T
    elif colour:
        v["red"], v["green"], v["blue"] = np.arange(len(xyz)) % 256, 120, 60
    t = "double" if double else "float"
    head = (f"ply\nformat binary_little_endian 1.0\nelement vertex {count or len(xyz)}\n"
            f"property {t} x\nproperty {t} y\nproperty {t} z\n"
            + (f"property {colour_type} red\nproperty {colour_type} green\nproperty {colour_type} blue\n" if colour else ""))
    body = v.tobytes()
    if faces is not None:
        head += f"element face {len(faces)}\nproperty list uchar int vertex_indices\n"
        fr = np.zeros(len(faces), [("n", "u1"), ("i", "<i4", (3,))])
        fr["n"], fr["i"] = 3, faces
        body += fr.tobytes()
    path.write_bytes((head + "end_header\n").encode() + body)


def scan(raw: Path, sid: str = "scene0999_00", offset: tuple[float, float, float] = (0.0, 0.0, 0.0),
         views: int = 3) -> Path:
    """Write scan ``sid`` under ``raw`` (mesh and poses shifted by ``offset``, in float64) and a
    split list naming it; returns the list file."""
    off = np.asarray(offset, np.float64)
    d = raw / sid
    for sub in ("color", "depth", "pose", "intrinsic"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    xyz, faces = scan_mesh(off)
    write_ply(d / f"{sid}_vh_clean_2.ply", xyz, faces, double=True)
    for k in range(views):
        Image.fromarray(np.full((H, W, 3), 128, np.uint8)).save(d / "color" / f"{k}.jpg")
        Image.fromarray(np.full((H, W), round(1000 * (2.0 - 0.1 * k)), np.uint16)).save(d / "depth" / f"{k}.png")
        np.savetxt(d / "pose" / f"{k}.txt", scan_pose(k, off))  # %.18e: float64 survives
    M = np.eye(4)
    M[:3, :3] = K_D
    for name in ("intrinsic_color.txt", "intrinsic_depth.txt"):
        np.savetxt(d / "intrinsic" / name, M)
    listing = raw / "train.txt"
    listing.write_text(sid + "\n")
    return listing


def prepare_args(raw: Path, out: Path, listing: Path) -> list[str | Path]:
    return ["prepare", "scannet", "--raw", raw, "--out", out, "--splits", "train", "--split-file",
            f"train={listing}", "--frame-stride", "1", "--set", f"scannet.image_width={W}",
            "--set", f"scannet.image_height={H}"]


# ------------------------------------------------------------------------------------------------
# a model file and a synthetic store


def make_model(path: Path, input: str = "color") -> Path:
    from hiclr.model_file import ModelFile, save_model
    from hiclr.nn import PointNetwork

    torch.manual_seed(0)
    in_ch = 3 if input == "color" else 6
    net = PointNetwork("MinkUNet14A", in_channels=in_ch, out_channels=8, voxel_size=0.2, backend="torch")
    text = torch.nn.functional.normalize(torch.randn(len(CLASSES), 8), dim=1)
    return save_model(path, ModelFile(net.state_dict(), net.arch_config() | {"backend": "auto"}, CLASSES, text,
                                      input=input, anchors="random"))
