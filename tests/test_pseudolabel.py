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
