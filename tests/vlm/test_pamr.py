"""PAMR: blocky labels snap to colour edges; one step by hand on a flat image."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hiclr.vlm.pamr import pamr


def _two_region_image(h: int = 64, w: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A dark and a light region split by the slanted line y = 0.45·x + 18, with a little noise."""
    y, x = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    truth = (y > 0.45 * x + 18).long()  # (H, W) 0 above the line, 1 below
    colours = torch.tensor([[40.0, 60.0, 200.0], [220.0, 180.0, 30.0]])
    g = torch.Generator().manual_seed(seed)
    image = colours[truth].permute(2, 0, 1)[None] + 4.0 * torch.randn(1, 3, h, w, generator=g)
    return image, truth


def _blocky(truth: torch.Tensor, block: int = 16) -> torch.Tensor:
    """Majority label per block × block square, upsampled by repetition (a ViT-B/16 patch grid)."""
    share = F.avg_pool2d(truth[None, None].float(), block)  # (1, 1, H/b, W/b) share of class 1
    return (share > 0.5).long().repeat_interleave(block, 2).repeat_interleave(block, 3)[0, 0]


def test_blocky_labels_snap_to_the_colour_edge():
    image, truth = _two_region_image()
    blocky = _blocky(truth)
    probs = F.one_hot(blocky, 2).permute(2, 0, 1)[None].float()  # (1, 2, H, W)
    before = (blocky == truth).float().mean().item()
    out = pamr(image, probs)  # NACLIP's 10 steps at dilations (8, 16)
    after = (out[0].argmax(0) == truth).float().mean().item()
    assert before < 0.94  # the 16-px blocks cut across the slanted edge
    assert after > 0.99, (before, after)
    torch.testing.assert_close(out.sum(1), torch.ones(1, 64, 64))  # probabilities stay probabilities
    # Without the colour edge (a flat image) the same steps only blur the blocks: no snapping.
    flat = pamr(torch.full_like(image, 128.0), probs)
    assert (flat[0].argmax(0) == truth).float().mean().item() < after - 0.03


def test_one_step_on_a_flat_image_by_hand():
    """On a flat image every neighbour weighs 1/8 (one dilation): a delta spreads to its 8
    neighbours and leaves its own pixel empty (the pixel is not among its neighbours)."""
    mask = torch.zeros(1, 1, 9, 9)
    mask[0, 0, 4, 4] = 1.0
    out = pamr(torch.zeros(1, 3, 9, 9), mask, steps=1, dilations=(2,))[0, 0]
    expected = torch.zeros(9, 9)
    for dy in (-2, 0, 2):
        for dx in (-2, 0, 2):
            if dy or dx:
                expected[4 + dy, 4 + dx] = 1 / 8
    torch.testing.assert_close(out, expected)
    assert pamr(torch.zeros(1, 3, 9, 9), mask, steps=0).equal(mask)


def test_affinity_weights_across_an_edge_by_hand():
    """Pixel (2, 2) of a vertical edge (columns 0–1 dark = 0, 2–4 light = 10), dilation 1: its 9
    values are three 0s and six 10s, std (n − 1) = 5, so a neighbour across the edge has logit
    −10 / (0.1·5) = −20 and the 5 on its own side 0. One step moves a delta at a neighbour to
    the centre with exactly that neighbour's weight."""
    image = torch.full((1, 3, 5, 5), 10.0)
    image[..., :2] = 0.0
    z = 5 + 3 * math.exp(-20)

    def weight_of(y: int, x: int) -> float:
        mask = torch.zeros(1, 1, 5, 5)
        mask[0, 0, y, x] = 1.0
        return pamr(image, mask, steps=1, dilations=(1,))[0, 0, 2, 2].item()

    assert weight_of(2, 3) == pytest.approx(1 / z, rel=1e-5)
    assert weight_of(1, 2) == pytest.approx(1 / z, rel=1e-5)
    assert weight_of(2, 1) == pytest.approx(math.exp(-20) / z, rel=1e-3)
    assert weight_of(2, 2) == 0.0  # the pixel itself is not its own neighbour
