"""An exponential moving average of the 3D network's weights (``train.ema``), the model that is
validated and exported when it is on.

After every optimiser step t (0-based, counted over the whole run) each parameter and floating
buffer (BatchNorm statistics) of the average moves towards the network's:
``ema ← ema + (1 − d_t)·(w − ema)`` with ``d_t = min(d, (1 + t) / (10 + t))``, so early in a short
run the average follows the network closely and later it averages over ~1/(1 − d) steps. Integer
buffers (BatchNorm's step counter) are copied. A noisy SGD run at a few hundred steps (batch 2)
swings by several mIoU points from one validation to the next; the average does not.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_decay(decay: float, step: int) -> float:
    """The decay used after 0-based optimiser step ``step``: min(decay, (1 + step) / (10 + step))."""
    return min(decay, (1.0 + step) / (10.0 + step))


class WeightAverage:
    """The moving average of ``net`` (a frozen copy in eval mode); ``update(net, step)`` after each step."""

    def __init__(self, net: nn.Module, decay: float) -> None:
        self.decay = decay
        self.net = copy.deepcopy(net).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, net: nn.Module, step: int) -> None:
        d = ema_decay(self.decay, step)
        avg = dict(self.net.state_dict(keep_vars=True))
        cur = net.state_dict(keep_vars=True)
        floats_avg = [avg[k] for k, v in cur.items() if v.is_floating_point()]
        floats_cur = [v.detach() for k, v in cur.items() if v.is_floating_point()]
        torch._foreach_lerp_(floats_avg, floats_cur, 1.0 - d)
        for k, v in cur.items():
            if not v.is_floating_point():
                avg[k].copy_(v)
