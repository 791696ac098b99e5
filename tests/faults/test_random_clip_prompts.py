"""Issue 22: ``predict --prompts`` on a model trained on labels of random CLIP weights (pseudolabel
``--clip-weights random``): the same seeded random text tower is used by default, and
``--clip-weights random`` is accepted as pseudolabel accepts it; both warn that such labels mean
nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from faultkit import CLASSES, cli, write_ply

TINY = "hiclr-tiny-prompts"
TINY_CFG = {"embed_dim": 16,
            "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


@pytest.fixture(scope="module")
def random_clip_model(tmp_path_factory) -> Path:
    import open_clip

    from hiclr.model_file import ModelFile, save_model
    from hiclr.nn import PointNetwork
    from hiclr.vlm.maskclip import load_clip

    folder = tmp_path_factory.mktemp("tiny_clip")
    (folder / f"{TINY}.json").write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(folder / f"{TINY}.json")
    _, wid = load_clip(TINY, None)  # what pseudolabel --clip-weights random records
    torch.manual_seed(0)
    net = PointNetwork("MinkUNet14A", in_channels=3, out_channels=16, voxel_size=0.2, backend="torch")
    text = torch.nn.functional.normalize(torch.randn(len(CLASSES), 16), dim=1)
    return save_model(folder / "model.pt", ModelFile(net.state_dict(), net.arch_config() | {"backend": "auto"}, CLASSES,
                                                     text, clip_model=TINY, clip_weights=None, anchors="clip",
                                                     extra={"clip_weights_id": wid}))


@pytest.mark.parametrize("given", [[], ["--clip-weights", "random"]])
def test_prompts_on_a_random_clip_model(tmp_path: Path, random_clip_model: Path, given: list[str]) -> None:
    import numpy as np

    write_ply(tmp_path / "cloud.ply", np.random.default_rng(0).uniform(0, 2, (200, 3)))
    (tmp_path / "prompts.txt").write_text("lamp\nrug\n")
    res = cli("predict", tmp_path / "cloud.ply", "--model", random_clip_model, "--prompts", tmp_path / "prompts.txt",
              "--out", tmp_path / "out", *given)
    assert res.exit_code == 0, res.output + res.stderr
    assert "randomly initialised CLIP weights" in res.stderr and "error" not in res.stderr
    assert [e["name"] for e in json.loads(next((tmp_path / "out").glob("legend.json")).read_text())] == ["lamp", "rug"]
