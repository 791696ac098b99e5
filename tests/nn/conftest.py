"""Fixtures of the network tests. Helpers shared by the backend tests live in ``sparse_backends.py``
beside this file (importable from the test modules, as ``faultkit`` is in tests/faults)."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(autouse=True)
def _one_thread():
    """The test machine is shared: one torch thread is faster and deterministic under load."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
