"""`hiclr pseudolabel` end to end on a tiny synthetic store (oracle and a tiny random MaskCLIP)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from hiclr.config import PseudolabelConfig
from hiclr.errors import HiclrError
from hiclr.pseudolabel import coverage, majority_vote, run_pseudolabel

TINY_MODEL = "hiclr-tiny-pseudolabel"
TINY_CFG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def pairs(point: list[int], label: list[int]) -> SimpleNamespace:
    return SimpleNamespace(point=np.array(point), label=np.array(label))


def test_majority_vote_by_hand() -> None:
    p = pairs([0, 0, 0, 1, 1, 3, 3, 3, 3], [2, 2, 1, 4, 0, 1, 5, 5, -1])
    votes = majority_vote(5, p, 6)
    # point 0: 2 wins 2:1; point 1: tie 4 vs 0 → 0; points 2, 4 unseen; point 3: 5 (the -1 row does not vote)
    assert votes.tolist() == [2, 0, -1, 5, -1] and votes.dtype == np.int16
    assert coverage(votes) == pytest.approx(3 / 5)
    assert coverage(votes, mask=np.array([1, 1, 1, 0, 0], bool)) == pytest.approx(2 / 3)
    assert majority_vote(3, pairs([], []), 4).tolist() == [-1, -1, -1]
    with pytest.raises(HiclrError):
        majority_vote(2, pairs([5], [0]), 4)


def test_majority_vote_order_free() -> None:
    rng = np.random.default_rng(0)
    point, label = rng.integers(0, 50, 2000), rng.integers(0, 7, 2000)
    perm = rng.permutation(2000)
    a = majority_vote(60, pairs(point, label), 7)
    b = majority_vote(60, pairs(point[perm], label[perm]), 7)
    assert np.array_equal(a, b)
    counts = np.zeros((60, 7), int)
    np.add.at(counts, (point, label), 1)
    seen = counts.sum(1) > 0
    assert np.array_equal(a[seen], counts[seen].argmax(1)) and np.all(a[~seen] == -1)


@pytest.fixture(scope="module")
def store(make_synthetic_store):
    return make_synthetic_store("pl_store", scenes=2, seed=5, views=3, width=96, height=72, spacing=0.08,
                                val_fraction=0.5)


def test_oracle_end_to_end(store) -> None:
    from hiclr.geometry import pair_points_with_view_np

    cfg = PseudolabelConfig(labeler="oracle", noise=0.0, device="cpu")
    summary = run_pseudolabel(store, cfg, progress=False)
    assert summary.done == store.scene_ids() and not summary.failed
    for sid in store.scene_ids():
        scene = store.scene(sid)
        p = scene.read_pairs("pairs")
        gt = scene.read("label")
        assert len(p) > 1000 and set(np.unique(p.view)) == {0, 1, 2}
        assert np.mean(p.label == gt[p.point]) > 0.85  # noise 0: the pixel's own surface label
        assert np.all(p.score == 1.0)
        # the pairs of view 1 are exactly the visible points that hit a labelled surface
        idx, _, _ = pair_points_with_view_np(scene.read("coord"), scene.intrinsics()[1], scene.cam_to_world()[1],
                                             scene.read_depth(1))
        got = np.sort(p.point[p.view == 1])
        assert set(got) <= set(idx) and len(got) >= 0.95 * len(idx)
    # up to date → skipped; another noise → redone
    assert run_pseudolabel(store, cfg, progress=False).skipped == store.scene_ids()
    again = run_pseudolabel(store, PseudolabelConfig(labeler="oracle", noise=0.5, device="cpu"), progress=False)
    assert again.done == store.scene_ids()
    noisy = store.scene(store.scene_ids()[0]).read_pairs("pairs")
    assert noisy.score.min() < 1.0


def test_views_without_depth_use_min_distance(store, tmp_path: Path) -> None:
    """A store whose views have no depth (as LiDAR datasets): image bounds and 1 m decide."""
    from hiclr.geometry import project_points
    from hiclr.store import Store

    nodepth = Store.create(tmp_path / "nodepth", "synthetic", store.classes)
    src = store.scene(store.scene_ids()[0])
    dst = nodepth.scene(src.id)
    dst.set_meta(source="synthetic")
    for name in ("coord", "color", "normal", "label", "faces"):
        dst.write(name, src.read(name), "test", "0")
    V = src.num_views
    dst.write_views(src.intrinsics(), src.cam_to_world(), [src.read_color(v) for v in range(V)], None, "test", "0")
    cfg = PseudolabelConfig(labeler="oracle", noise=0.0, device="cpu", min_distance=1.0)
    assert run_pseudolabel(nodepth, cfg, progress=False).done == [src.id]
    p = dst.read_pairs("pairs")
    assert run_pseudolabel(store, cfg, [src.id], progress=False, overwrite=True).done == [src.id]
    assert len(p) > len(src.read_pairs("pairs"))  # no occlusion test without depth: more pairs
    u, v, z = (t.numpy() for t in project_points(dst.read("coord")[p.point[p.view == 0]],
                                                  dst.intrinsics()[0], dst.cam_to_world()[0]))
    assert z.min() >= 1.0 and u.min() >= -0.5 and u.max() < 95.5 and v.min() >= -0.5 and v.max() < 71.5


def test_cli_oracle_and_refusal(store, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from hiclr.store import Store
    from hiclr_cli.main import cli

    runner = CliRunner()
    res = runner.invoke(cli, ["pseudolabel", str(store.root), "--labeler", "oracle", "--noise", "0.2", "--device", "cpu",
                              "--split", "val"], obj={})
    assert res.exit_code == 0, res.output
    assert "1 done" in res.output and "views" in res.output
    Store.create(tmp_path / "real", "scannet", store.classes)
    res = runner.invoke(cli, ["pseudolabel", str(tmp_path / "real"), "--labeler", "oracle"], obj={})
    assert res.exit_code == 1 and "--labeler maskclip" in res.output


def _register_tiny_model(tmp_path: Path) -> None:
    import open_clip

    path = tmp_path / f"{TINY_MODEL}.json"
    path.write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(path)


def _three_class_copy(store, root: Path):
    """One scene of ``store`` (points and views) in a new 3-class store: 255 prompts to encode, not 1700."""
    from hiclr.store import Store

    small = Store.create(root, "tiny", ["wall", "floor", "chair"])
    src = store.scene(store.scene_ids()[0])
    dst = small.scene(src.id)
    for name in ("coord", "color", "normal"):
        dst.write(name, src.read(name), "test", "0")
    V = src.num_views
    dst.write_views(src.intrinsics(), src.cam_to_world(), [src.read_color(v) for v in range(V)],
                    [src.read_depth(v) for v in range(V)], "test", "0")
    return small


def test_maskclip_path_end_to_end(store, tmp_path: Path) -> None:
    """The real MaskCLIP code path with a tiny random open_clip ViT: pairs carry the labels and
    scores that MaskCLIP gives the pixels the points project to."""
    import hiclr.pseudolabel as pl
    from hiclr.geometry import pair_points_with_view_np

    _register_tiny_model(tmp_path)
    small = _three_class_copy(store, tmp_path / "small")
    cfg = PseudolabelConfig(labeler="maskclip", clip=TINY_MODEL, clip_weights="random", device="cpu", batch_frames=2)
    sid = small.scene_ids()[0]
    summary = run_pseudolabel(small, cfg, progress=False)
    assert summary.done == [sid], summary.failed
    assert list((Path(small.root) / "cache").glob("text_*.npy"))  # text embeddings cached in the store
    scene = small.scene(sid)
    p = scene.read_pairs("pairs")
    labeler = pl._LABELERS[(str(Path(small.root).resolve()), pl.pseudolabel_fingerprint(cfg, small), "cpu")]
    assert labeler.text.shape[0] == 3
    labels, scores = labeler.clip.label_images(scene.read_color(2)[None], labeler.text, out_size=(72, 96))
    idx, pu, pv = pair_points_with_view_np(scene.read("coord"), scene.intrinsics()[2], scene.cam_to_world()[2],
                                           scene.read_depth(2))
    mine = p.view == 2
    assert np.array_equal(p.point[mine], idx)  # MaskCLIP labels every pixel: every visible point is paired
    assert np.array_equal(p.label[mine], labels[0].numpy()[pv, pu])
    np.testing.assert_allclose(p.score[mine], scores[0].numpy()[pv, pu], rtol=1e-3)
    # the same settings again: skipped without loading anything
    assert run_pseudolabel(small, cfg, progress=False).skipped == [sid]


def test_missing_weights_fail_once_with_a_hint(store) -> None:
    cfg = PseudolabelConfig(labeler="maskclip", clip="ViT-B-16", clip_weights="/nonexistent/clip.pt", device="cpu")
    with pytest.raises(HiclrError) as err:
        run_pseudolabel(store, cfg, overwrite=True, progress=False)
    assert "does not exist" in err.value.message


def test_bad_settings(store) -> None:
    for bad in ({"labeler": "sam"}, {"depth_test": "nearest"}, {"noise": 2.0}, {"batch_frames": 0}):
        with pytest.raises(HiclrError):
            run_pseudolabel(store, PseudolabelConfig(**bad), progress=False)


# ----------------------------------------------------------------------------- dense CLIP modes
@pytest.mark.parametrize("mode,pamr", [("sclip", 0), ("clearclip", 0), ("naclip", 2)])
def test_cli_dense_modes_with_random_weights_end_to_end(store, tmp_path: Path, mode: str, pamr: int) -> None:
    """`hiclr pseudolabel STORE --dense MODE --clip-weights random` runs, says the weights are random,
    and its pairs carry the labels that the same mode gives the pixels."""
    from click.testing import CliRunner

    import hiclr.pseudolabel as pl
    from hiclr_cli.main import cli

    _register_tiny_model(tmp_path)
    small = _three_class_copy(store, tmp_path / "small")
    args = ["pseudolabel", str(small.root), "--dense", mode, "--clip", TINY_MODEL, "--clip-weights", "random",
            "--device", "cpu", "--pamr-steps", str(pamr)]
    res = CliRunner().invoke(cli, args, obj={})
    assert res.exit_code == 0, res.output
    assert "1 done" in res.output and f"({mode}" in res.output and "RANDOM weights" in res.output
    cfg = PseudolabelConfig(labeler="maskclip", dense=mode, pamr_steps=pamr, clip=TINY_MODEL, clip_weights="random",
                            device="cpu")
    labeler = pl._LABELERS[(str(Path(small.root).resolve()), pl.pseudolabel_fingerprint(cfg, small), "cpu")]
    assert labeler.clip.dense == mode and labeler.clip.pamr_steps == pamr
    scene = small.scene(small.scene_ids()[0])
    labels, _ = labeler.clip.label_images(scene.read_color(1)[None], labeler.text, out_size=(72, 96))
    p = scene.read_pairs("pairs")
    from hiclr.geometry import pair_points_with_view_np

    idx, pu, pv = pair_points_with_view_np(scene.read("coord"), scene.intrinsics()[1], scene.cam_to_world()[1],
                                           scene.read_depth(1))
    assert np.array_equal(p.point[p.view == 1], idx)
    assert np.array_equal(p.label[p.view == 1], labels[0].numpy()[pv, pu])
    # another mode is another fingerprint: redone, not skipped
    other = "maskclip" if mode != "maskclip" else "sclip"
    assert run_pseudolabel(small, PseudolabelConfig(labeler="maskclip", dense=other, clip=TINY_MODEL,
                                                    clip_weights="random", device="cpu"), progress=False).done


# ----------------------------------------------------------------------------- imported label maps
def _write_gt_label_maps(store, root: Path, scene_ids=None, bits: int = 8, scale: int = 1) -> None:
    """Ground-truth label maps rendered from each scene's mesh on its depth grid, as PNGs."""
    from PIL import Image

    from hiclr.render import MeshRenderer

    for sid in scene_ids or store.scene_ids():
        scene = store.scene(sid)
        renderer = MeshRenderer(scene.read("coord"), scene.read("faces"))
        H, W = scene.read_depth(0).shape
        (root / sid).mkdir(parents=True, exist_ok=True)
        for v in range(scene.num_views):
            gt = renderer.labels(scene.read("label"), scene.intrinsics()[v], scene.cam_to_world()[v], W, H)
            gt = gt.repeat(scale, 0).repeat(scale, 1)
            ignore = 255 if bits == 8 else 65535
            arr = np.where(gt < 0, ignore, gt).astype(np.uint8 if bits == 8 else np.uint16)
            Image.fromarray(arr).save(root / sid / f"{v:06d}.png")


def test_images_labeler_equals_the_oracle_at_noise_0(store, tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    _write_gt_label_maps(store, maps, bits=16)
    (maps / "classes.txt").write_text("\n".join(store.classes) + "\n")
    oracle = PseudolabelConfig(labeler="oracle", noise=0.0, device="cpu")
    assert run_pseudolabel(store, oracle, overwrite=True, progress=False).done == store.scene_ids()
    want = {sid: store.scene(sid).read_pairs("pairs") for sid in store.scene_ids()}
    cfg = PseudolabelConfig(labeler="images", labels_from=str(maps), device="cpu")
    summary = run_pseudolabel(store, cfg, overwrite=True, progress=False)
    assert summary.done == store.scene_ids() and not summary.notes
    for sid in store.scene_ids():
        got = store.scene(sid).read_pairs("pairs")
        assert len(got) > 1000
        assert np.array_equal(got.point, want[sid].point) and np.array_equal(got.view, want[sid].view)
        assert np.array_equal(got.label, want[sid].label) and np.all(got.score == 1.0)
    assert run_pseudolabel(store, cfg, progress=False).skipped == store.scene_ids()
    # a re-exported map is new input: that scene is redone
    sid = store.scene_ids()[0]
    from PIL import Image

    path = maps / sid / "000001.png"
    arr = np.asarray(Image.open(path)).copy()
    arr[:10] = 0
    Image.fromarray(arr).save(path)
    assert run_pseudolabel(store, cfg, progress=False).done == [sid]


def test_images_labeler_confidence_resize_and_refusals(store, tmp_path: Path) -> None:
    from click.testing import CliRunner
    from PIL import Image

    from hiclr_cli.main import cli

    sid = store.scene_ids()[0]
    maps = tmp_path / "maps"
    _write_gt_label_maps(store, maps, [sid], bits=8, scale=2)  # 192×144 maps for a 96×72 grid
    conf = np.full((144, 192), 51, np.uint8)  # 51 / 255 = 0.2
    Image.fromarray(conf).save(maps / sid / "000000_conf.png")
    cfg = PseudolabelConfig(labeler="images", labels_from=str(maps), device="cpu")
    summary = run_pseudolabel(store, cfg, [sid], overwrite=True, progress=False)
    assert summary.done == [sid]
    assert any("192×144 resized nearest-neighbour to the 96×72" in n for n in summary.notes)
    p = store.scene(sid).read_pairs("pairs")
    np.testing.assert_allclose(p.score[p.view == 0], 0.2, rtol=1e-3)
    assert np.all(p.score[p.view != 0] == 1.0)

    runner = CliRunner()
    # a view without its label file: refused before any work, naming the file
    (maps / sid / "000002.png").unlink()
    res = runner.invoke(cli, ["pseudolabel", str(store.root), "--labeler", "images", "--labels-from", str(maps),
                              "--device", "cpu", "--overwrite"], obj={})
    assert res.exit_code == 1
    assert str(maps / sid / "000002.png") in res.output and "missing" in res.output
    other = store.scene_ids()[1]
    assert str(maps / other / "000000.png") not in res.output and "more" in res.output  # one line, counted
    # a class index the store does not have, a map of another aspect ratio, other class names
    Image.fromarray(np.full((72, 96), len(store.classes), np.uint8)).save(maps / sid / "000002.png")
    with pytest.raises(HiclrError, match="000002.png: class index"):
        _label_one(store, cfg, sid)
    Image.fromarray(np.zeros((72, 72), np.uint8)).save(maps / sid / "000002.png")
    with pytest.raises(HiclrError, match="000002.png: label map 72×72 does not fit"):
        _label_one(store, cfg, sid)
    (maps / "classes.txt").write_text("wall\nfloor\n")
    with pytest.raises(HiclrError, match="classes.txt"):
        run_pseudolabel(store, cfg, [sid], overwrite=True, progress=False)
    with pytest.raises(HiclrError, match="labels_from"):
        run_pseudolabel(store, PseudolabelConfig(labeler="images"), progress=False)


def _label_one(store, cfg: PseudolabelConfig, sid: str) -> None:
    from hiclr.pseudolabel import label_scene
    from hiclr.vlm.labelmaps import ImageLabeler

    label_scene(store.scene(sid), ImageLabeler(cfg.labels_from, len(store.classes)), cfg)
