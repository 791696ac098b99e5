"""Model file, store predictions and `predict` on PLY files written by another tool (open3d)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hiclr.errors import HiclrError
from hiclr.model_file import ModelFile, load_model, save_model
from hiclr.predict import predict_ply, predict_store
from hiclr.store import Store

CLASSES = ["floor", "wall", "chair"]


def _model(tmp_path: Path) -> Path:
    from hiclr.nn import PointNetwork

    torch.manual_seed(0)
    net = PointNetwork("MinkUNet14A", in_channels=3, out_channels=8, voxel_size=0.2, backend="torch")
    text = torch.nn.functional.normalize(torch.randn(3, 8), dim=1)
    cfg = net.arch_config() | {"backend": "auto"}
    return save_model(tmp_path / "model.pt", ModelFile(net.state_dict(), cfg, CLASSES, text, anchors="random"))


def test_model_file_is_tensors_only_and_round_trips(tmp_path: Path) -> None:
    path = _model(tmp_path)
    blob = torch.load(path, weights_only=True)  # no code can run
    assert set(blob) == {"format", "weights", "text", "meta"}
    assert not any(k.startswith(("intra", "inter")) for k in blob["weights"])
    m = load_model(path)
    assert m.classes == CLASSES and m.text.shape == (3, 8) and m.arch["arch"] == "MinkUNet14A"
    net = m.network()
    assert all(torch.equal(net.state_dict()[k], v) for k, v in m.weights.items())
    torch.save({"format": "hiclr-checkpoint-1"}, tmp_path / "ckpt.pt")
    with pytest.raises(HiclrError, match="not a hiclr model file"):
        load_model(tmp_path / "ckpt.pt")


def test_predict_store_writes_pred_for_every_point(tmp_path: Path) -> None:
    store = Store.create(tmp_path / "s", "toy", CLASSES, splits={"val": ["a", "b"]})
    rng = np.random.default_rng(0)
    for sid, n in (("a", 500), ("b", 300)):
        sc = store.scene(sid)
        sc.write("coord", rng.uniform(0, 2, (n, 3)).astype(np.float32), "test", "x")
        sc.write("color", rng.integers(0, 255, (n, 3)).astype(np.uint8), "test", "x")
    model = _model(tmp_path)
    out = predict_store(store, model, split="val", batch=2, device="cpu")
    assert out == {"a": {"status": "done", "points": 500}, "b": {"status": "done", "points": 300}}
    pred = store.scene("a").read("pred")
    assert pred.shape == (500,) and pred.min() >= 0 and pred.max() < 3
    assert predict_store(store, model, split="val", device="cpu")["a"]["status"] == "skipped"  # same model: done


def test_predict_on_open3d_point_cloud_and_mesh(tmp_path: Path) -> None:
    o3d = pytest.importorskip("open3d")
    from PIL import Image

    from hiclr.datasets.plyio import read_ply

    model = _model(tmp_path)
    rng = np.random.default_rng(1)
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(rng.uniform(0, 3, (2000, 3))))
    pcd.colors = o3d.utility.Vector3dVector(rng.uniform(0, 1, (2000, 3)))
    o3d.io.write_point_cloud(str(tmp_path / "cloud.ply"), pcd)
    mesh = o3d.geometry.TriangleMesh.create_box(2.0, 1.0, 0.5).subdivide_midpoint(3)
    o3d.io.write_triangle_mesh(str(tmp_path / "box.ply"), mesh)

    for name, n in (("cloud", 2000), ("box", len(mesh.vertices))):
        res = predict_ply(tmp_path / f"{name}.ply", model, tmp_path / name, device="cpu")
        assert res.points == n
        labels = np.load(res.files["labels"])
        assert labels.shape == (n,) and labels.min() >= 0 and labels.max() < 3
        back = read_ply(res.files["ply"])
        assert len(back["vertex"]) == n and np.array_equal(back["vertex"]["label"], labels)
        assert np.allclose(np.stack([back["vertex"][c] for c in "xyz"], 1), np.asarray(
            pcd.points if name == "cloud" else mesh.vertices), atol=1e-5)
        if name == "box":
            assert len(back["face"]) == len(mesh.triangles)
        legend = json.loads(res.files["legend"].read_text())
        assert [e["name"] for e in legend] == CLASSES and sum(e["points"] for e in legend) == n
        img = np.asarray(Image.open(res.files["png"]).convert("RGB"))
        scene_part = img[:, : img.shape[0]]  # the splat is square; the legend is to its right
        assert (scene_part != 255).any(axis=2).sum() > 4 * n  # the points are drawn, not a blank image


def test_prompts_need_clip_anchors(tmp_path: Path) -> None:
    model = _model(tmp_path)
    from hiclr.predict import prompt_embeddings

    with pytest.raises(HiclrError, match="random anchors"):
        prompt_embeddings(load_model(model), ["lamp"])


def test_splat_zbuffer_nearest_wins() -> None:
    import math

    from hiclr.viz import project, splat

    a, e = math.radians(-45.0), math.radians(75.0)
    fwd = np.array([math.cos(e) * math.sin(a), math.cos(e) * math.cos(a), -math.sin(e)])
    # two points on one viewing ray (the far one first), plus two corners to fix the frame
    near, far = np.zeros(3), 2.0 * fwd
    pts = np.array([far, near, [-1.3, -0.7, 0.2], [1.1, 0.9, -0.4]], np.float32)
    uv, depth = project(pts)
    assert np.allclose(uv[0], uv[1], atol=1e-6) and depth[0] > depth[1]
    colors = np.array([[255, 0, 0], [0, 0, 255], [0, 0, 0], [0, 0, 0]], np.uint8)
    img = splat(pts, colors, size=64, radius=0)
    px = img.reshape(-1, 3).astype(int)
    drawn = (px != 255).any(1)
    assert ((px[:, 2] > 0) & (px[:, 0] == 0) & drawn).any()  # the near (blue) point is drawn
    assert not ((px[:, 0] > 0) & (px[:, 1] == 0) & (px[:, 2] == 0)).any()  # the far (red) one is hidden
