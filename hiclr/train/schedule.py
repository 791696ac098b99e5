"""Which loss terms are active at an epoch (§3.4), and the cosine learning-rate decay."""

from __future__ import annotations

import math

from hiclr.train.config import TrainConfig


def active_terms(cfg: TrainConfig, epoch: int) -> list[str]:
    """Loss terms on at 1-based ``epoch``, in a fixed order.

    ``ce`` (Eq. 1) from ``ce_from``; ``intra`` / ``inter`` (Eq. 4 on the intra-/inter-scene
    transformer outputs) from ``correlation_from`` when their stage is selected; ``kl`` (Eq. 8) from
    ``kl_from`` with the feedback stage. The training loss is the mean of the active terms."""
    terms: list[str] = []
    if epoch >= cfg.ce_from:
        terms.append("ce")
    if epoch >= cfg.correlation_from:
        if "intrascene" in cfg.stages:
            terms.append("intra")
        if "interscene" in cfg.stages:
            terms.append("inter")
    if epoch >= cfg.kl_from and "feedback" in cfg.stages:
        terms.append("kl")
    return terms


def cosine_lr(base: float, step: int, total: int) -> float:
    """Cosine decay from ``base`` at step 0 to 0 at step ``total`` (0-based optimiser steps)."""
    if total <= 0:
        return base
    t = min(max(step, 0), total) / total
    return base * 0.5 * (1.0 + math.cos(math.pi * t))
