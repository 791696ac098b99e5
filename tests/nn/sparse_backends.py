"""What the backend tests need to know about the optional sparse backends (shared by test_conv_dense.py
and test_backend_models.py): their packages, the device each runs on, and why gradients cannot be checked."""

from __future__ import annotations

import torch

PACKAGES = {"minkowski": "MinkowskiEngine", "spconv": "spconv", "torchsparse": "torchsparse"}


def backend_device(backend: str) -> torch.device:
    """torchsparse on the GPU when there is one (2.x has no CPU convolution); everything else on CPU."""
    return torch.device("cuda" if backend == "torchsparse" and torch.cuda.is_available() else "cpu")


def grads_unsupported(backend: str) -> str | None:
    """Why a backend's gradients cannot be checked here, or None when they can."""
    if backend == "spconv" and not torch.cuda.is_available():
        return "spconv 2.x's CPU backward asks for a CUDA stream: it fails on a machine without CUDA"
    if backend == "torchsparse" and backend_device(backend).type == "cpu":
        return (
            "torchsparse 1.4.0's CPU backward raises NotImplementedError (torchsparse/nn/functional/conv.py); "
            "its gradients are checked on a GPU (benchmarks/gpu_throughput.sh)"
        )
    return None
