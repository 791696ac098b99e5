import pytest
import yaml

from hiclr.config import (
    OversegmentConfig,
    PseudolabelConfig,
    fingerprint,
    load_section,
    parse_overrides,
    save_config,
)
from hiclr.errors import HiclrError


def test_recipe_then_set_then_cli(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("pseudolabel:\n  noise: 0.2\n  labeler: oracle\n")
    cfg = load_section(PseudolabelConfig, "pseudolabel", recipe, ["pseudolabel.noise=0.3"], clip=None)
    assert cfg.noise == 0.3 and cfg.labeler == "oracle" and cfg.clip == "ViT-B-16"
    cfg = load_section(PseudolabelConfig, "pseudolabel", recipe, ["pseudolabel.noise=0.3"], noise=0.9)
    assert cfg.noise == 0.9


def test_unknown_key_suggests_closest(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("oversegment:\n  k_thres: 0.02\n")
    with pytest.raises(HiclrError) as e:
        load_section(OversegmentConfig, "oversegment", recipe)
    assert "k_thres" in e.value.message and "k_thresh" in e.value.hint


def test_type_errors_are_clear():
    with pytest.raises(HiclrError, match="expected an integer"):
        load_section(OversegmentConfig, "oversegment", None, ["oversegment.min_size=2.5"])
    with pytest.raises(HiclrError, match="key=value"):
        parse_overrides(["oversegment.min_size"])


def test_fingerprint_ignores_runtime_fields():
    a, b = PseudolabelConfig(), PseudolabelConfig(device="cuda", batch_frames=2)
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint(PseudolabelConfig(noise=0.1))


def test_save_config(tmp_path):
    save_config(OversegmentConfig(min_size=5), tmp_path / "c.yaml")
    assert yaml.safe_load((tmp_path / "c.yaml").read_text())["min_size"] == 5
