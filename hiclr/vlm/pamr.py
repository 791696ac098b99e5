"""PAMR, pixel-adaptive mask refinement (Araslanov & Roth, CVPR 2020), as NACLIP uses it on its logits.

Follows ``sinahmr/NACLIP`` ``pamr.py`` (itself ``visinf/1-stage-wseg`` ``models/mods/pamr.py``):

- neighbours: for each dilation d, the 8 pixels at offsets d·(dy, dx), dy, dx ∈ {-1, 0, 1}, not
  (0, 0); borders replicate (``F.pad(mode='replicate')``);
- affinity of pixel i to its neighbour j: ``a_ij = -|I_i - I_j| / (1e-8 + 0.1·σ_i)`` per colour
  channel, with σ_i the (unbiased) standard deviation of the channel over the 9 positions of every
  dilation together (centre counted once per dilation, ``LocalStDev``), then averaged over the
  channels and passed through a softmax over the neighbours j;
- each step replaces every pixel's mask by the affinity-weighted mean of its neighbours' masks
  (the pixel itself is not among them): ``m_i ← Σ_j softmax(a_i)_j m_j``.

NACLIP runs 10 steps with dilations (8, 16) on the (normalised) image at the output size, on the
cosine logits before ×logit_scale. The affinity divides each channel's differences by that
channel's local spread, so any per-channel affine colour normalisation gives the same weights;
we pass 0–255 RGB. Departure: neighbours are shifted one at a time instead of being stacked into a
(B, C, 8·len(d), H, W) tensor, which bounds memory at (B, C, H, W) per step; the sums are the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["PAMR_DILATIONS", "PAMR_STEPS", "pamr"]

PAMR_STEPS = 10  # NACLIP's default when PAMR is on
PAMR_DILATIONS = (8, 16)  # NACLIP's pamr_stride
_OFFSETS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0))


def _shifted(x: torch.Tensor, d: int) -> list[torch.Tensor]:
    """The 8 neighbours of every pixel at dilation d, borders replicated: 8 × (B, K, H, W)."""
    H, W = x.shape[-2:]
    p = F.pad(x, [d] * 4, mode="replicate")
    return [p[..., d + dy * d : d + dy * d + H, d + dx * d : d + dx * d + W] for dy, dx in _OFFSETS]


def pamr(
    image: torch.Tensor,
    mask: torch.Tensor,
    steps: int = PAMR_STEPS,
    dilations: Sequence[int] = PAMR_DILATIONS,
) -> torch.Tensor:
    """Refine per-pixel class scores along colour edges.

    Args:
        image: (B, K, H, W) float image (any per-channel scale: see the module docstring).
        mask: (B, C, h, w) class logits or probabilities; resized bilinearly (``align_corners=True``,
            as the reference) to (H, W) when its size differs.
        steps: refinement iterations (0 returns the resized mask).
        dilations: neighbour distances in pixels.

    Returns:
        (B, C, H, W) float32: every step a convex combination of neighbouring values, so class
        probabilities stay probabilities.
    """
    image, mask = image.float(), mask.float()
    if tuple(mask.shape[-2:]) != tuple(image.shape[-2:]):
        mask = F.interpolate(mask, size=image.shape[-2:], mode="bilinear", align_corners=True)
    if steps <= 0:
        return mask
    neighbours = [n for d in dilations for n in _shifted(image, d)]  # P × (B, K, H, W)
    window = torch.stack([image] * len(dilations) + neighbours, dim=2)  # (B, K, 9·|d|, H, W)
    spread = window.std(dim=2)  # (B, K, H, W), unbiased as torch.std
    logits = torch.stack([-(image - n).abs() / (1e-8 + 0.1 * spread) for n in neighbours], dim=2)
    weight = torch.softmax(logits.mean(dim=1), dim=1)  # (B, P, H, W): mean over colour channels
    del window, logits, neighbours
    for _ in range(steps):
        out = torch.zeros_like(mask)
        p = 0
        for d in dilations:
            for n in _shifted(mask, d):
                out += n * weight[:, p : p + 1]
                p += 1
        mask = out
    return mask
