"""`prepare_nuscenes` on a miniature nuScenes tree written here: the devkit's JSON tables, a LiDAR
``.pcd.bin``, a lidarseg ``.bin`` and six camera JPEGs.

The car moves between the LiDAR sweep and each camera exposure (different ego poses), so the
stored camera poses are right only if the chain goes through each sensor's own ego pose. A red
marker is drawn in CAM_FRONT where the expected chain (built here with the devkit's own
``transform_matrix`` and pyquaternion) sees the marked LiDAR point.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from hiclr.config import NuScenesConfig
from hiclr.datasets.nuscenes import CAMERAS, pose_matrix, prepare_nuscenes
from hiclr.store import Store

try:
    from nuscenes.utils.color_map import get_colormap
    from nuscenes.utils.geometry_utils import transform_matrix
    from pyquaternion import Quaternion
except ImportError:  # only test_missing_devkit_names_the_extra runs
    pytestmark = pytest.mark.skipif(True, reason="nuscenes-devkit is not installed")

VERSION = "v1.0-mini"
W, H = 160, 90
K = [[100.0, 0.0, 80.0], [0.0, 100.0, 45.0], [0.0, 0.0, 1.0]]
CAM_AXES = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], float)  # columns: camera x, y, z in ego (z fwd)
P_EGO = np.array([12.0, 0.5, 1.0])  # the marked point, ego frame at the LiDAR timestamp
RAW_IDS = np.array([17, 2, 5, 31, 30, 15, 16, 24, 0, 9], np.uint8)
RAW_TO_16 = np.array([3, 6, -1, -1, 15, 2, 2, 10, -1, 0])  # by hand from PROTOCOL.md


def yaw(deg: float) -> Quaternion:
    return Quaternion(axis=[0, 0, 1], degrees=deg)


def cam_rotation(k: int) -> Quaternion:
    return yaw(-60 * k) * Quaternion(matrix=CAM_AXES)  # CAM_FRONT looks along ego +x, the rest turn right


LIDAR_CS = {"translation": [0.94, 0.0, 1.84], "rotation": [np.cos(-np.pi / 4), 0.0, 0.0, np.sin(-np.pi / 4)]}  # yaw −90°
EGO_L = {"translation": [100.0, 200.0, 0.0], "rotation": [np.cos(np.pi / 12), 0.0, 0.0, np.sin(np.pi / 12)]}  # yaw 30°


def ego_cam(k: int) -> dict:
    q = yaw(30 + 0.5 * (k + 1))
    return {"translation": list(np.add(EGO_L["translation"], q.rotate([0.4 * (k + 1), 0.0, 0.0]))),
                "rotation": list(q.elements)}


def tm(rec: dict, inverse: bool = False) -> np.ndarray:
    return transform_matrix(rec["translation"], Quaternion(rec["rotation"]), inverse=inverse)


def expected_cam_to_lidar_ego(k: int) -> np.ndarray:
    cs = {"translation": [1.5, 0.0, 1.5], "rotation": list(cam_rotation(k).elements)}
    return tm(EGO_L, inverse=True) @ tm(ego_cam(k)) @ tm(cs)


def points_lidar() -> tuple[np.ndarray, np.ndarray]:
    """Cloud in the LiDAR frame: the marked point, a ground grid, then labels cycle RAW_IDS."""
    gx, gy = np.meshgrid(np.arange(3, 9, 0.5), np.arange(-3, 3, 0.5))
    ego = np.concatenate([P_EGO[None], np.stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)], 1)])
    lid = (ego - LIDAR_CS["translation"]) @ tm(LIDAR_CS)[:3, :3]
    return ego, lid


def build_tree(root) -> dict[str, str]:
    tables: dict[str, list] = {t: [] for t in ("attribute", "visibility", "instance", "sample_annotation")}
    tables["category"] = [{"token": f"cat{i}", "name": n, "description": "", "index": i} for i, n in enumerate(get_colormap())]
    chans = ["LIDAR_TOP", *CAMERAS]
    tables["sensor"] = [{"token": f"sen_{c}", "channel": c, "modality": "lidar" if c == "LIDAR_TOP" else "camera"}
                        for c in chans]
    tables["calibrated_sensor"] = [dict(token="cs_LIDAR_TOP", sensor_token="sen_LIDAR_TOP", camera_intrinsic=[],
                                        **LIDAR_CS)]
    tables["calibrated_sensor"] += [{"token": f"cs_{c}", "sensor_token": f"sen_{c}", "translation": [1.5, 0.0, 1.5],
                                         "rotation": list(cam_rotation(k).elements), "camera_intrinsic": K}
                                    for k, c in enumerate(CAMERAS)]
    tables["log"] = [{"token": "log0", "logfile": "l", "vehicle": "n015", "date_captured": "2018-07-24", "location": "singapore"}]
    tables["map"] = [{"token": "map0", "log_tokens": ["log0"], "category": "semantic_prior", "filename": "maps/m.png"}]
    (root / "maps").mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(root / "maps" / "m.png")
    for t in ("ego_pose", "scene", "sample", "sample_data", "lidarseg"):
        tables[t] = []
    _ego, lid = points_lidar()
    tokens = {}
    for s, name in enumerate(["scene-0061", "scene-0103", "scene-9999"]):  # mini_train, mini_val, no split
        st = f"{s:02d}" + "a" * 30
        tokens[name] = st
        tables["scene"].append({"token": f"scene{s}", "log_token": "log0", "nbr_samples": 1, "first_sample_token": st,
                                    "last_sample_token": st, "name": name, "description": ""})
        tables["sample"].append({"token": st, "timestamp": 1_000_000 * s, "prev": "", "next": "", "scene_token": f"scene{s}"})
        for k, c in enumerate(chans):
            sd, ep = f"sd_{s}_{c}", f"ep_{s}_{c}"
            pose_rec = EGO_L if c == "LIDAR_TOP" else ego_cam(k - 1)
            tables["ego_pose"].append(dict(token=ep, timestamp=1_000_000 * s + 10_000 * k, **pose_rec))
            fname = f"samples/{c}/{s}_{c}." + ("pcd.bin" if c == "LIDAR_TOP" else "jpg")
            tables["sample_data"].append({
                "token": sd, "sample_token": st, "ego_pose_token": ep, "calibrated_sensor_token": f"cs_{c}",
                "timestamp": 1_000_000 * s + 10_000 * k, "fileformat": "pcd" if c == "LIDAR_TOP" else "jpg",
                "is_key_frame": True, "height": 0 if c == "LIDAR_TOP" else H, "width": 0 if c == "LIDAR_TOP" else W,
                "filename": fname, "prev": "", "next": ""})
            (root / "samples" / c).mkdir(parents=True, exist_ok=True)
            if c == "LIDAR_TOP":
                rec = np.zeros((len(lid), 5), np.float32)
                rec[:, :3], rec[:, 3], rec[:, 4] = lid, np.arange(len(lid)) % 256, 7
                rec.tofile(root / fname)
                lfile = f"lidarseg/{VERSION}/{sd}_lidarseg.bin"
                (root / "lidarseg" / VERSION).mkdir(parents=True, exist_ok=True)
                RAW_IDS[np.arange(len(lid)) % len(RAW_IDS)].tofile(root / lfile)
                tables["lidarseg"].append({"token": sd, "sample_data_token": sd, "filename": lfile})
            else:
                Image.fromarray(camera_image(k - 1)).save(root / fname, quality=98)
    (root / VERSION).mkdir()
    for name, rows in tables.items():
        (root / VERSION / f"{name}.json").write_text(json.dumps(rows))
    return tokens


def marker_pixel(k: int) -> tuple[float, float, float]:
    c = np.linalg.inv(expected_cam_to_lidar_ego(k)) @ np.append(P_EGO, 1.0)
    return K[0][0] * c[0] / c[2] + K[0][2], K[1][1] * c[1] / c[2] + K[1][2], c[2]


def camera_image(k: int) -> np.ndarray:
    img = np.full((H, W, 3), 30 * k + 40, np.uint8)
    if k == 0:
        u, v, _ = marker_pixel(0)
        yy, xx = np.mgrid[:H, :W]
        img[(np.abs(xx - u) <= 4) & (np.abs(yy - v) <= 4)] = (230, 20, 20)
    return img


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("nuscenes")
    return root, build_tree(root)


def test_store_contents_and_splits(tree, tmp_path):
    root, tokens = tree
    out = tmp_path / "store"
    s = prepare_nuscenes(root, out, NuScenesConfig(version=VERSION), progress=False)
    assert not s.failed and sorted(s.done) == sorted([tokens["scene-0061"], tokens["scene-0103"]])
    store = Store.open(out)
    assert store.splits == {"train": [tokens["scene-0061"]], "val": [tokens["scene-0103"]]}
    assert store.num_classes == 16
    scene = store.scene(tokens["scene-0061"])
    ego, _lid = points_lidar()
    np.testing.assert_allclose(scene.read("coord"), ego, atol=1e-5)  # LiDAR → ego frame
    np.testing.assert_array_equal(scene.read("intensity"), np.arange(len(ego)) % 256)
    np.testing.assert_array_equal(scene.read("label"), RAW_TO_16[np.arange(len(ego)) % len(RAW_IDS)])
    np.testing.assert_allclose(scene.read("normal")[1:], np.tile([0, 0, 1.0], (len(ego) - 1, 1)), atol=1e-5)
    assert scene.num_views == 6 and not scene.has_depth()
    np.testing.assert_array_equal(scene.intrinsics(), np.repeat(np.float32(K)[None], 6, 0))
    for k in range(6):
        np.testing.assert_allclose(scene.cam_to_world()[k], expected_cam_to_lidar_ego(k), atol=1e-5)
    assert scene.meta["frame"] == "ego vehicle at the LIDAR_TOP timestamp"


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_marked_point_lands_on_marker(tree, tmp_path, scale):
    root, tokens = tree
    out = tmp_path / "store"
    prepare_nuscenes(root, out, NuScenesConfig(version=VERSION, splits=["val"], image_scale=scale), progress=False)
    scene = Store.open(out).scene(tokens["scene-0103"])
    Kst, T = scene.intrinsics()[0].astype(float), scene.cam_to_world()[0].astype(float)
    p = scene.read("coord")[0].astype(float)
    c = (p - T[:3, 3]) @ T[:3, :3]
    u, v = Kst[0, 0] * c[0] / c[2] + Kst[0, 2], Kst[1, 1] * c[1] / c[2] + Kst[1, 2]
    u0, v0, z0 = marker_pixel(0)
    assert abs(c[2] - z0) < 1e-4
    np.testing.assert_allclose([u, v], [scale * (u0 + 0.5) - 0.5, scale * (v0 + 0.5) - 0.5], atol=1e-3)
    img = scene.read_color(0)
    assert img.shape == (round(H * scale), round(W * scale), 3)
    px = img[int(np.floor(v + 0.5)), int(np.floor(u + 0.5))]
    assert px[0] > 150 and px[1] < 90, px
    assert scene.read("color")[0][0] > 150  # the marked point is painted red from CAM_FRONT


def test_resume_and_pose_matrix(tree, tmp_path):
    root, _ = tree
    out = tmp_path / "store"
    cfg = NuScenesConfig(version=VERSION)
    assert len(prepare_nuscenes(root, out, cfg, workers=2, progress=False).done) == 2
    again = prepare_nuscenes(root, out, cfg, progress=False)
    assert len(again.skipped) == 2 and not again.done
    q = Quaternion(axis=[0.3, -1, 2], degrees=37)
    np.testing.assert_allclose(pose_matrix([1, 2, 3], q.elements), transform_matrix([1, 2, 3], q), atol=1e-12)


def test_cli(tree, tmp_path):
    from click.testing import CliRunner

    from hiclr_cli.main import cli

    root, _ = tree
    r = CliRunner().invoke(cli, ["prepare", "nuscenes", "--dataroot", str(root), "--version", VERSION,
                                 "--out", str(tmp_path / "o"), "--splits", "train"], obj={})
    assert r.exit_code == 0, r.output
    assert "1 done, 0 skipped (up to date), 0 failed" in r.output and "1 of 1 prepared samples have lidarseg" in r.output
