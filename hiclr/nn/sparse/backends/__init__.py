"""Sparse-convolution backends: one adapter file each, imported only when used.

Every backend computes the same convolution on hiclr's coordinate sets (see
:mod:`hiclr.nn.sparse.coords` for the weight layout and kernel-offset order); they differ only in
who builds the kernel maps and runs gather → GEMM → scatter. ``torch`` is the pure-PyTorch
reference and needs nothing else; the others need their library and convert the shared layout.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from typing import Protocol

from torch import Tensor

from hiclr.errors import HiclrError, MissingDependencyError

BACKENDS = ("torch", "minkowski", "spconv", "torchsparse")
_PACKAGES = {"minkowski": "MinkowskiEngine", "spconv": "spconv", "torchsparse": "torchsparse"}
_MODULES = {
    "torch": "hiclr.nn.sparse.backends.torch_backend",
    "minkowski": "hiclr.nn.sparse.backends.minkowski",
    "spconv": "hiclr.nn.sparse.backends.spconv_backend",
    "torchsparse": "hiclr.nn.sparse.backends.torchsparse_backend",
}
_NOTES = {"torchsparse": "experimental"}


class Backend(Protocol):
    """What an adapter provides (``hiclr.nn.sparse.functional`` handles strides and bias)."""

    name: str

    def conv(self, x, weight: Tensor, kernel_size: int, out_stride: int, transposed: bool) -> Tensor:
        """Features (N_out, C_out) on ``x.context.coords(out_stride)``.

        ``weight`` is (K, C_in, C_out) in the documented offset order; ``transposed`` selects the
        transposed convolution from ``x.stride`` down to the finer ``out_stride``.
        """
        ...


def _installed(name: str) -> bool:
    return name == "torch" or importlib.util.find_spec(_PACKAGES[name]) is not None


def available_backends() -> dict[str, bool | str]:
    """Which backends can be used here, without importing any of their libraries.

    Returns ``{name: False}`` when the library is missing, ``True`` when it is installed, or a note
    string (``"experimental"``) for installed backends that are not fully tested.
    """
    return {name: (_NOTES.get(name, True) if _installed(name) else False) for name in BACKENDS}


def _spconv_has_cuda() -> bool:
    """Whether an spconv CUDA wheel (``spconv-cu118``, ``spconv-cu120``, ...) is installed (no import)."""
    for dist in importlib.metadata.distributions():
        name = (dist.metadata.get("Name") or "").lower()
        if name.startswith("spconv-cu"):
            return True
    return False


def resolve_backend(name: str, device_type: str) -> str:
    """The backend ``"auto"`` stands for on a device type (``"cpu"``/``"cuda"``); checks names.

    ``auto`` picks ``spconv`` on CUDA when a CUDA wheel of it (``spconv-cuXXX``) is installed,
    else ``torch``. On CPU it always picks
    ``torch``: it was measured as the fastest correct CPU option (spconv's CPU results are wrong
    with more than one thread, and MinkowskiEngine is slower).
    """
    if name == "auto":
        return "spconv" if device_type == "cuda" and _spconv_has_cuda() else "torch"
    if name not in BACKENDS:
        raise HiclrError(f"unknown sparse backend {name!r}", f"choose one of: auto, {', '.join(BACKENDS)}")
    return name


_HINTS = {
    "minkowski": "build it with: bash scripts/build_minkowski.sh .venv  (needs apt package libopenblas-dev)",
    "spconv": "pip install spconv-cu126 (CUDA 12.x driver; spconv-cu118 for CUDA 11.8; the CPU wheel 'spconv' is wrong with >1 thread)",
    "torchsparse": "bash scripts/build_torchsparse.sh .venv  (torchsparse 1.4.0 from ../shared/vendor, not on PyPI; needs the apt package libsparsehash-dev)",
}


def check_installed(name: str) -> None:
    """Raise :class:`MissingDependencyError` (with an install hint) if a backend's library is absent."""
    if not _installed(name):
        err = MissingDependencyError(_PACKAGES[name], name, f"the '{name}' sparse backend")
        err.hint = _HINTS[name]
        raise err


def get_backend(name: str) -> Backend:
    """The adapter object of a backend, importing its library now (MissingDependencyError if absent)."""
    if name not in _MODULES:
        raise HiclrError(f"unknown sparse backend {name!r}", f"choose one of: {', '.join(BACKENDS)}")
    check_installed(name)
    return importlib.import_module(_MODULES[name]).BACKEND
