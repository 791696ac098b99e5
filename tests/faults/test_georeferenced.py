"""Issue 11, item 1: georeferenced scans (UTM-like offsets) are shifted to a local origin, not
silently collapsed by float32."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from faultkit import cli, prepare_args, scan, scan_mesh, write_ply
from hiclr.datasets.plyio import read_ply
from hiclr.store import Store

UTM = (500_000.0, 5_000_000.0, 0.0)


class Everywhere:
    """A labeler that gives class 0 to every pixel: the pairs are then exactly the visible points."""

    def label_views(self, scene, views, out_size):
        h, w = out_size
        return np.zeros((len(views), h, w), np.int64), np.ones((len(views), h, w), np.float32)


def _pairs_per_view(root: Path) -> list[np.ndarray]:
    from hiclr.config import PseudolabelConfig
    from hiclr.pseudolabel import label_scene

    scene = Store.open(root).scene("scene0999_00")
    pairs = label_scene(scene, Everywhere(), PseudolabelConfig())
    return [np.sort(pairs.point[pairs.view == v]) for v in range(scene.num_views)]


def test_utm_scan_pairs_equal_those_at_the_origin(tmp_path: Path) -> None:
    for name, offset in (("origin", (0.0, 0.0, 0.0)), ("utm", UTM)):
        listing = scan(tmp_path / f"raw_{name}", offset=offset)
        res = cli(*prepare_args(tmp_path / f"raw_{name}", tmp_path / name, listing))
        assert res.exit_code == 0, res.output + res.stderr
    at_origin, at_utm = _pairs_per_view(tmp_path / "origin"), _pairs_per_view(tmp_path / "utm")
    assert len(at_utm) == len(at_origin) == 3
    assert all(len(p) > 100 for p in at_origin)  # the wall is seen by every view
    for a, b in zip(at_origin, at_utm):
        np.testing.assert_array_equal(a, b)

    # stored local, the offset recorded; source frame = stored + origin
    utm = Store.open(tmp_path / "utm").scene("scene0999_00")
    assert json.loads(utm.manifest_path.read_text())["meta"]["origin"] == list(UTM)
    assert Store.open(tmp_path / "origin").scene("scene0999_00").origin.tolist() == [0.0, 0.0, 0.0]
    world, _ = scan_mesh(np.asarray(UTM))
    np.testing.assert_allclose(utm.read("coord").astype(np.float64) + utm.origin, world, atol=1e-5)
    poses = utm.cam_to_world()
    assert np.allclose(np.abs(np.diff(poses[:, 1, 3])), 0.1, atol=1e-5)  # frames 1 and 2 keep their own poses


def test_predict_labels_a_utm_ply_and_answers_in_its_frame(tmp_path: Path, model_file: Path) -> None:
    xyz = np.random.default_rng(0).uniform(0, 3, (400, 3))
    write_ply(tmp_path / "here.ply", xyz, double=True, colour=False)
    write_ply(tmp_path / "utm.ply", xyz + np.asarray(UTM), double=True, colour=False)
    for name in ("here", "utm"):
        res = cli("predict", tmp_path / f"{name}.ply", "--model", model_file, "--out", tmp_path / name)
        assert res.exit_code == 0, res.output + res.stderr
        # a colour-input model given a PLY without colour: labelled, and said so (issue 11, weak messages)
        warning = [ln for ln in res.stderr.splitlines() if ln.startswith("warning:")]
        assert len(warning) == 1 and f"{name}.ply" in warning[0] and "no red/green/blue" in warning[0]
    here, utm = np.load(tmp_path / "here/labels.npy"), np.load(tmp_path / "utm/labels.npy")
    np.testing.assert_array_equal(here, utm)
    v = read_ply(tmp_path / "utm/utm_labels.ply")["vertex"]
    assert v.dtype["x"] == np.float64
    out = np.stack([v["x"], v["y"], v["z"]], 1)
    np.testing.assert_array_equal(out, xyz + np.asarray(UTM))  # the input's frame, to the last bit
    np.testing.assert_array_equal(v["label"], utm)
