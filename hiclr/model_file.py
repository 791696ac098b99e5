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

import contextlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hiclr.errors import HiclrError, one_line
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
    source: str = ""  # the file it was read from (for error messages; not saved)

    def network(self, device: str | torch.device = "cpu", backend: str | None = None) -> torch.nn.Module:
        """The 3D network with its weights, in eval mode."""
        cfg = dict(self.arch)
        if backend is not None:
            cfg["backend"] = backend
        net = build_network(cfg)
        try:
            net.load_state_dict(self.weights)
        except RuntimeError as exc:  # load_model checked it; a ModelFile built in code may not be
            raise HiclrError(f"{self.source or 'model'}: weights do not fit arch {self.arch.get('arch')} "
                             f"({one_line(str(exc), 200)})", "export the model again with hiclr distill") from exc
        return net.to(device).eval()


def build_network(arch: dict[str, Any]) -> torch.nn.Module:
    """The network a model file's ``arch`` describes (``hiclr.nn.PointNetwork``), untrained."""
    from hiclr.nn import PointNetwork

    return PointNetwork.from_config(arch)


def torch_load_reason(exc: Exception, path: Path | None = None) -> str:
    """torch.load's failure in one short phrase. Its weights-only refusal is a page of advice to
    load with ``weights_only=False`` (which would run the file's code: never) and may carry no
    reason at all (a raw pickle): say what the file holds instead, from its first bytes when
    ``path`` is given (a pickle starts with 0x80, torch.save's zip with ``PK``)."""
    import re

    text = str(exc)
    head = b""
    if path is not None:
        with contextlib.suppress(OSError), open(path, "rb") as f:
            head = f.read(2)
    if head and head[:1] != b"\x80" and head != b"PK":
        return "not a file written by torch.save (another format)"
    if "WeightsUnpickler error" in text or "Weights only load failed" in text:
        m = re.search(r"WeightsUnpickler error:\s*(.*?)\s*(?:Check the documentation|$)", text, re.DOTALL)
        detail = " ".join((m.group(1) if m else "").split())
        g = re.search(r"GLOBAL (\S+) was not an allowed global", detail)
        if g:
            return f"it holds pickled Python objects ({g.group(1)}), not only tensors: refused to unpickle them"
        return ("it is a plain Python pickle, not tensors saved by torch.save: refused to unpickle it"
                + (f" ({detail})" if detail else ""))
    if "Invalid magic number" in text or isinstance(exc, (KeyError, EOFError)) or "central directory" in text:
        return "not a file written by torch.save (empty, truncated, or another format)"
    return one_line(f"{type(exc).__name__}: {text}", 200)


def torch_load(path: Path, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with torch's warnings about the file's pickle
    protocol kept out of the output; a failure is re-raised for the caller to name the file."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*pickle protocol.*")
        return torch.load(path, map_location=map_location, weights_only=True)


def _problems(model: ModelFile) -> list[str]:
    """What makes ``model`` unusable: class/anchor/arch disagreement, non-finite tensors, a state
    dict that does not load strictly into the network its arch describes."""
    out: list[str] = []
    text = model.text
    if text.ndim != 2 or text.shape[0] != len(model.classes):
        out.append(f"{len(model.classes)} class names but text anchors of shape {tuple(text.shape)}")
    if text.ndim == 2 and int(model.arch.get("out_channels", -1)) != text.shape[1]:
        out.append(f"arch out_channels {model.arch.get('out_channels')} but {text.shape[1]}-d text anchors")
    want_in = {"color": 3, "color_normal": 6}.get(model.input)
    if want_in is None:
        out.append(f"unknown input {model.input!r}")
    elif int(model.arch.get("in_channels", -1)) != want_in:
        out.append(f"input '{model.input}' needs {want_in} input channels, arch has {model.arch.get('in_channels')}")
    bad = [k for k, v in model.weights.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad or not torch.isfinite(text).all():
        out.append(f"non-finite values (NaN/inf) in {len(bad)} weight tensors (e.g. {bad[0]})" if bad
                   else "non-finite values in the text anchors")
    if out:
        return out
    try:
        net = build_network(dict(model.arch))
    except (HiclrError, TypeError, ValueError, KeyError) as exc:
        return [f"arch {model.arch} does not build ({one_line(str(exc), 150)})"]
    want = net.state_dict()
    missing = [k for k in want if k not in model.weights]
    unexpected = [k for k in model.weights if k not in want]
    shaped = [k for k in want if k in model.weights and tuple(want[k].shape) != tuple(model.weights[k].shape)]
    if missing:
        out.append(f"{len(missing)} weights of arch {model.arch.get('arch')} missing (e.g. {missing[0]})")
    if unexpected:
        out.append(f"{len(unexpected)} weights the arch does not have (e.g. {unexpected[0]})")
    if shaped:
        k = shaped[0]
        out.append(f"{len(shaped)} weights of another shape (e.g. {k}: {tuple(model.weights[k].shape)}, "
                   f"the arch wants {tuple(want[k].shape)})")
    return out


def check_model(model: ModelFile, where: str, hint: str) -> None:
    """Raise one :class:`HiclrError` naming ``where`` if the model's tensors and description disagree."""
    problems = _problems(model)
    if problems:
        raise HiclrError(f"{where}: {'; '.join(problems)}", hint)


def save_model(path: Path | str, model: ModelFile, source: str = "",
               hint: str = "the run's config.yaml and checkpoint disagree: restore the config it was trained with") -> Path:
    """Atomically write ``model`` to ``path`` once :func:`check_model` passes (nothing is written
    otherwise); ``source`` names where the weights came from in the error."""
    check_model(model, source or str(path), hint)
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
        blob = torch_load(path)
    except Exception as exc:
        raise HiclrError(f"{path}: not a model file: {torch_load_reason(exc, path)}",
                         "a model file holds tensors only: export one with hiclr distill RUN --export model.pt") from exc
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        hint = "a training checkpoint is not a model file: export with hiclr distill RUN --export model.pt"
        raise HiclrError(f"{path}: not a hiclr model file", hint)
    try:
        meta = json.loads(blob["meta"])
        model = ModelFile(weights=dict(blob["weights"]), arch=dict(meta["arch"]), classes=list(meta["classes"]),
                          text=blob["text"], input=meta.get("input", "color"), clip_model=meta.get("clip_model"),
                          clip_weights=meta.get("clip_weights"), anchors=meta.get("anchors", "clip"),
                          extra=meta.get("extra", {}), source=str(path))
        if not isinstance(model.text, torch.Tensor) or not all(isinstance(v, torch.Tensor) for v in model.weights.values()):
            raise TypeError("weights and text must be tensors")
    except (KeyError, TypeError, ValueError) as exc:
        raise HiclrError(f"{path}: incomplete model file ({type(exc).__name__}: {exc})", "export it again with hiclr distill") from exc
    check_model(model, str(path), "the file was edited or damaged: export it again with hiclr distill")
    return model
