"""Training checkpoints: tensors and plain containers only, loadable with ``weights_only=True``.

A checkpoint is ``torch.save`` of a dict whose leaves are tensors, numbers, strings, lists and
dicts (model and optimiser state, epoch, step, best score): nothing that unpickling could execute.
The run's config lives beside it as YAML (``config.yaml``); all randomness is derived from
``(seed, epoch, scene)``, so no RNG state needs saving.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from hiclr.errors import HiclrError
from hiclr.store import atomic_write_bytes

FORMAT = "hiclr-checkpoint-1"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Atomically write ``state`` (plus a format tag) to ``path``."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint without executing code (``weights_only=True``); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise HiclrError(f"{path}: no checkpoint", "train first (hiclr train ... --out RUN), or drop --resume")
    from hiclr.model_file import torch_load, torch_load_reason

    try:
        state = torch_load(path, map_location=map_location)
    except Exception as exc:
        raise HiclrError(f"{path}: unreadable checkpoint ({torch_load_reason(exc, path)})",
                         "the file is truncated, corrupt or not a hiclr checkpoint: delete it and retrain") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise HiclrError(f"{path}: not a hiclr checkpoint", f"expected format {FORMAT}")
    return state
