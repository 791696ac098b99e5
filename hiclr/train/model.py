"""The trained system: the 3D network, the two correlation transformers, and the loss terms.

One ``nn.Module`` holds everything that has parameters, so one DDP wrapper covers it and its
``forward`` returns the loss terms (§3.1–3.4). Hierarchy (Fig. 2): the sampled point features go
through the intra-scene transformer, its outputs through the inter-scene transformer; each output
is scored with L̂_ce (Eq. 4), and the last one is the feedback target of L_kl (Eq. 8).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from hiclr.losses import correlation_ce_loss, feedback_kl_loss, pair_ce_loss
from hiclr.nn.correlation import CorrelationTransformer
from hiclr.train.config import TrainConfig
from hiclr.train.data import SceneItem


class HiclModel(nn.Module):
    """``net`` (the 3D network kept for inference) + ``intra`` / ``inter`` transformers (training only).

    ``text`` (C, d): the frozen class anchors T̂_c, a non-persistent buffer (saved apart)."""

    def __init__(self, net: nn.Module, text: Tensor, cfg: TrainConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.net = net
        width = int(text.shape[1])
        tf = dict(width=width, layers=cfg.transformer_layers, heads=cfg.transformer_heads, mlp_ratio=cfg.transformer_mlp_ratio)
        self.intra = CorrelationTransformer(scope="intra", **tf) if "intrascene" in cfg.stages else None
        self.inter = CorrelationTransformer(scope="inter", **tf) if "interscene" in cfg.stages else None
        self.register_buffer("text", text.float(), persistent=False)

    def transformer_parameters(self) -> list[nn.Parameter]:
        return [p for m in (self.intra, self.inter) if m is not None for p in m.parameters()]

    def forward(self, batch: list[SceneItem], terms: list[str]) -> dict[str, Tensor]:
        """Loss terms named in ``terms`` (subset of ce, intra, inter, kl) for a batch of scenes."""
        cfg, text = self.cfg, self.text
        dev = text.device
        feats = self.net([b.coord.to(dev) for b in batch], [b.feats.to(dev) for b in batch])  # B × (N_i, d)
        out: dict[str, Tensor] = {}
        if "ce" in terms:
            offsets = torch.cumsum(torch.tensor([0] + [f.shape[0] for f in feats[:-1]], device=dev), 0)
            pair_point = torch.cat([b.pair_point.to(dev) + o for b, o in zip(batch, offsets)])
            pair_label = torch.cat([b.pair_label.to(dev) for b in batch])
            out["ce"] = pair_ce_loss(torch.cat(feats), text, pair_point, pair_label, cfg.temperature, cfg.normalize)
        if {"intra", "inter", "kl"} & set(terms):
            f = torch.cat([fi[b.sample.to(dev)] for fi, b in zip(feats, batch)])  # (L, d) sampled features, all scenes
            scene = torch.cat([torch.full((len(b.sample),), i, dtype=torch.long, device=dev) for i, b in enumerate(batch)])
            label = torch.cat([b.sample_label.to(dev) for b in batch])
            agg = f
            if self.intra is not None:
                agg = self.intra(agg.float(), scene)  # Eq. 3, per scene
                if "intra" in terms:
                    out["intra"] = correlation_ce_loss(agg, text, label, cfg.temperature, cfg.normalize)
            if self.inter is not None:
                agg = self.inter(agg.float(), scene)  # Eq. 7, across the batch's scenes
                if "inter" in terms:
                    out["inter"] = correlation_ce_loss(agg, text, label, cfg.temperature, cfg.normalize)
            if "kl" in terms:
                out["kl"] = feedback_kl_loss(f, agg, cfg.kl_over, text, cfg.temperature, cfg.normalize)
        return out


def build_network(cfg: TrainConfig, out_channels: int) -> nn.Module:
    """The 3D network of the recipe (``hiclr.nn.PointNetwork``)."""
    from hiclr.nn import PointNetwork

    return PointNetwork(arch=cfg.arch, in_channels=cfg.in_channels, out_channels=out_channels,
                        voxel_size=cfg.voxel_size, backend=cfg.backend)


def mean_of_terms(losses: dict[str, Any]) -> Tensor:
    """§3.4: the training loss is the average of the active terms."""
    vals = list(losses.values())
    return torch.stack([v.float() for v in vals]).mean()
