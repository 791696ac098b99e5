"""`hiclr train` settings: the ``train:`` section of a recipe (defaults = the paper's ScanNet run).

Read with ``hiclr.config.load_section(TrainConfig, "train", recipe, overrides)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hiclr.errors import HiclrError

STAGES = ("intraset", "intrascene", "interscene", "feedback")

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

    # what is trained
    stages: list[str] = field(default_factory=lambda: list(STAGES))  # subset of STAGES; [] = baseline (EXP I)
    arch: str = "MinkUNet14A"  # MinkUNet14A (ScanNet) | SPVCNN (nuScenes)
    voxel_size: float = 0.05  # metres
    backend: str = "auto"  # sparse convolution backend (see hiclr.nn)
    input: str = "color"  # network input per point: color (RGB in [-1,1]) | color_normal (+ unit normal)
    # the loss
    normalize: bool = True  # L2-normalise features before ψ (CLIP's cosine logits); False = raw inner product
    temperature: float = 0.07  # τ in ψ = ⟨n(f), T̂⟩/τ; 0.07 is CLIP's initial temperature
    kl_over: str = "feature"  # L_kl distributions: feature (softmax over channels, literal Eq. 8) | logits
    samples: int = 1024  # M, points sampled per scene for the transformers (∝ segment size)
    transformer_layers: int = 3
    transformer_heads: int = 8
    transformer_mlp_ratio: float = 4.0
    # schedule (1-based epochs at which each term switches on; §3.4)
    ce_from: int = 1
    correlation_from: int = 11  # L̂_ce of the intra/inter-scene transformers
    kl_from: int = 21  # L_kl (feedback distillation)
    # optimisation
    epochs: int = 120
    batch_size: int = 8  # scenes per step (per process under DDP)
    lr: float = 0.2  # SGD, 3D network
    momentum: float = 0.9
    weight_decay: float = 1e-4
    transformer_lr: float = 2e-4  # AdamW, transformers
    transformer_weight_decay: float = 0.01  # AdamW's default
    augment: bool = True  # random z-rotation and x/y flips (CLIP2Scene)
    seed: int = 0
    deterministic: bool = False  # torch deterministic algorithms (resume gives bit-identical weights on CPU)
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
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
        if self.kl_over not in ("feature", "logits"):
            raise HiclrError(f"train.kl_over: {self.kl_over!r}", "use feature or logits")
        if self.input not in ("color", "color_normal"):
            raise HiclrError(f"train.input: {self.input!r}", "use color or color_normal")
        if self.samples < 1 or self.batch_size < 1 or self.epochs < 1:
            raise HiclrError("train.samples, train.batch_size and train.epochs must be ≥ 1", "fix the recipe")
        if self.temperature <= 0:
            raise HiclrError("train.temperature must be > 0", "0.07 (cosine logits) or 1.0 (raw inner product)")

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
