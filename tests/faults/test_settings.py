"""Issue 11: recipes and --set values are checked generically (every section name, every number)
before a command touches anything."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faultkit import cli, refused, snapshot, write_ply


@pytest.mark.parametrize("value, says", [(".nan", "finite"), ("inf", "finite"), ("-0.1", "[1e-09, 10.0]"), ("0", "out of range")])
def test_train_refuses_a_non_finite_or_negative_lr(store_copy: Path, tmp_path: Path, value: str, says: str) -> None:
    before = snapshot(store_copy)
    res = cli("train", "--data", store_copy, "--out", tmp_path / "run", "--set", f"train.lr={value}")
    refused(res, "train.lr", says)
    assert not (tmp_path / "run").exists() and snapshot(store_copy) == before


def test_an_out_of_range_setting_names_its_range(store_copy: Path) -> None:
    before = snapshot(store_copy)
    refused(cli("pseudolabel", store_copy, "--labeler", "oracle", "--set", "pseudolabel.noise=1.5"),
            "pseudolabel.noise", "[0.0, 1.0]")
    refused(cli("oversegment", store_copy, "--set", "oversegment.k_thresh=nan"), "oversegment.k_thresh", "finite")
    assert snapshot(store_copy) == before


def test_a_misspelled_recipe_section_is_refused(store_copy: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("trian:\n  epochs: 1\n")
    refused(cli("train", "--data", store_copy, "--out", tmp_path / "run", "--recipe", recipe),
            str(recipe), "'trian'", "did you mean 'train'")
    assert not (tmp_path / "run").exists()


def test_yaml_tags_never_run(store_copy: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"oversegment: !!python/object/apply:os.system ['touch {marker}']\n")
    refused(cli("oversegment", store_copy, "--recipe", recipe), str(recipe), "line 1")
    yaml_path = store_copy / "dataset.yaml"
    yaml_path.write_text(yaml_path.read_text() + f"x: !!python/object/apply:os.system ['touch {marker}']\n")
    refused(cli("evaluate", store_copy), "dataset.yaml")
    assert not marker.exists()


def test_a_yaml_syntax_error_is_one_line_with_its_position(store_copy: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("oversegment:\n  k_thresh: [0.1\n  min_size: 3\n")
    line = refused(cli("oversegment", store_copy, "--recipe", recipe), str(recipe), "line ")
    assert "^" not in line


def test_an_unexpected_error_is_one_line_and_debug_shows_it(store_copy: Path, monkeypatch) -> None:
    import hiclr.store

    def broken(*a, **k):
        raise RuntimeError("something deep\nover two lines")

    monkeypatch.setattr(hiclr.store.Store, "open", broken)
    line = refused(cli("evaluate", store_copy), "RuntimeError: something deep over two lines", "--debug")
    assert "\n" not in line
    res = cli("--debug", "evaluate", store_copy)
    assert isinstance(res.exception, RuntimeError)  # the traceback is one flag away


@pytest.mark.parametrize("name, says", [("cuda", "CUDA is not available"), ("cuda:1", "CUDA is not available"),
                                        ("gpu", "is not a device")])
def test_a_device_that_is_not_here_is_refused_before_any_work(store_copy: Path, tmp_path: Path, model_file: Path,
                                                              name: str, says: str) -> None:
    """The test machine has no CUDA (conftest hides it): every command that takes a device refuses
    it in one line naming the setting, before writing anything."""
    before = snapshot(store_copy)
    refused(cli("train", "--data", store_copy, "--out", tmp_path / "run", "--device", name), "train.device", name, says)
    refused(cli("pseudolabel", store_copy, "--labeler", "oracle", "--device", name), "pseudolabel.device", says)
    refused(cli("evaluate", store_copy, "--model", model_file, "--device", name), "device", says)
    ply = tmp_path / "scan.ply"
    write_ply(ply, np.random.default_rng(0).random((50, 3)))
    refused(cli("predict", ply, "--model", model_file, "--out", tmp_path / "out", "--device", name), "device", says)
    assert not (tmp_path / "run").exists() and not (tmp_path / "out").exists() and snapshot(store_copy) == before


def test_auto_and_cpu_resolve_here() -> None:
    import torch

    from hiclr.device import resolve_device

    assert resolve_device("auto") == torch.device("cpu")  # conftest hides CUDA
    assert resolve_device("cpu") == torch.device("cpu")
