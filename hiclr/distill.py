"""`hiclr distill RUN`: the feedback-distillation phase on its own, and export of the inference model.

- ``epochs > 0``: resume the run from ``ckpt/last.pt`` (which holds the transformers) for that many
  more epochs with the ``feedback`` stage on from the first of them (L_kl, Eq. 8, added to the
  active terms). The cosine schedule is stretched over the new total number of epochs. The phase
  (its first epoch and length) is recorded in ``RUN/distill.json`` before it starts, so the same
  command after an interruption resumes it to the same last epoch, with the same schedule, as
  ``train --resume`` does (the same weights as an uninterrupted run, on CPU); the same command
  after it finished trains nothing. Another ``epochs`` starts a new phase from the last checkpoint.
- export: write the model file (``hiclr.model_file``): the 3D network's backend-neutral weights,
  its architecture config, the class names, the class anchors and the CLIP model id. The
  transformers are left behind: only the 3D model is used for inference (§3.4).

Which checkpoint is exported: ``last`` by default, since picking the epoch by validation mIoU uses
ground-truth labels that a label-free method does not have; ``best`` is there for comparisons.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hiclr.device import resolve_device
from hiclr.errors import HiclrError
from hiclr.model_file import ModelFile, save_model
from hiclr.store import atomic_write_text
from hiclr.train.checkpoint import load_checkpoint
from hiclr.train.loop import TrainResult, read_config, read_run_info, train
from hiclr.train.schedule import extended_schedule


@dataclass
class DistillConfig:
    """The ``distill:`` section of a recipe."""

    epochs: int = 0  # feedback-distillation epochs after training (0: export only)
    checkpoint: str = "last"  # exported checkpoint: last (label-free) | best (by val mIoU, uses ground truth)


@dataclass
class DistillResult:
    trained: TrainResult | None
    model_path: Path | None
    checkpoint: Path | None
    epoch: int | None


PHASE_FILE = "distill.json"  # {"from": first epoch's predecessor, "epochs": N, "until": from + N}


def _phase(run: Path, epochs: int, done: int) -> dict[str, int] | None:
    """The recorded feedback phase that ``distill --epochs epochs`` continues, if this is a rerun of
    that command: same N, and the checkpoint within the phase (interrupted, or finished)."""
    path = run / PHASE_FILE
    try:
        phase = json.loads(path.read_text())
        start, n = int(phase["from"]), int(phase["epochs"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise HiclrError(f"{path}: unreadable ({exc})", "delete it to start a new feedback phase") from exc
    return {"from": start, "epochs": n, "until": start + n} if n == epochs and start <= done <= start + n else None


def distill_epochs(run: Path, epochs: int, device: str | None = None, progress: bool = False,
                   data: Path | str | None = None) -> TrainResult:
    """Continue ``run`` for ``epochs`` more epochs with feedback distillation on (resumed to the same
    end when the same command was interrupted; see the module doc). ``data``: the store, when it
    is no longer where the run recorded it."""
    run = Path(run)
    cfg = read_config(run)
    info = read_run_info(run)
    if not cfg.transformers:
        raise HiclrError(f"{run}: trained without intrascene/interscene, so there is nothing to distil from",
                         "train with --stages intraset,intrascene,interscene first")
    store = Path(data) if data is not None else Path(info["data"])
    if not (store / "dataset.yaml").is_file():
        raise HiclrError(f"{store}: no store here (the run {run} was trained on it; has it moved?)"
                         if data is None else f"{store}: no store here (no dataset.yaml)",
                         "pass --data with the store's present folder")
    state = load_checkpoint(run / "ckpt" / "last.pt")
    done = int(state["epoch"])
    phase = _phase(run, epochs, done)
    if phase is not None and done >= phase["until"]:
        return TrainResult(run, done, state.get("best"), state.get("best_epoch"), {}, skipped=True)
    new = phase is None
    if phase is None:
        phase = {"from": done, "epochs": epochs, "until": done + epochs}
    stages = [s for s in ("intraset", "intrascene", "interscene", "feedback") if s in cfg.stages or s == "feedback"]
    # the schedule of the phase's first run, whether config.yaml is the original or already extended
    changes: dict[str, Any] = {**extended_schedule(cfg, phase["from"], epochs), "stages": stages}
    if device is not None:
        changes["device"] = device
    cfg = dataclasses.replace(cfg, **changes)
    resolve_device(cfg.device, "train.device")  # a device that is not here changes nothing in the run
    if new:
        atomic_write_text(run / PHASE_FILE, json.dumps(phase, indent=1))
    return train(store, run, cfg, resume=True, progress=progress)


def export_model(run: Path, out: Path, checkpoint: str = "last") -> tuple[Path, Path, int]:
    """Write the inference model file of ``run`` to ``out``; returns (model, checkpoint used, its epoch)."""
    run = Path(run)
    cfg = read_config(run)
    info = read_run_info(run)
    if checkpoint not in ("last", "best"):
        raise HiclrError(f"--checkpoint {checkpoint!r}", "use last or best")
    path = run / "ckpt" / f"{checkpoint}.pt"
    if checkpoint == "best" and not path.is_file():
        raise HiclrError(f"{path}: no best checkpoint (the run had no validation split with labels)", "use --checkpoint last")
    state = load_checkpoint(path)
    text = state["text"]
    arch = {"arch": cfg.arch, "in_channels": cfg.in_channels, "out_channels": int(text.shape[1]),
            "voxel_size": cfg.voxel_size, "backend": "auto"}
    anchors = info.get("anchors", {})
    weights = state.get("net_ema", state["net"])  # train.ema: the moving average is the trained model
    model = ModelFile(weights=weights, arch=arch, classes=list(info["classes"]), text=text, input=cfg.input,
                      clip_model=anchors.get("clip_model"), clip_weights=anchors.get("clip_weights"),
                      anchors=anchors.get("source", "clip"),
                      extra={"run": str(run.resolve()), "checkpoint": checkpoint, "epoch": int(state["epoch"]),
                             "weights": "ema" if "net_ema" in state else "net",
                             "stages": cfg.stages, "clip_weights_id": anchors.get("clip_weights_id"),
                             "data": info.get("data")})
    where = f"{path} with {run / 'config.yaml'}"
    hint = ("the run's config.yaml (arch, input, voxel size) does not describe this checkpoint: restore the settings "
            "it was trained with, or retrain" if not _diverged(weights) else
            "the run diverged: retrain with a lower train.lr (or check the pseudo-labels)")
    return save_model(out, model, source=where, hint=hint), path, int(state["epoch"])


def _diverged(weights: dict[str, Any]) -> bool:
    import torch

    return any(v.is_floating_point() and not torch.isfinite(v).all() for v in weights.values())


def distill(run: Path | str, epochs: int = 0, export: Path | str | None = None, checkpoint: str = "last",
            device: str | None = None, progress: bool = False, data: Path | str | None = None) -> DistillResult:
    """Feedback phase (``epochs`` > 0) and/or export (``export`` given); see the module doc."""
    run = Path(run)
    if epochs < 0:
        raise HiclrError("--epochs must be ≥ 0", "0 exports only")
    if epochs == 0 and export is None:
        raise HiclrError("nothing to do", "give --epochs N (feedback phase) and/or --export model.pt")
    trained = distill_epochs(run, epochs, device, progress, data) if epochs else None
    if export is None:
        return DistillResult(trained, None, None, None)
    model, ckpt, epoch = export_model(run, Path(export), checkpoint)
    return DistillResult(trained, model, ckpt, epoch)
