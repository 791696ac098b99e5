"""Issue 11: bad input files (PLY, frames, prompts, model files) are refused in one line that names
the file and the fix; nothing that existed is changed."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from faultkit import CLASSES, cli, prepare_args, refused, scan, snapshot, write_ply

XYZ = np.random.default_rng(1).uniform(0, 2, (50, 3))


# ------------------------------------------------------------------------------------------------
# PLY files given to predict


def _bad_plys(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name → (file, what the error line must say)."""
    out = {}
    p = tmp_path / "header.ply"  # malformed count: was a ValueError traceback
    write_ply(p, XYZ, count="11x")
    out["header"] = (p, "element vertex 11x")
    p = tmp_path / "truncated.ply"
    write_ply(p, XYZ)
    p.write_bytes(p.read_bytes()[:-100])
    out["truncated"] = (p, "truncated")
    p = tmp_path / "nan.ply"
    bad = XYZ.copy()
    bad[3, 1] = np.nan
    write_ply(p, bad)
    out["nan"] = (p, "non-finite")
    p = tmp_path / "empty.ply"
    write_ply(p, XYZ[:0])
    out["empty"] = (p, "no x/y/z vertices")
    p = tmp_path / "garbage.ply"
    p.write_bytes(b"\x00\xff" * 64)
    out["garbage"] = (p, "not a readable PLY")
    return out


@pytest.mark.parametrize("case", ["header", "truncated", "nan", "empty", "garbage"])
def test_predict_refuses_a_bad_ply(tmp_path: Path, model_file: Path, case: str) -> None:
    ply, says = _bad_plys(tmp_path)[case]
    before = snapshot(tmp_path)
    refused(cli("predict", ply, "--model", model_file, "--out", tmp_path / "out"), str(ply), says)
    assert snapshot(tmp_path) == before  # no output folder, no partial file


def test_prepare_names_a_malformed_mesh_header(tmp_path: Path) -> None:
    listing = scan(tmp_path / "raw")
    mesh = tmp_path / "raw/scene0999_00/scene0999_00_vh_clean_2.ply"
    mesh.write_bytes(mesh.read_bytes().replace(b"element vertex 2501", b"element vertex 2501x", 1))
    res = cli(*prepare_args(tmp_path / "raw", tmp_path / "out", listing))
    assert res.exit_code == 1 and "Traceback" not in res.output + res.stderr
    failed = [ln for ln in res.stderr.splitlines() if "failed scene0999_00" in ln]
    assert len(failed) == 1 and str(mesh) in failed[0] and "2501x" in failed[0]


def test_prepare_refuses_a_scan_without_vertices(tmp_path: Path) -> None:
    listing = scan(tmp_path / "raw")
    mesh = tmp_path / "raw/scene0999_00/scene0999_00_vh_clean_2.ply"
    write_ply(mesh, XYZ[:0], np.zeros((0, 3), np.int32))
    res = cli(*prepare_args(tmp_path / "raw", tmp_path / "out", listing))
    assert res.exit_code == 1
    failed = [ln for ln in res.stderr.splitlines() if "failed scene0999_00" in ln]
    assert len(failed) == 1 and str(mesh) in failed[0] and "no vertices" in failed[0]
    assert "1 failed" in res.output and "0 done" in res.output


def test_prepare_names_a_truncated_depth_png(tmp_path: Path) -> None:
    listing = scan(tmp_path / "raw")
    png = tmp_path / "raw/scene0999_00/depth/1.png"
    png.write_bytes(png.read_bytes()[:60])
    res = cli(*prepare_args(tmp_path / "raw", tmp_path / "out", listing))
    assert res.exit_code == 1 and "Traceback" not in res.output + res.stderr
    failed = [ln for ln in res.stderr.splitlines() if "failed scene0999_00" in ln]
    assert len(failed) == 1 and str(png) in failed[0] and "hint:" in failed[0]


def test_prepare_names_scans_in_no_split_list(tmp_path: Path) -> None:
    scan(tmp_path / "raw")  # scene0999_00 is in no official list
    res = cli("prepare", "scannet", "--raw", tmp_path / "raw", "--out", tmp_path / "out")
    refused(res, "scene0999_00", "--split-file")
    assert not (tmp_path / "out").exists()
    # beside listed scans it is a note, not silence
    listing = scan(tmp_path / "raw", sid="scene0998_00")
    res = cli(*prepare_args(tmp_path / "raw", tmp_path / "out", listing))
    assert res.exit_code == 0, res.stderr
    assert "scene0999_00" in res.stderr and "--split-file" in res.stderr


# ------------------------------------------------------------------------------------------------
# prompts files


def test_predict_refuses_duplicate_prompts_with_their_lines(tmp_path: Path, model_file: Path) -> None:
    (tmp_path / "p.txt").write_text("chair\n# furniture\ntable\n  Chair \nsofa\n")
    line = refused(cli("predict", _ply(tmp_path), "--model", model_file, "--prompts", tmp_path / "p.txt",
                       "--out", tmp_path / "out"), "p.txt", "line 4", "line 1")
    assert "once" in line
    assert not (tmp_path / "out").exists()


def test_predict_refuses_a_non_utf8_prompts_file(tmp_path: Path, model_file: Path) -> None:
    (tmp_path / "p.txt").write_bytes("chair\ntable\ncaf\xe9 chair\n".encode("latin-1"))
    refused(cli("predict", _ply(tmp_path), "--model", model_file, "--prompts", tmp_path / "p.txt",
                "--out", tmp_path / "out"), "p.txt", "line 3", "UTF-8")


def _ply(tmp_path: Path) -> Path:
    write_ply(tmp_path / "cloud.ply", XYZ)
    return tmp_path / "cloud.ply"


class _Encoder:
    """A text encoder whose row depends only on its class name (as MaskCLIP's does)."""

    model_name, weights_id, templates = "fake", "fake", ("{}",)

    def __init__(self) -> None:
        self.calls: list[int] = []

    def text_embeddings(self, names):
        self.calls.append(len(names))
        rows = [torch.tensor([len(n), sum(map(ord, n)) % 97, 1.0]) for n in names]
        return torch.nn.functional.normalize(torch.stack(rows), dim=1)


def test_text_embeddings_are_batched_with_a_progress_bar(capsys) -> None:
    from hiclr.vlm.text import embed_class_names

    names = [f"class {i}" for i in range(70)]
    enc = _Encoder()
    out = embed_class_names(enc, names, batch=32, progress=True)
    assert enc.calls == [32, 32, 6]
    torch.testing.assert_close(out, _Encoder().text_embeddings(names))
    err = capsys.readouterr().err
    assert "text embeddings" in err and "/70" in err  # a tqdm bar over the classes, on stderr


# ------------------------------------------------------------------------------------------------
# model files


class _Exec:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def _edit_model(src: Path, dst: Path, change) -> Path:
    blob = torch.load(src, weights_only=True)
    change(blob)
    buf = io.BytesIO()
    torch.save(blob, buf)
    dst.write_bytes(buf.getvalue())
    return dst


def _meta(key, value):
    def change(blob):
        meta = json.loads(blob["meta"])
        meta[key] = value
        blob["meta"] = json.dumps(meta)
    return change


def _nan_weight(blob):
    k = next(k for k, v in blob["weights"].items() if v.is_floating_point() and v.numel() > 1)
    blob["weights"][k][0] = float("nan")


@pytest.mark.parametrize("case, says", [
    ("pickle", "refused to unpickle"),
    ("arch", "weights"),
    ("classes", "4 class names"),
    ("nan", "non-finite"),
    ("dims", "out_channels"),
])
def test_predict_refuses_a_bad_model_file(tmp_path: Path, model_file: Path, case: str, says: str) -> None:
    bad = tmp_path / "bad.pt"
    if case == "pickle":
        torch.save({"format": "hiclr-model-1", "weights": {}, "text": torch.zeros(1), "meta": _Exec()}, bad)
    elif case == "arch":
        _edit_model(model_file, bad, _meta("arch", {"arch": "MinkUNet18A", "in_channels": 3, "out_channels": 8,
                                                     "voxel_size": 0.2, "backend": "auto"}))
    elif case == "classes":
        _edit_model(model_file, bad, _meta("classes", [*CLASSES, "sofa"]))
    elif case == "nan":
        _edit_model(model_file, bad, _nan_weight)
    else:
        _edit_model(model_file, bad, _meta("arch", {"arch": "MinkUNet14A", "in_channels": 3, "out_channels": 16,
                                                     "voxel_size": 0.2, "backend": "auto"}))
    line = refused(cli("predict", _ply(tmp_path), "--model", bad, "--out", tmp_path / "out"), str(bad), says)
    assert len(line) < 600 and "pickled code ran" not in line
    assert not (tmp_path / "out").exists()


def test_a_png_that_is_not_an_image_is_named(tmp_path: Path) -> None:
    from hiclr.errors import HiclrError
    from hiclr.store import read_image

    p = tmp_path / "x.png"
    Image.fromarray(np.zeros((40, 40), np.uint16)).save(p)
    p.write_bytes(p.read_bytes()[:40])
    with pytest.raises(HiclrError, match="x.png"):
        read_image(p, None, "fix")


def test_an_unknown_torch_conv_algorithm_is_one_line(tmp_path: Path, model_file: Path) -> None:
    """``HICLR_TORCH_CONV`` is read when the torch backend is first imported (a fresh process)."""
    env = {**os.environ, "HICLR_TORCH_CONV": "gemm"}
    res = subprocess.run([sys.executable, "-m", "hiclr_cli", "predict", str(_ply(tmp_path)), "--model", str(model_file),
                          "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=300,
                         check=False)
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert len(lines) == 1 and "HICLR_TORCH_CONV='gemm'" in lines[0] and "offsets, fused, table" in lines[0], res.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case, says", [
    ("raw pickle", "it is a plain Python pickle, not tensors saved by torch.save"),
    ("object", "it holds pickled Python objects (argparse.Namespace)"),
    ("text", "not a file written by torch.save"),
])
def test_a_file_that_is_not_tensors_is_one_clear_line(tmp_path: Path, case: str, says: str) -> None:
    """Issue 22: torch's weights_only advice and pickle-protocol warnings stay out; a raw pickle
    gets a reason."""
    import argparse
    import pickle

    bad = tmp_path / "bad.pt"
    if case == "raw pickle":
        bad.write_bytes(pickle.dumps({"weights": [1.0]}, protocol=4))
    elif case == "object":
        torch.save({"format": "hiclr-model-1", "meta": argparse.Namespace(a=1)}, bad)
    else:
        bad.write_text("not a model\n")
    res = cli("predict", _ply(tmp_path), "--model", bad, "--out", tmp_path / "out")
    line = refused(res, f"{bad}: not a model file: {says}", "hiclr distill RUN --export")
    assert len(line) < 300 and "weights_only" not in line and "pickle protocol" not in res.stderr, res.stderr
