import json

import numpy as np
import pytest

from hiclr.errors import HiclrError
from hiclr.store import Pairs, Store, check_scene_id

CLASSES = ["wall", "floor", "chair"]


@pytest.fixture()
def store(tmp_path):
    return Store.create(tmp_path / "ds", name="t", classes=CLASSES, splits={"train": ["s1"], "val": ["s2"]})


def make_scene(store, sid="s1", n=5):
    sc = store.scene(sid)
    sc.write("coord", np.arange(n * 3, dtype=np.float32).reshape(n, 3), step="prepare", fingerprint="f0")
    return sc


def test_round_trip_every_array_dtype(store):
    sc = make_scene(store)
    rng = np.random.default_rng(0)
    arrays = {
        "color": rng.integers(0, 256, (5, 3)).astype(np.uint8),
        "normal": rng.normal(size=(5, 3)).astype(np.float32),
        "label": np.array([0, 1, 2, -1, 0], np.int16),
        "intensity": rng.random(5).astype(np.float32),
        "faces": np.array([[0, 1, 2], [2, 3, 4]], np.int32),
        "segments": np.array([0, 0, 1, 1, 2], np.int32),
        "pred": np.array([2, 1, 0, 0, 1], np.int16),
    }
    for name, arr in arrays.items():
        sc.write(name, arr, step="test", fingerprint="abc")
    again = Store.open(store.root).scene("s1")
    for name, arr in arrays.items():
        got = again.read(name)
        assert got.dtype == arr.dtype and np.array_equal(got, arr), name
    assert again.fingerprint("label") == "abc"
    manifest = json.loads((again.path / "scene.json").read_text())
    assert manifest["arrays"]["segments"]["step"] == "test"
    assert manifest["arrays"]["segments"]["hiclr_version"]


def test_pairs_round_trip(store):
    sc = make_scene(store)
    sc.write_views(np.eye(3, dtype=np.float32)[None].repeat(2, 0), np.eye(4, dtype=np.float32)[None].repeat(2, 0),
                   [np.zeros((4, 6, 3), np.uint8)] * 2, [np.full((4, 6), 1.5, np.float32)] * 2, "prepare", "f")
    p = Pairs(point=[0, 1, 4], view=[0, 1, 1], label=[2, 0, 1], score=[0.5, 0.25, 1.0])
    sc.write_pairs("pairs", p, step="pseudolabel", fingerprint="x")
    q = sc.read_pairs("pairs")
    assert q.point.dtype == np.int32 and q.view.dtype == np.int16 and q.label.dtype == np.int16
    assert q.score.dtype == np.float16 and q.label.tolist() == [2, 0, 1]
    assert sc.read_depth(1)[2, 3] == pytest.approx(1.5)
    assert sc.read_color(0).shape == (4, 6, 3)
    with pytest.raises(HiclrError, match="view index"):
        sc.write_pairs("pairs", Pairs([0], [5], [0], [1.0]), "pseudolabel", "x")


def test_truncated_npy_raises(store):
    sc = make_scene(store)
    path = sc.path / "coord.npy"
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(HiclrError, match="coord.npy"):
        Store.open(store.root).scene("s1").read("coord")


def test_nan_coordinate_raises(store):
    sc = store.scene("s1")
    bad = np.zeros((4, 3), np.float32)
    bad[2, 1] = np.nan
    with pytest.raises(HiclrError, match="non-finite"):
        sc.write("coord", bad, "prepare", "f")


def test_label_out_of_range_raises(store):
    sc = make_scene(store)
    with pytest.raises(HiclrError, match="labels outside"):
        sc.write("label", np.array([0, 1, 3, 0, 0], np.int16), "prepare", "f")
    with pytest.raises(HiclrError, match="labels outside"):
        sc.write("label", np.array([0, 1, -2, 0, 0], np.int16), "prepare", "f")


def test_mismatched_n_raises(store):
    sc = make_scene(store, n=5)
    with pytest.raises(HiclrError, match="5 points"):
        sc.write("color", np.zeros((4, 3), np.uint8), "prepare", "f")
    # a file replaced behind the store's back is caught on read too
    np.save(sc.path / "segments.npy", np.zeros(7, np.int32))
    sc._record("segments", "oversegment", "f")
    with pytest.raises(HiclrError, match="7 rows"):
        Store.open(store.root).scene("s1").read("segments")


def test_missing_manifest_raises(store):
    sc = make_scene(store)
    (sc.path / "scene.json").unlink()
    with pytest.raises(HiclrError, match="missing scene manifest"):
        Store.open(store.root).scene("s1").read("coord")


def test_missing_output_names_its_step(store):
    sc = make_scene(store)
    with pytest.raises(HiclrError) as e:
        sc.read("segments")
    assert "hiclr oversegment" in e.value.hint
    with pytest.raises(HiclrError) as e:
        sc.read_pairs("refined")
    assert "hiclr refine" in e.value.hint


def test_missing_dataset_yaml(tmp_path):
    with pytest.raises(HiclrError, match="no dataset"):
        Store.open(tmp_path)


@pytest.mark.parametrize("bad", ["../x", "a/b", "..", "", ".hidden", "a\\b"])
def test_scene_id_checked(bad):
    with pytest.raises(HiclrError):
        check_scene_id(bad)


def test_splits_and_scene_ids(store):
    make_scene(store, "s1")
    make_scene(store, "s2")
    assert store.scene_ids() == ["s1", "s2"]
    assert store.scene_ids("val") == ["s2"]
    with pytest.raises(HiclrError, match="no split"):
        store.scene_ids("nope")


def test_interrupted_write_leaves_old_file(store, monkeypatch):
    sc = make_scene(store)
    before = sc.read("coord").copy()
    import hiclr.store as st

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(st.os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        sc.write("coord", before + 1, "prepare", "f1")
    monkeypatch.undo()
    assert np.array_equal(Store.open(store.root).scene("s1").read("coord"), before)
    assert not list(sc.path.glob("*.tmp"))
