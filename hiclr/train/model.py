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

    def __init__(self, net: nn.Module, text: Tensor, cfg: TrainConfig, class_weight: Tensor | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.net = net
        width = int(text.shape[1])
        tf = {"width": width, "layers": cfg.transformer_layers, "heads": cfg.transformer_heads, "mlp_ratio": cfg.transformer_mlp_ratio,
              "attn_init": cfg.transformer_attn_init}
        self.intra = CorrelationTransformer(scope="intra", **tf) if "intrascene" in cfg.stages else None
        self.inter = CorrelationTransformer(scope="inter", **tf) if "interscene" in cfg.stages else None
        self.register_buffer("text", text.float(), persistent=False)
        # per-class weights of L_ce and L̂_ce (train.class_balance), from the pseudo-label frequencies; None = unweighted
        self.register_buffer("class_weight", class_weight.float() if class_weight is not None else None, persistent=False)
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
            out["ce"] = pair_ce_loss(rows, text, pair_row, pair_label, tau, cfg.normalize, self.class_weight)
        if {"intra", "inter", "kl"} & set(terms):
            f = rows[index[torch.cat([b.sample.to(dev) + o for b, o in zip(batch, offsets)])]]  # (L, d) sampled, all scenes
            scene = torch.cat([torch.full((len(b.sample),), i, dtype=torch.long, device=dev) for i, b in enumerate(batch)])
            label = torch.cat([b.sample_label.to(dev) for b in batch])
            agg = f.detach() if cfg.transformer_detach else f
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                agg = self._transformers(agg, scene, label, terms, out)
            if "kl" in terms:
                # train.kl_temperature, else ψ's τ, detached: L_kl must not train the scale
                kl_tau = cfg.kl_temperature or (tau.detach() if isinstance(tau, Tensor) else tau)
                out["kl"] = feedback_kl_loss(f, agg.float(), cfg.kl_over, text, kl_tau, cfg.normalize)
        return out

    def _transformers(self, agg: Tensor, scene: Tensor, label: Tensor, terms: list[str], out: dict[str, Tensor]) -> Tensor:
        """Intra-scene then inter-scene aggregation of the sampled features; adds their L̂_ce to ``out``."""
        cfg, text, tau = self.cfg, self.text, self.tau()
        if self.intra is not None:
            agg = self.intra(agg, scene)  # Eq. 3, per scene
            if "intra" in terms:
                out["intra"] = correlation_ce_loss(agg, text, label, tau, cfg.normalize, self.class_weight)
        if self.inter is not None:
            agg = self.inter(agg, scene)  # Eq. 7, across the batch's scenes
            if "inter" in terms:
                out["inter"] = correlation_ce_loss(agg, text, label, tau, cfg.normalize, self.class_weight)
        return agg


def cpu_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX tiles).

    oneDNN also reports bf16 "supported" on AVX512 CPUs without either, where it converts to fp32
    and back: there a training step in bf16 is slower than in fp32 (2.3x to 11.7x measured, README), so hiclr
    uses bf16 on CPU only where this is True."""
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    try:
        return any(bool(f()) for f in checks if f is not None)
    except (RuntimeError, AttributeError):  # a torch built without these probes
        return False


def use_amp(cfg_amp: bool, device: torch.device) -> bool:
    """``train.amp`` resolved for ``device``: bf16 autocast on CUDA and on CPUs with native bf16
    (the whole step: network, transformers; losses, master weights and optimiser state stay fp32);
    fp32 wherever bf16 would be emulated."""
    if not cfg_amp:
        return False
    return device.type == "cuda" or (device.type == "cpu" and cpu_native_bf16())


def network_supports_amp(net: nn.Module, device: torch.device) -> bool:
    """Whether the 3D network may run under bf16 autocast on ``device``.

    CUDA: every backend (the ``torch`` backend's convolution sums its kernel offsets in float32 under
    autocast; tests/nn/test_amp.py). CPU: the ``torch`` backend where the CPU has native bf16
    (:func:`cpu_native_bf16`; MinkUNet14A forward+backward 0.53x the fp32 time there,
    benchmarks/profile_torch_conv.py); elsewhere bf16 is emulated and slower."""
    from hiclr.nn.sparse.backends import resolve_backend

    backend = resolve_backend(str(getattr(net, "backend", "auto")), device.type)
    if device.type == "cuda":
        return True
    if device.type != "cpu" or backend != "torch":
        return False
    return cpu_native_bf16()


def build_network(cfg: TrainConfig, out_channels: int) -> nn.Module:
    """The 3D network of the recipe (``hiclr.nn.PointNetwork``)."""
    from hiclr.nn import PointNetwork

    return PointNetwork(arch=cfg.arch, in_channels=cfg.in_channels, out_channels=out_channels,
                        voxel_size=cfg.voxel_size, backend=cfg.backend)


def mean_of_terms(losses: dict[str, Any]) -> Tensor:
    """§3.4: the training loss is the average of the active terms."""
    vals = list(losses.values())
    return torch.stack([v.float() for v in vals]).mean()


def combine_terms(losses: dict[str, Any], cfg: TrainConfig) -> Tensor:
    """The training loss from the active terms, as ``train.combine`` says.

    ``mean`` (the paper, §3.4): the average of the active terms, so L_ce weighs 1/4 once all four
    are on. ``weighted``: L_ce + corr_weight·(L̂_intra + L̂_inter) + kl_weight·L_kl (L_ce keeps
    weight 1 whatever else is on; corr_weight = kl_weight = 1 is the plain sum)."""
    if cfg.combine == "mean":
        return mean_of_terms(losses)
    weight = {"ce": 1.0, "intra": cfg.corr_weight, "inter": cfg.corr_weight, "kl": cfg.kl_weight}
    return torch.stack([v.float() * weight[k] for k, v in losses.items()]).sum()
