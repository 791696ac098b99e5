"""The trained system: the 3D network, the two correlation transformers, and the loss terms.

One ``nn.Module`` holds everything that has parameters, so one DDP wrapper covers it and its
``forward`` returns the loss terms (§3.1–3.4). Hierarchy (Fig. 2): the sampled point features go
through the intra-scene transformer, its outputs through the inter-scene transformer; each output
is scored with L̂_ce (Eq. 4), and the last one is the feedback target of L_kl (Eq. 8).
"""

from __future__ import annotations

import math
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
        tf = {"width": width, "layers": cfg.transformer_layers, "heads": cfg.transformer_heads, "mlp_ratio": cfg.transformer_mlp_ratio}
        self.intra = CorrelationTransformer(scope="intra", **tf) if "intrascene" in cfg.stages else None
        self.inter = CorrelationTransformer(scope="inter", **tf) if "interscene" in cfg.stages else None
        self.register_buffer("text", text.float(), persistent=False)
        # CLIP's learnable logit scale, log(1/τ), when train.logits = learnable (clamped to ≤ 100 in use)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.tau))) if cfg.logits == "learnable" else None

    def tau(self) -> Tensor | float:
        """The temperature τ of ψ: fixed, or 1 / exp(logit_scale) (scale ≤ 100, as CLIP) when learnable."""
        if self.logit_scale is None:
            return self.cfg.tau
        return torch.exp(-self.logit_scale.clamp(max=math.log(100.0)))

    def transformer_parameters(self) -> list[nn.Parameter]:
        return [p for m in (self.intra, self.inter) if m is not None for p in m.parameters()]

    def forward(self, batch: list[SceneItem], terms: list[str], amp: bool = False) -> dict[str, Tensor]:
        """Loss terms named in ``terms`` (subset of ce, intra, inter, kl) for a batch of scenes.

        ``amp``: bf16 autocast on the model's device for the transformers, and for the 3D network
        when :func:`network_supports_amp`. Losses are computed in float32."""
        cfg, text, tau = self.cfg, self.text, self.tau()
        dev = text.device
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp and network_supports_amp(self.net, dev)):
            # rows (R, d): the distinct features (one per voxel for the MinkUNets); index (N,) row per point
            rows, index, sizes = self.net.forward_rows([b.coord.to(dev) for b in batch], [b.feats.to(dev) for b in batch])
        rows = rows.float()
        offsets = [0, *torch.cumsum(torch.tensor(sizes[:-1], dtype=torch.long), 0).tolist()]
        out: dict[str, Tensor] = {}
        if "ce" in terms:
            # a pair's logits are its point's row's logits: computed once per row, gathered per pair
            pair_row = index[torch.cat([b.pair_point.to(dev) + o for b, o in zip(batch, offsets)])]
            pair_label = torch.cat([b.pair_label.to(dev) for b in batch])
            out["ce"] = pair_ce_loss(rows, text, pair_row, pair_label, tau, cfg.normalize)
        if {"intra", "inter", "kl"} & set(terms):
            f = rows[index[torch.cat([b.sample.to(dev) + o for b, o in zip(batch, offsets)])]]  # (L, d) sampled, all scenes
            scene = torch.cat([torch.full((len(b.sample),), i, dtype=torch.long, device=dev) for i, b in enumerate(batch)])
            label = torch.cat([b.sample_label.to(dev) for b in batch])
            agg = f
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                agg = self._transformers(agg, scene, label, terms, out)
            if "kl" in terms:
                kl_tau = tau.detach() if isinstance(tau, Tensor) else tau  # L_kl must not train the scale
                out["kl"] = feedback_kl_loss(f, agg.float(), cfg.kl_over, text, kl_tau, cfg.normalize)
        return out

    def _transformers(self, agg: Tensor, scene: Tensor, label: Tensor, terms: list[str], out: dict[str, Tensor]) -> Tensor:
        """Intra-scene then inter-scene aggregation of the sampled features; adds their L̂_ce to ``out``."""
        cfg, text, tau = self.cfg, self.text, self.tau()
        if self.intra is not None:
            agg = self.intra(agg, scene)  # Eq. 3, per scene
            if "intra" in terms:
                out["intra"] = correlation_ce_loss(agg, text, label, tau, cfg.normalize)
        if self.inter is not None:
            agg = self.inter(agg, scene)  # Eq. 7, across the batch's scenes
            if "inter" in terms:
                out["inter"] = correlation_ce_loss(agg, text, label, tau, cfg.normalize)
        return agg


def network_supports_amp(net: nn.Module, device: torch.device) -> bool:
    """Whether the 3D network may run under bf16 autocast on ``device``.

    CUDA: every backend (the ``torch`` backend's convolution sums its kernel offsets in float32 under
    autocast; tests/nn/test_amp.py). CPU: the ``torch`` backend where the CPU has native bf16
    (AVX512-BF16/AMX; MinkUNet14A forward+backward 0.77x the fp32 time, benchmarks/bench_backbone.py);
    elsewhere bf16 is emulated and slower."""
    from hiclr.nn.sparse.backends import resolve_backend

    backend = resolve_backend(str(getattr(net, "backend", "auto")), device.type)
    if device.type == "cuda":
        return True
    if device.type != "cpu" or backend != "torch":
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch built without oneDNN
        return False


def build_network(cfg: TrainConfig, out_channels: int) -> nn.Module:
    """The 3D network of the recipe (``hiclr.nn.PointNetwork``)."""
    from hiclr.nn import PointNetwork

    return PointNetwork(arch=cfg.arch, in_channels=cfg.in_channels, out_channels=out_channels,
                        voxel_size=cfg.voxel_size, backend=cfg.backend)


def mean_of_terms(losses: dict[str, Any]) -> Tensor:
    """§3.4: the training loss is the average of the active terms."""
    vals = list(losses.values())
    return torch.stack([v.float() for v in vals]).mean()
