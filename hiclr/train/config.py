"""`hiclr train` settings: the ``train:`` section of a recipe (defaults = the paper's ScanNet run).

Read with ``hiclr.config.load_section(TrainConfig, "train", recipe, overrides)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from hiclr.errors import HiclrError

STAGES = ("intraset", "intrascene", "interscene", "feedback")
LOGITS = ("cosine", "learnable", "inner")

# Table 2 of the paper, EXP I–V, as --stages values.
TABLE2: dict[str, list[str]] = {
    "I": [],
    "II": ["intraset"],
    "III": ["intraset", "intrascene"],
    "IV": ["intraset", "intrascene", "interscene"],
    "V": ["intraset", "intrascene", "interscene", "feedback"],
}


@dataclass
class TrainConfig:
    """Hierarchical intra-modal correlation learning (paper §3, §4.1)."""

    # numeric ranges checked when a recipe or --set is read (hiclr.config.from_dict); the rest are ≥ 0
    RANGES: ClassVar[dict[str, tuple[float | None, float | None]]] = {
        "voxel_size": (1e-3, 10.0), "lr": (1e-9, 10.0), "momentum": (0.0, 1.0), "transformer_lr": (0.0, 1.0),
        "temperature": (1e-4, 100.0), "kl_temperature": (0.0, 100.0), "class_balance": (0.0, 2.0), "warmup": (0.0, 0.5), "ema": (0.0, 0.9999),
        "transformer_mlp_ratio": (0.1, 64.0), "transformer_layers": (1, None), "transformer_heads": (1, None),
        "samples": (1, None), "batch_size": (1, None), "epochs": (1, None)}

    # what is trained
    stages: list[str] = field(default_factory=lambda: list(STAGES))  # subset of STAGES; [] = baseline (EXP I)
    arch: str = "MinkUNet14A"  # MinkUNet14A (ScanNet) | SPVCNN (nuScenes)
    voxel_size: float = 0.05  # metres
    backend: str = "auto"  # sparse convolution backend (see hiclr.nn)
    input: str = "color"  # network input per point: color (RGB in [-1,1]) | color_normal (+ unit normal)
    # the loss
    logits: str = "cosine"  # ψ: cosine ⟨f/‖f‖, T̂⟩/τ | learnable (cosine, CLIP's learnable scale 1/τ) | inner (raw ⟨f, T̂⟩)
    temperature: float = 0.07  # τ for cosine; the initial τ for learnable; inner uses τ = 1 (the paper's ψ)
    logit_scale_lr: float = 0.01  # learnable: Adam lr of log(1/τ) (clamped to ≤ log 100, as CLIP)
    grad_clip: float = 0.0  # max global grad norm of the 3D network (0 = off; the paper's inner product needs it)
    class_balance: float = 0.0  # weight pairs of class c by f_c^-p, f_c its share of the training pseudo-labels (0 = off, 0.5 = 1/sqrt, 1 = inverse)
    combine: str = "mean"  # the loss: mean of the active terms (the paper, §3.4) | weighted: L_ce + corr_weight·(L̂_intra + L̂_inter) + kl_weight·L_kl
    corr_weight: float = 1.0  # combine=weighted: weight of each transformer's L̂_ce
    kl_weight: float = 1.0  # combine=weighted: weight of L_kl
    kl_over: str = "feature"  # L_kl distributions: feature (softmax over channels, literal Eq. 8) | logits
    kl_temperature: float = 0.0  # τ of L_kl's two softmaxes (0 = ψ's τ, train.temperature)
    transformer_detach: bool = False  # probe: the transformers read detached 3D features (L̂_ce trains only them)
    samples: int = 1024  # M, points sampled per scene for the transformers (∝ segment size)
    transformer_layers: int = 3
    transformer_heads: int = 8
    transformer_mlp_ratio: float = 4.0
    transformer_attn_init: str = "random"  # random (PyTorch's default) | similarity (W_q = W_k = I: attention starts as feature similarity)
    # schedule (§3.4): when each loss term switches on
    schedule: str = "epochs"  # epochs: *_from are 1-based epochs (the paper's 1/11/21 of 120) | fraction: of the run's steps
    ce_from: float = 1
    correlation_from: float = 11  # L̂_ce of the intra/inter-scene transformers
    kl_from: float = 21  # L_kl (feedback distillation)
    # optimisation
    epochs: int = 120
    batch_size: int = 8  # scenes per step (per process under DDP)
    workers: int = 4  # DataLoader worker processes loading scenes ahead of the step (0 = in the training process)
    optimizer: str = "sgd"  # 3D network: sgd (the paper: lr 0.2, momentum 0.9) | adamw (lr ~1e-3; converges in fewer steps)
    lr: float = 0.2  # 3D network
    momentum: float = 0.9
    ema: float = 0.0  # decay of a moving average of the 3D network's weights, validated and exported (0 = off; hiclr/train/ema.py)
    warmup: float = 0.0  # share of the run's steps with a linear learning-rate warm-up before the cosine decay
    weight_decay: float = 1e-4
    transformer_lr: float = 2e-4  # AdamW, transformers
    transformer_weight_decay: float = 0.01  # AdamW's default
    augment: bool = True  # random z-rotation and x/y flips (CLIP2Scene)
    seed: int = 0
    deterministic: bool = False  # torch deterministic algorithms (resume gives bit-identical weights on CPU)
    amp: bool = True  # bf16 autocast on CUDA, and on CPUs with native bf16 (AVX512-BF16 / AMX); fp32 where bf16 would be emulated
    # text anchors
    text_embeddings: str = "auto"  # auto: the CLIP embeddings cached by pseudolabel, else (oracle data) seeded random
    # validation and checkpoints
    val_split: str = "val"  # scored each val_every epochs when its scenes have ground truth; "" = never
    val_every: int = 1
    val_max_scenes: int = 0  # 0 = all scenes of the split
    device: str = "auto"  # auto | cpu | cuda | cuda:N

    def __post_init__(self) -> None:
        bad = [s for s in self.stages if s not in STAGES]
        if bad:
            raise HiclrError(f"train.stages: unknown stage {bad[0]!r}", f"choose from {', '.join(STAGES)} (or 'baseline')")
        if "feedback" in self.stages and not ({"intrascene", "interscene"} & set(self.stages)):
            raise HiclrError("train.stages: feedback needs intrascene or interscene (it distils their outputs)",
                             "add intrascene and/or interscene, e.g. --stages intraset,intrascene,interscene,feedback")
        if self.combine not in ("mean", "weighted"):
            raise HiclrError(f"train.combine: {self.combine!r}", "use mean (the paper: mean of the active terms) or weighted")
        if self.kl_over not in ("feature", "logits"):
            raise HiclrError(f"train.kl_over: {self.kl_over!r}", "use feature or logits")
        if self.transformer_attn_init not in ("random", "similarity"):
            raise HiclrError(f"train.transformer_attn_init: {self.transformer_attn_init!r}", "use random or similarity")
        if self.input not in ("color", "color_normal"):
            raise HiclrError(f"train.input: {self.input!r}", "use color or color_normal")
        if self.samples < 1 or self.batch_size < 1 or self.epochs < 1:
            raise HiclrError("train.samples, train.batch_size and train.epochs must be ≥ 1", "fix the recipe")
        if self.workers < 0:
            raise HiclrError(f"train.workers={self.workers}", "give the number of loader processes, ≥ 0 (0 = load in the training process)")
        if self.temperature <= 0:
            raise HiclrError("train.temperature must be > 0", "0.07 (CLIP's initial temperature)")
        if self.optimizer not in ("sgd", "adamw"):
            raise HiclrError(f"train.optimizer: {self.optimizer!r}", "use sgd (the paper) or adamw")
        if self.logits not in LOGITS:
            raise HiclrError(f"train.logits: {self.logits!r}", f"use one of {', '.join(LOGITS)}")
        if self.grad_clip < 0 or self.logit_scale_lr < 0:
            raise HiclrError("train.grad_clip and train.logit_scale_lr must be ≥ 0", "0 turns gradient clipping off")
        froms = {"ce_from": self.ce_from, "correlation_from": self.correlation_from, "kl_from": self.kl_from}
        if self.schedule == "epochs":
            bad = [k for k, v in froms.items() if v < 1 or float(v) != int(v)]
            if bad:
                raise HiclrError(f"train.{bad[0]}={froms[bad[0]]}: with train.schedule=epochs it is a 1-based epoch",
                                 "give a whole epoch ≥ 1, or set train.schedule=fraction for fractions of the run")
        elif self.schedule == "fraction":
            bad = [k for k, v in froms.items() if not 0.0 <= v <= 1.0]
            if bad:
                raise HiclrError(f"train.{bad[0]}={froms[bad[0]]}: with train.schedule=fraction it is a share of the run",
                                 "give a number in [0, 1], e.g. correlation_from: 0.083 (the paper's 10/120)")
        else:
            raise HiclrError(f"train.schedule: {self.schedule!r}", "use epochs or fraction")

    @property
    def normalize(self) -> bool:
        """ψ normalises the features (cosine and learnable) or not (the paper's raw inner product)."""
        return self.logits != "inner"

    @property
    def tau(self) -> float:
        """The fixed (or initial) temperature of ψ: 1 for the raw inner product."""
        return 1.0 if self.logits == "inner" else self.temperature

    @property
    def in_channels(self) -> int:
        return 3 if self.input == "color" else 6

    @property
    def transformers(self) -> bool:
        return bool({"intrascene", "interscene"} & set(self.stages))


def parse_stages(text: str) -> list[str]:
    """``--stages`` value → stage list: ``baseline``, a Table 2 row (``I``…``V``), ``all``, or a comma list."""
    t = text.strip()
    if t in ("", "baseline", "none"):
        return []
    if t == "all":
        return list(STAGES)
    if t.upper() in TABLE2:
        return list(TABLE2[t.upper()])
    out = [s.strip() for s in t.split(",") if s.strip() and s.strip() != "baseline"]
    bad = [s for s in out if s not in STAGES]
    if bad:
        raise HiclrError(f"--stages: unknown stage {bad[0]!r}", f"use baseline, I..V, all or a comma list of {', '.join(STAGES)}")
    return [s for s in STAGES if s in out]
