"""A tiny random-initialised open_clip ViT (3.4 M parameters, no download) for the MaskCLIP tests."""

from __future__ import annotations

import pytest
import torch

# ENVIRONMENT.md: a 2-layer, 64-wide ViT-B/16-shaped CLIP; builds in ~0.05 s.
TINY_CFG: dict = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def make_tiny_clip(seed: int = 0) -> torch.nn.Module:
    """A fresh tiny open_clip CLIP in eval mode, with a seeded random init."""
    import open_clip

    torch.manual_seed(seed)
    model = open_clip.CLIP(**TINY_CFG)
    # open_clip leaves the positional embeddings as plain randn·scale; give every parameter some
    # spread so that a wrong reshape or a skipped term cannot hide behind near-zero weights.
    with torch.no_grad():
        for block in model.visual.transformer.resblocks:
            block.attn.in_proj_bias.normal_(0, 0.02)
            block.attn.out_proj.bias.normal_(0, 0.02)
            block.ln_1.weight.normal_(1, 0.1)
            block.ln_2.bias.normal_(0, 0.05)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_cfg() -> dict:
    return TINY_CFG


@pytest.fixture(scope="session")
def tiny_factory():
    """``make_tiny_clip(seed)``: a fresh tiny model."""
    return make_tiny_clip


@pytest.fixture(scope="session")
def tiny_model() -> torch.nn.Module:
    return make_tiny_clip(0)


@pytest.fixture()
def tiny_clip(tiny_model: torch.nn.Module):
    from hiclr.vlm.maskclip import MaskCLIP

    return MaskCLIP(tiny_model, "hiclr-tiny-test", "random:tiny0")


@pytest.fixture(scope="session")
def frames() -> torch.Tensor:
    """Two random uint8 RGB frames (2, 64, 96, 3): a 4×6 patch grid."""
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (2, 64, 96, 3), dtype=torch.uint8, generator=g)
