"""Synthetic rooms: layout, mesh, views, determinism and the `hiclr prepare synthetic` step."""

import dataclasses

import numpy as np
import pytest

pytest.importorskip("open3d")

from hiclr.config import SyntheticConfig
from hiclr.datasets.classes import (
    LIDARSEG_TO_NUSCENES16,
    NUSCENES16_CLASSES,
    SCANNET20_CLASSES,
    map_lidarseg,
    map_nyu40,
)
from hiclr.datasets.rooms import ROOM_TYPES, make_layout
from hiclr.datasets.synthetic import (
    _rng,
    dataset_summary,
    generate_scene,
    intrinsics,
    prepare_synthetic,
    scene_id,
    splits_for,
)
from hiclr.errors import HiclrError
from hiclr.render import MeshRenderer, backproject
from hiclr.store import Store

SMALL = SyntheticConfig(scenes=2, views=4, width=160, height=120)  # default 3 cm spacing, small frames


@pytest.fixture(scope="module")
def room():
    return generate_scene(0, SMALL)


def _layout_classes(seed: int) -> set[int]:
    layout = make_layout(_rng(seed, 0), ROOM_TYPES[seed % 4])
    return {p.label for o in layout.objects for p in o.parts} | {0, 1}  # + wall, floor


def test_every_room_has_at_least_8_classes_and_four_rooms_in_a_row_cover_all_20():
    per_room = [_layout_classes(s) for s in range(16)]
    assert min(len(c) for c in per_room) >= 8, [len(c) for c in per_room]
    for i in range(len(per_room) - 3):
        assert set().union(*per_room[i : i + 4]) == set(range(20)), i


def test_layout_objects_do_not_overlap_and_stay_inside_the_room():
    for seed in range(12):
        layout = make_layout(_rng(seed, 0), ROOM_TYPES[seed % 4])
        boxes = [o.bounds() for o in layout.objects]
        for lo, hi in boxes:
            assert (lo >= -1e-9).all() and hi[2] <= layout.size[2]
            assert (hi[:2] <= layout.size[:2] + 1e-9).all()
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                (a0, a1), (b0, b1) = boxes[i], boxes[j]
                overlap = (a0 < b1).all() and (b0 < a1).all()
                assert not overlap, (seed, layout.objects[i].name, layout.objects[j].name)


def test_mesh_is_scannet_like(room):
    m = room.mesh
    assert 20_000 < len(m.vertices) < 400_000
    edges = np.concatenate([m.faces[:, [0, 1]], m.faces[:, [1, 2]], m.faces[:, [2, 0]]])
    length = np.linalg.norm(m.vertices[edges[:, 0]] - m.vertices[edges[:, 1]], axis=1)
    assert 0.02 <= np.median(length) <= 0.04
    np.testing.assert_allclose(np.linalg.norm(m.normals, axis=1), 1.0, atol=1e-6)
    # vertex normals agree with the geometric normal of their faces (faces are not welded)
    a, b, c = (m.vertices[m.faces[:, i]] for i in range(3))
    fn = np.cross(b - a, c - a)
    fn /= np.linalg.norm(fn, axis=1, keepdims=True)
    assert (np.einsum("ij,ij->i", fn, m.normals[m.faces[:, 0]]) > 0.999).all()
    assert m.labels.dtype == np.int16 and m.labels.min() >= -1 and m.labels.max() < 20
    assert m.colors.dtype == np.uint8 and m.colors.std(axis=0).min() > 10  # not one flat colour


def test_class_colours_differ_and_vary_within_a_class(room):
    m = room.mesh
    means = {c: m.colors[m.labels == c].astype(float).mean(0) for c in np.unique(m.labels)}
    wall, floor = means[0], means[1]
    assert np.abs(wall - floor).max() > 30
    assert m.colors[m.labels == 0].astype(float).std(0).max() > 2  # per-vertex variation


def test_same_seed_gives_byte_identical_rooms_and_views(room):
    again = generate_scene(0, SMALL)
    for name in ("vertices", "faces", "normals", "colors", "labels"):
        assert getattr(room.mesh, name).tobytes() == getattr(again.mesh, name).tobytes(), name
    assert room.cam_to_world.tobytes() == again.cam_to_world.tobytes()
    for a, b in zip(room.colors + room.depths + room.labels, again.colors + again.depths + again.labels):
        assert a.tobytes() == b.tobytes()
    other = generate_scene(4, dataclasses.replace(SMALL, views=1))  # another bedroom
    assert len(other.mesh.vertices) != len(room.mesh.vertices)


def test_cameras_are_scannet_like(room):
    T = room.cam_to_world.astype(np.float64)
    R = T[:, :3, :3]
    np.testing.assert_allclose(R @ R.transpose(0, 2, 1), np.broadcast_to(np.eye(3), R.shape), atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-5)
    size = room.layout.size
    assert ((T[:, 2, 3] >= 1.0) & (T[:, 2, 3] <= 1.8)).all()  # hand-held height
    assert ((T[:, :2, 3] > 0) & (T[:, :2, 3] < size[:2])).all()  # inside the room
    assert (T[:, 2, 2] < 0).all()  # optical axis (camera z) points down
    assert (R[:, 2, 1] < 0).all()  # image "down" (camera y) points down in the world
    K = intrinsics(640, 480)
    fx_fy_cx_cy = K[[0, 1, 0, 1], [0, 1, 2, 2]]
    np.testing.assert_allclose(fx_fy_cx_cy, [577.870605, 577.870605, 319.5, 239.5], rtol=1e-6)
    np.testing.assert_allclose(room.intrinsics[0], intrinsics(160, 120))


def test_views_see_objects(room):
    valid = np.mean([(d > 0).mean() for d in room.depths])
    furniture = np.mean([(lab >= 2).mean() for lab in room.labels])  # not wall, floor, nothing
    assert valid > 0.95
    assert furniture > 0.2
    assert all(len(np.unique(lab[lab >= 0])) >= 2 for lab in room.labels)


def test_rendered_depth_backprojects_onto_the_mesh(room):
    r = MeshRenderer(room.mesh.vertices, room.mesh.faces)
    dist = np.concatenate([
        r.distance(backproject(d.astype(np.float32) / 1000.0, K, T))
        for d, K, T in zip(room.depths, room.intrinsics, room.cam_to_world)
    ])
    assert len(dist) > 0.9 * len(room.depths) * SMALL.width * SMALL.height
    assert np.median(dist) < 1e-3  # uint16 millimetres: half a millimetre of rounding at most along z
    assert np.quantile(dist, 0.99) < 2e-3


def test_view_labels_match_the_labels_of_the_mesh_where_the_pixel_lands(room):
    from scipy.spatial import cKDTree

    tree = cKDTree(room.mesh.vertices)
    d, K, T, lab = room.depths[0], room.intrinsics[0], room.cam_to_world[0], room.labels[0]
    pts = backproject(d.astype(np.float32) / 1000.0, K, T)
    _, nearest = tree.query(pts)
    agree = room.mesh.labels[nearest] == lab[d > 0]
    assert agree.mean() > 0.97  # disagreements only where two surfaces touch


def test_splits_put_the_last_rooms_in_val():
    s = splits_for(SyntheticConfig(scenes=6, seed=3, val_fraction=0.34))
    assert s["val"] == [scene_id(7), scene_id(8)] and len(s["train"]) == 4
    assert splits_for(SyntheticConfig(scenes=2, val_fraction=0.1))["val"] == [scene_id(1)]
    assert splits_for(SyntheticConfig(scenes=3, val_fraction=0.0))["val"] == []


TINY = SyntheticConfig(scenes=2, views=2, width=48, height=36, spacing=0.1, val_fraction=0.5)


def test_prepare_writes_the_store_then_skips_and_redoes(tmp_path):
    out = tmp_path / "syn"
    summary = prepare_synthetic(out, TINY, progress=False)
    assert summary.done == ["room_0000", "room_0001"] and not summary.failed
    store = Store.open(out)
    assert store.classes == list(SCANNET20_CLASSES)
    assert store.splits == {"train": ["room_0000"], "val": ["room_0001"]}
    scene = store.scene("room_0001")
    assert scene.read("coord").dtype == np.float32 and scene.read("faces").dtype == np.int32
    assert scene.read("label").dtype == np.int16 and scene.num_views == 2
    assert scene.read_color(1).shape == (36, 48, 3) and scene.read_depth(0).shape == (36, 48)
    assert scene.meta["source"] == "synthetic" and scene.meta["image_size"] == [48, 36]
    depth_png = scene.path / "views" / "depth" / "000000.png"
    stamp = depth_png.stat().st_mtime_ns

    again = prepare_synthetic(out, TINY, progress=False)
    assert again.skipped == ["room_0000", "room_0001"] and not again.done
    assert depth_png.stat().st_mtime_ns == stamp

    before = depth_png.read_bytes(), scene.read("coord").tobytes()
    redo = prepare_synthetic(out, TINY, overwrite=True, workers=2, progress=False)  # in worker processes
    assert redo.done == ["room_0000", "room_0001"]
    assert depth_png.stat().st_mtime_ns != stamp
    assert (depth_png.read_bytes(), store.scene("room_0001").read("coord").tobytes()) == before
    changed = prepare_synthetic(out, dataclasses.replace(TINY, views=3), progress=False)
    assert changed.done == ["room_0000", "room_0001"] and store.scene("room_0000").num_views == 3
    more = prepare_synthetic(out, dataclasses.replace(TINY, views=3, scenes=3), progress=False)
    assert more.done == ["room_0002"] and more.skipped == ["room_0000", "room_0001"]

    s = dataset_summary(Store.open(out))
    assert s["scenes"] == 3 and s["views"] == 9
    assert s["points"] == sum(store.scene(i).num_points for i in store.scene_ids())
    assert sum(s["classes"].values()) + s["ignored_points"] == s["points"]
    assert sum(1 for n in s["classes"].values() if n) >= 8


def test_a_shard_makes_its_rooms_and_lists_the_whole_dataset(tmp_path):
    summary = prepare_synthetic(tmp_path, dataclasses.replace(TINY, views=1), shard="2/2", progress=False)
    assert summary.done == ["room_0001"]
    store = Store.open(tmp_path)
    assert store.scene_ids() == ["room_0001"] and store.splits["train"] == ["room_0000"]


def test_prepare_refuses_a_folder_holding_another_dataset(tmp_path):
    Store.create(tmp_path, name="scannet", classes=SCANNET20_CLASSES)
    with pytest.raises(HiclrError, match="scannet"):
        prepare_synthetic(tmp_path, TINY, progress=False)
    with pytest.raises(HiclrError, match="spacing"):
        prepare_synthetic(tmp_path / "x", dataclasses.replace(TINY, spacing=0.0), progress=False)


def test_cli_prepares_and_prints_the_summary(tmp_path):
    from click.testing import CliRunner

    from hiclr_cli.main import cli

    args = ["prepare", "synthetic", "--out", str(tmp_path / "d"), "--scenes", "1", "--views", "1",
            "--set", "synthetic.width=32", "--set", "synthetic.height=24", "--set", "synthetic.spacing=0.12"]
    res = CliRunner().invoke(cli, args, obj={})
    assert res.exit_code == 0, res.output
    assert "1 done" in res.output and "dataset 'synthetic': 1 scenes" in res.output and "floor" in res.output
    res = CliRunner().invoke(cli, args, obj={})
    assert "1 skipped" in res.output
    bad = CliRunner().invoke(cli, args[:-1] + ["synthetic.spasing=0.1"], obj={})
    assert bad.exit_code == 1 and "spacing" in bad.output


def test_class_maps():
    assert len(SCANNET20_CLASSES) == 20 and len(NUSCENES16_CLASSES) == 16
    raw = np.array([1, 2, 14, 16, 39, 13, 40, 50, 149, 0, -1, 1000])
    np.testing.assert_array_equal(map_nyu40(raw), [0, 1, 12, 13, 19, -1, -1, -1, -1, -1, -1, -1])
    assert map_nyu40(raw).dtype == np.int16
    lid = np.arange(32)
    out = map_lidarseg(lid)
    assert sorted(set(out[out >= 0])) == list(range(16))
    assert out[2] == out[3] == out[4] == out[6] == NUSCENES16_CLASSES.index("pedestrian")
    assert out[15] == out[16] == NUSCENES16_CLASSES.index("bus") and out[0] == out[31] == -1
    assert len(LIDARSEG_TO_NUSCENES16) == 20
