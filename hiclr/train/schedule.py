"""When each loss term is on (§3.4), and the cosine learning-rate decay, both per optimiser step.

The paper switches L_ce on at epoch 1, the transformer losses at 11 and L_kl at 21 of 120 epochs.
``train.schedule: epochs`` reads ``ce_from`` / ``correlation_from`` / ``kl_from`` as such 1-based
epochs; ``fraction`` reads them as shares of the run's optimiser steps (the paper's proportions are
0 / 0.083 / 0.167), so a short run keeps the paper's shape. Either way the switches are turned into
step indices once, and the cosine decay runs over the same steps.
"""

from __future__ import annotations

import math

from hiclr.train.config import TrainConfig


def switch_steps(cfg: TrainConfig, steps_per_epoch: int, total_steps: int) -> dict[str, int]:
    """0-based optimiser step at which each switch (ce, correlation, kl) turns on."""
    froms = {"ce": cfg.ce_from, "correlation": cfg.correlation_from, "kl": cfg.kl_from}
    if cfg.schedule == "fraction":
        return {k: math.ceil(v * total_steps - 1e-9) for k, v in froms.items()}
    return {k: (int(v) - 1) * steps_per_epoch for k, v in froms.items()}


def active_terms(cfg: TrainConfig, step: int, switches: dict[str, int]) -> list[str]:
    """Loss terms on at 0-based optimiser ``step``, in a fixed order.

    ``ce`` (Eq. 1); ``intra`` / ``inter`` (Eq. 4 on the intra-/inter-scene transformer outputs)
    when their stage is selected; ``kl`` (Eq. 8) with the feedback stage. The training loss is the
    mean of the active terms."""
    terms: list[str] = []
    if step >= switches["ce"]:
        terms.append("ce")
    if step >= switches["correlation"]:
        if "intrascene" in cfg.stages:
            terms.append("intra")
        if "interscene" in cfg.stages:
            terms.append("inter")
    if step >= switches["kl"] and "feedback" in cfg.stages:
        terms.append("kl")
    return terms


def epoch_terms(cfg: TrainConfig, epoch: int) -> list[str]:
    """Terms on at the first step of 1-based ``epoch`` with one step per epoch (a readable summary)."""
    return active_terms(cfg, epoch - 1, switch_steps(cfg, 1, cfg.epochs))


def cosine_lr(base: float, step: int, total: int) -> float:
    """Cosine decay from ``base`` at step 0 to 0 at step ``total`` (0-based optimiser steps)."""
    if total <= 0:
        return base
    t = min(max(step, 0), total) / total
    return base * 0.5 * (1.0 + math.cos(math.pi * t))


def warmup_cosine_lr(base: float, step: int, total: int, warmup: float) -> float:
    """A linear warm-up over the first ``warmup`` share of ``total`` steps (from base/W to base
    at step W-1), then :func:`cosine_lr` over the remaining steps; ``warmup`` 0 is plain cosine."""
    w = math.ceil(warmup * total - 1e-9) if total > 0 else 0
    if w <= 0:
        return cosine_lr(base, step, total)
    if step < w:
        return base * (step + 1) / w
    return cosine_lr(base, step - w, total - w)


def extended_schedule(cfg: TrainConfig, done: int, epochs: int) -> dict[str, float]:
    """Settings that continue a run finished at epoch ``done`` for ``epochs`` more with L_kl on.

    The switches already passed stay at the same optimiser steps; L_kl turns on at the first new
    epoch at the latest. Returns the changed fields (``epochs`` and the ``*_from`` values)."""
    total = done + epochs
    if cfg.schedule == "fraction":
        scale = cfg.epochs / total  # same steps per epoch, so the same step index
        return {"epochs": total, "ce_from": cfg.ce_from * scale, "correlation_from": cfg.correlation_from * scale,
                "kl_from": min(cfg.kl_from * scale, done / total)}
    return {"epochs": total, "kl_from": min(cfg.kl_from, done + 1)}
