"""The inference model file: the 3D network and everything needed to label points, nothing else.

One file written with ``torch.save`` whose content is only tensors and a JSON string, so it loads
with ``torch.load(weights_only=True)`` (no code runs)::

    {"format": "hiclr-model-1",
     "weights": {name: tensor},          # backend-neutral state_dict of hiclr.nn.PointNetwork
     "text": tensor (C, d) float32,      # the class anchors T̂_c the network was trained against
     "meta": JSON string}                # arch config, classes, input, CLIP model id/weights, anchor source, provenance

No transformers: the paper keeps only the 3D model for inference (§3.4).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hiclr.errors import HiclrError
from hiclr.store import atomic_write_bytes

FORMAT = "hiclr-model-1"


@dataclass
class ModelFile:
    """What a model file holds."""

    weights: dict[str, torch.Tensor]
    arch: dict[str, Any]  # PointNetwork.arch_config()
    classes: list[str]
    text: torch.Tensor  # (C, d) float32
    input: str = "color"  # color | color_normal
    clip_model: str | None = None  # open_clip model name that made ``text`` (None: seeded random anchors)
    clip_weights: str | None = None  # open_clip pretrained tag or path
    anchors: str = "clip"  # clip | random
    extra: dict[str, Any] = field(default_factory=dict)  # provenance: run, epoch, config

    def network(self, device: str | torch.device = "cpu", backend: str | None = None) -> torch.nn.Module:
        """The 3D network with its weights, in eval mode."""
        from hiclr.nn import PointNetwork

        cfg = dict(self.arch)
        if backend is not None:
            cfg["backend"] = backend
        net = PointNetwork.from_config(cfg)
        net.load_state_dict(self.weights)
        return net.to(device).eval()


def save_model(path: Path | str, model: ModelFile) -> Path:
    """Atomically write ``model`` to ``path``."""
    if model.text.shape[0] != len(model.classes):
        raise HiclrError(f"model has {len(model.classes)} classes but {model.text.shape[0]} text embeddings", "export again")
    meta = {"arch": model.arch, "classes": model.classes, "input": model.input, "clip_model": model.clip_model,
            "clip_weights": model.clip_weights, "anchors": model.anchors, "extra": model.extra}
    blob = {"format": FORMAT, "weights": {k: v.detach().cpu() for k, v in model.weights.items()},
            "text": model.text.detach().cpu().float(), "meta": json.dumps(meta, default=str)}
    buf = io.BytesIO()
    torch.save(blob, buf)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def load_model(path: Path | str) -> ModelFile:
    """Read a model file without executing code; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise HiclrError(f"{path}: no model file", "export one with: hiclr distill RUN --export model.pt")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise HiclrError(f"{path}: unreadable model file ({type(exc).__name__}: {exc})", "export it again with hiclr distill") from exc
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        hint = "a training checkpoint is not a model file: export with hiclr distill RUN --export model.pt"
        raise HiclrError(f"{path}: not a hiclr model file", hint)
    meta = json.loads(blob["meta"])
    return ModelFile(weights=blob["weights"], arch=meta["arch"], classes=list(meta["classes"]), text=blob["text"],
                     input=meta.get("input", "color"), clip_model=meta.get("clip_model"),
                     clip_weights=meta.get("clip_weights"), anchors=meta.get("anchors", "clip"), extra=meta.get("extra", {}))
