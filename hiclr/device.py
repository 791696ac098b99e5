"""The one place where a device setting (``auto``, ``cpu``, ``cuda``, ``cuda:N``) becomes a torch device."""

from __future__ import annotations

import torch

from hiclr.errors import HiclrError

__all__ = ["resolve_device"]


def resolve_device(name: str, setting: str = "--device", local_rank: int = 0) -> torch.device:
    """``auto`` → ``cuda:<local_rank>`` when CUDA is available, else CPU; anything else as given.

    Refuses, naming ``setting`` (the option or recipe key the value came from), a name torch does not
    know, CUDA asked for where it is not available, and a CUDA index past the last GPU, so that a run
    never gets as far as moving a model before it fails."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise HiclrError(f"{setting}={name!r} is not a device", f"use auto, cpu or cuda[:N] for {setting}") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise HiclrError(f"{setting}={name!r} but CUDA is not available on this machine",
                             f"use {setting}=cpu or auto")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise HiclrError(f"{setting}={name!r} but this machine has {count} CUDA device(s) (cuda:0…cuda:{count - 1})",
                             f"use {setting}=cuda:0 … cuda:{count - 1} or auto")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise HiclrError(f"{setting}={name!r} but MPS is not available on this machine", f"use {setting}=cpu or auto")
    return dev
