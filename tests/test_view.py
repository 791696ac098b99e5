"""`hiclr view`: the page's data, its scores against hiclr.evaluate, and the page in a real browser."""

from __future__ import annotations

import base64
import gzip
import io
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hiclr.evaluate import evaluate_sources
from hiclr.store import Pairs, Store
from hiclr.view import camera_frustums, decimate, page_payload, scene_scores, store_scene, write_page
from hiclr_cli.main import cli

CLASSES = ["wall", "floor", "box"]


def _grid(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    return np.stack(np.meshgrid(xs, ys, indexing="ij"), -1).reshape(-1, 2)


def _room(tmp_path: Path) -> Store:
    """One val scene: a 2 x 2 m floor (z = 0), a wall (x = 0) and the top of a box (z = 0.4); two
    views. pseudo: view 0 sees floor + box, calls every 10th floor point 'wall' and the box 'floor';
    view 1 sees wall + box, calls the box 'box'. The box's majority is a tie → 'floor' (smallest
    index). refined: the same pairs with the box all 'box'. The model ('pred') calls the box 'floor'."""
    st = Store.create(tmp_path / "data", "t", CLASSES, splits={"val": ["s0"]})
    s = np.arange(0.0, 2.0001, 0.05)
    floor = np.c_[_grid(s, s), np.zeros(len(s) ** 2)]
    wall = np.c_[np.zeros(len(s) * 21), _grid(s, np.arange(0.0, 1.0001, 0.05))]
    b = np.arange(0.8, 1.2001, 0.05)
    box = np.c_[_grid(b, b), np.full(len(b) ** 2, 0.4)]
    coord = np.concatenate([floor, wall, box]).astype(np.float32)
    gt = np.concatenate([np.full(len(floor), 1), np.full(len(wall), 0), np.full(len(box), 2)]).astype(np.int16)
    n_floor, n_wall = len(floor), len(wall)
    ids = {"floor": np.arange(n_floor), "wall": np.arange(n_floor, n_floor + n_wall),
           "box": np.arange(n_floor + n_wall, len(coord))}
    sc = st.scene("s0")
    sc.write("coord", coord, "prepare", "f")
    sc.write("color", (np.array([[200, 180, 150], [90, 120, 200], [40, 160, 60]])[gt]).astype(np.uint8), "prepare", "f")
    sc.write("label", gt, "prepare", "f")
    K = np.array([[20.0, 0, 16], [0, 20.0, 12], [0, 0, 1]], np.float32)
    look_down = np.eye(4)
    look_down[:3, :3] = [[1, 0, 0], [0, -1, 0], [0, 0, -1]]
    look_down[:3, 3] = [1.0, 1.0, 2.5]
    look_wall = np.eye(4)
    look_wall[:3, :3] = [[0, 0, -1], [1, 0, 0], [0, -1, 0]]  # camera x → +y, y → -z (down), z → -x
    look_wall[:3, 3] = [2.5, 1.0, 0.6]
    sc.write_views(np.stack([K, K]), np.stack([look_down, look_wall]), [np.zeros((24, 32, 3), np.uint8)] * 2, None,
                   "prepare", "f")
    pseudo_floor = np.where(np.arange(n_floor) % 10 == 0, 0, 1)
    point = np.concatenate([ids["floor"], ids["box"], ids["wall"], ids["box"]])
    view = np.concatenate([np.zeros(n_floor + len(box)), np.ones(n_wall + len(box))])
    label = np.concatenate([pseudo_floor, np.full(len(box), 1), np.zeros(n_wall), np.full(len(box), 2)])
    refined = label.copy()
    refined[n_floor:n_floor + len(box)] = 2

    def pairs(lab: np.ndarray) -> Pairs:
        return Pairs(point.astype(np.int32), view.astype(np.int16), lab.astype(np.int16),
                     np.ones(len(point), np.float16))

    sc.write_pairs("pairs", pairs(label), "pseudolabel", "f")
    sc.write_pairs("refined", pairs(refined), "refine", "f")
    sc.write("segments", gt.astype(np.int32), "oversegment", "f")
    sc.write("pred", np.where(gt == 2, 1, gt).astype(np.int16), "evaluate", "f")
    return st


def _unblob(blob: dict) -> np.ndarray:
    raw = gzip.decompress(base64.b64decode(blob["gz"]))
    return np.frombuffer(raw, dtype=np.dtype(blob["dtype"]).newbyteorder("<")).reshape(blob["shape"])


def test_frustum_corners_by_hand() -> None:
    # fx = fy = 10, principal point (1.5, 0.5), a 4 x 2 image, identity pose, 1 m deep:
    # pixel edge (-0.5, -0.5) → x = (-0.5 - 1.5) / 10 = -0.2, y = (-0.5 - 0.5) / 10 = -0.1
    K = np.array([[[10.0, 0, 1.5], [0, 10.0, 0.5], [0, 0, 1]]])
    T = np.eye(4)[None].copy()
    T[0, :3, 3] = [1, 2, 3]
    f = camera_frustums(K, T, 4, 2, depth=1.0)
    assert f.shape == (1, 5, 3)
    np.testing.assert_allclose(f[0, 0], [1, 2, 3])
    np.testing.assert_allclose(f[0, 1:], [[0.8, 1.9, 4], [1.2, 1.9, 4], [1.2, 2.1, 4], [0.8, 2.1, 4]], atol=1e-6)


def test_decimation_is_a_seeded_sorted_subset() -> None:
    keep = decimate(1000, 300, seed=0)
    assert len(keep) == 300 and len(np.unique(keep)) == 300 and (np.diff(keep) > 0).all()
    np.testing.assert_array_equal(keep, decimate(1000, 300, seed=0))
    np.testing.assert_array_equal(decimate(10, 300), np.arange(10))


def test_scores_are_evaluate_s_on_one_scene(tmp_path: Path) -> None:
    st = _room(tmp_path)
    data = store_scene(st, "s0")
    assert set(data.labels) == {"gt", "pseudo", "refined", "pred"}
    evs = evaluate_sources(st, ["pseudo", "refined", "pred"], "val", progress=False)
    for ev in evs:
        mine = scene_scores(data.labels["gt"], data.labels[ev.labels], CLASSES, seen=data.labels["pseudo"] >= 0)
        assert mine["per_class"] == ev.scores["per_class"]
        assert mine["seen"]["miou"] == pytest.approx(ev.scores_seen["miou"])
    # by hand: the model calls the 81 box points 'floor': floor IoU 1681 / (1681 + 81), box 0
    pred = scene_scores(data.labels["gt"], data.labels["pred"], CLASSES)["per_class"]
    assert pred["floor"]["iou"] == pytest.approx(1681 / 1762) and pred["box"]["iou"] == 0.0


def test_payload_round_trips_and_decimates(tmp_path: Path) -> None:
    st = _room(tmp_path)
    data = store_scene(st, "s0")
    p = page_payload(data, max_points=1000)
    assert p["points_total"] == len(data.coord) == 1681 + 861 + 81 and p["points_shown"] == 1000
    keep = decimate(len(data.coord), 1000)
    pos = _unblob(p["arrays"]["pos"]) * np.array(p["step"]) + np.array(p["origin"])
    np.testing.assert_allclose(pos, data.coord[keep], atol=1e-4)
    np.testing.assert_array_equal(_unblob(p["arrays"]["label_refined"]), data.labels["refined"][keep])
    counts = _unblob(p["arrays"]["views_count"])
    box = np.isin(keep, np.arange(1681 + 861, 2623))
    assert (counts[box] == 2).all() and (counts[~box] == 1).all()  # the box is in both views, the rest in one
    assert p["sources"] == ["rgb", "gt", "pseudo", "refined", "pred", "errors", "segments"]
    assert p["views"] == 2


def test_cli_writes_one_offline_page(tmp_path: Path) -> None:
    st = _room(tmp_path)
    out = tmp_path / "page.html"
    res = CliRunner().invoke(cli, ["view", str(st.root), "--scene", "s0", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert f"wrote {out}" in res.output and "2,623 points" in res.output
    html = out.read_text()
    # self-contained: no URL the browser would fetch (scripts and styles are inline)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<script src" not in html and "Three.js Authors" in html  # the vendored licence header
    bad = CliRunner().invoke(cli, ["view", str(st.root), "--scene", "nope"])
    assert bad.exit_code == 1 and "no scene 'nope'" in bad.output


# --------------------------------------------------------------------------------------------
# a real browser: headless Chromium over the DevTools pipe (tests/browser.py)

sys.path.insert(0, str(Path(__file__).parent))
from browser import Chromium, find_browser

BROWSER = find_browser()


def _canvas_pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    return img[:, 300:]  # right of the 300 px side panel


@pytest.mark.skipif(BROWSER is None, reason="no Chromium on PATH (apt-get install chromium, or set HICLR_CHROMIUM)")
def test_page_in_headless_chromium(tmp_path: Path) -> None:
    st = _room(tmp_path)
    data = store_scene(st, "s0")
    page = write_page(data, tmp_path / "page.html")
    evs = {ev.labels: ev for ev in evaluate_sources(st, ["pseudo", "refined", "pred"], "val", progress=False)}
    with Chromium(BROWSER) as b:
        t0 = time.perf_counter()
        b.open(page.path.resolve().as_uri())
        assert b.wait_for("document.body && document.body.dataset.ready", timeout=30) == "1", \
            b.eval("document.getElementById('error').textContent")
        load_s = time.perf_counter() - t0
        assert b.eval("document.getElementById('count').textContent") == "2,623 points"
        shot_gt = _canvas_pixels(b.screenshot())
        (tmp_path / "gt.png").write_bytes(b.screenshot())
        # not blank: many non-white pixels, and the ground-truth palette's floor colour among them
        drawn = (shot_gt < 245).any(-1)
        assert drawn.mean() > 0.05, f"only {drawn.mean():.1%} of the canvas drawn"
        floor_rgb = np.array([152, 223, 138])
        assert (np.abs(shot_gt.astype(int) - floor_rgb).sum(-1) < 40).sum() > 500

        b.click('button[data-source="errors"]')  # the page's own control, a real mouse click
        b.wait_for("window.hiclrView.state.source === 'errors'")
        shot_err = _canvas_pixels(b.screenshot())
        changed = (np.abs(shot_err.astype(int) - shot_gt.astype(int)).sum(-1) > 30).mean()
        assert changed > 0.02, f"only {changed:.1%} of the canvas changed colour"
        red = np.array([214, 39, 40])  # errors of the model: the box is wrong
        assert (np.abs(shot_err.astype(int) - red).sum(-1) < 40).sum() > 50

        for src, button in (("pseudo", "pseudo"), ("refined", "refined"), ("pred", "model")):
            b.click(f'button[data-source="{src}"]')
            b.wait_for(f"window.hiclrView.state.source === '{src}'")
            cells = b.eval("[...document.querySelectorAll('#legend td.iou')]"
                           ".map(td => [td.dataset.class, td.dataset.iou, td.textContent])")
            assert b.eval(f"document.querySelector('button[data-source=\"{src}\"]').textContent") == button
            want = evs[src].scores["per_class"]
            assert {c for c, _, _ in cells} == {c for c in CLASSES if want[c]["support"]}
            for name, iou, text in cells:
                assert float(iou) == pytest.approx(want[name]["iou"], abs=1e-12)
                assert text == f"{100 * want[name]['iou']:.1f}"
            miou = b.eval("Number(document.querySelector('#legend [data-miou]').dataset.miou)")
            assert miou == pytest.approx(evs[src].scores["miou"], abs=1e-12)
        # click the middle of the box top (1, 1, 0.4): the info names its class under every source and
        # the two views that saw it, and lights their frustums
        x, y = b.eval("window.hiclrView.screenOf(1.0, 1.0, 0.4)")
        for kind in ("mousePressed", "mouseReleased"):
            b.call("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})
        info = b.wait_for("window.hiclrView.state.pinned !== null && document.getElementById('info').innerText")
        assert "seen by 2 views: #0 floor, #1 box" in info, info
        rows = dict(line.split("\t")[:2] for line in info.splitlines() if "\t" in line)
        assert {k: v.strip() for k, v in rows.items()} == {"gt": "box", "pseudo": "floor", "refined": "box",
                                                           "model": "floor", "segment": "2"}
    assert load_s < 15, f"the page took {load_s:.1f} s to draw"


def test_json_payload_cannot_close_its_script(tmp_path: Path) -> None:
    st = _room(tmp_path)
    data = store_scene(st, "s0")
    data.title = "</script><b>x"
    html = write_page(data, tmp_path / "p.html").path.read_text()
    body = html.split('id="hiclr-data">', 1)[1].split("</script>", 1)[0]
    assert json.loads(body)["title"] == "</script><b>x"


# --------------------------------------------------------------------------------------------
# figures (hiclr.figures): IoU bars, the refinement picture, the feature space


def test_view_label_image_by_hand() -> None:
    from hiclr.figures import view_label_image

    # camera at the origin looking along +z; fx = fy = 10, principal point (4, 3), an 8 x 6 image.
    # (0.1, 0, 1) projects to u = 10 * 0.1 + 4 = 5, v = 3; a nearer point on the same pixel wins.
    K = np.array([[10.0, 0, 4], [0, 10.0, 3], [0, 0, 1]])
    pts = np.array([[0.1, 0, 1], [0.05, 0, 0.5], [0, 0, -1]])
    img = view_label_image(pts, np.array([1, 2, 0]), K, np.eye(4), 8, 6, radius=1.5)
    assert img[3, 5] == 2  # the nearer point's label
    assert img[3, 6] == 2 and img[4, 6] == 2 and img[3, 7] == -1  # filled within 1.5 px, empty beyond
    assert (img >= 0).sum() == 9  # the 3 x 3 pixels around (5, 3); the point behind the camera is dropped


def test_figures_from_evaluate(tmp_path: Path) -> None:
    from PIL import Image

    st = _room(tmp_path)
    res = CliRunner().invoke(cli, ["evaluate", str(st.root), "--compare", "pseudo,refined,pred", "--figures",
                                   str(tmp_path / "fig")])
    assert res.exit_code == 0, res.output
    bars, refinement = tmp_path / "fig" / "iou-val.png", tmp_path / "fig" / "refinement-s0.png"
    assert f"figure: {bars}" in res.output and f"figure: {refinement}" in res.output
    for p in (bars, refinement):
        img = np.asarray(Image.open(p).convert("RGB"))
        assert img.shape[0] > 200 and (img < 200).any(-1).mean() > 0.01  # drawn, not blank


def test_refinement_picks_the_view_the_vote_changed(tmp_path: Path) -> None:
    from hiclr import figures

    st = _room(tmp_path)
    seen: dict = {}
    real = figures.view_label_image

    def spy(coord, labels, *a, **k):
        seen.setdefault("labels", []).append(np.asarray(labels).copy())
        return real(coord, labels, *a, **k)

    figures.view_label_image = spy
    try:
        figures.refinement_figure(st, "s0", tmp_path / "r.png")
    finally:
        figures.view_label_image = real
    # the vote changed the box's labels in view 0 only (floor → box): panels pseudo, refined, gt of view 0
    pseudo, refined, gt = seen["labels"]
    assert len(pseudo) == 1681 + 81 and (pseudo[-81:] == 1).all() and (refined[-81:] == 2).all()
    assert (refined == gt).sum() > (pseudo == gt).sum()


def test_feature_space_pca_fallback_without_sklearn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from hiclr.figures import embed_2d, feature_figure
    from hiclr.model_file import ModelFile, save_model
    from hiclr.nn import PointNetwork

    # PCA by hand: points on a line along (1, 1, 0) / sqrt(2) → the first axis is the position on it
    t = np.linspace(-1, 1, 5)
    xy, used = embed_2d(np.c_[t, t, np.zeros(5)], "pca")
    assert used == "PCA" and np.allclose(np.abs(xy[:, 0]), np.abs(t) * np.sqrt(2)) and np.allclose(xy[:, 1], 0)

    monkeypatch.setitem(sys.modules, "sklearn.manifold", None)  # import fails as when sklearn is absent
    assert embed_2d(np.random.default_rng(0).normal(size=(20, 4)))[1] == "PCA"
    st = _room(tmp_path)
    torch.manual_seed(0)
    net = PointNetwork("MinkUNet14A", in_channels=3, out_channels=8, voxel_size=0.2, backend="torch")
    text = torch.nn.functional.normalize(torch.randn(3, 8), dim=1)
    model = save_model(tmp_path / "exp1" / "model.pt",
                       ModelFile(net.state_dict(), net.arch_config() | {"backend": "auto"}, CLASSES, text, anchors="random"))
    out = feature_figure(st, [("EXP I", model)], tmp_path / "f.png", samples=300, device="cpu")
    assert out.is_file() and out.stat().st_size > 10_000
