"""Facts about the running environment: versions, devices, optional backends (for `hiclr env`, run logs)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
import subprocess
from pathlib import Path


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def git_commit(path: Path | None = None) -> str:
    """The git commit of the hiclr source tree, or 'unknown' outside a checkout."""
    here = path or Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False, cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment() -> dict[str, str]:
    """Versions of hiclr and its dependencies, the compute devices, and the sparse backends."""
    import torch

    from hiclr import __version__

    info = {
        "hiclr": f"{__version__} (git {git_commit()})",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": f"{torch.version.cuda} ({torch.cuda.device_count()} GPU)" if torch.cuda.is_available() else "not available",
    }
    for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
        info[f"gpu{i}"] = torch.cuda.get_device_name(i)
    for dist in ("numpy", "open3d", "open_clip_torch", "click", "nuscenes-devkit"):
        info[dist] = _version(dist)
    try:
        from hiclr.nn import available_backends

        backends = available_backends()
        info["sparse backends"] = ", ".join(f"{k}: {v}" for k, v in backends.items())
    except ImportError:
        info["sparse backends"] = "torch"
    return info
