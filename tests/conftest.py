"""Shared test settings: CPU only, no network, deterministic."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest


@pytest.fixture(scope="session")
def make_synthetic_store(tmp_path_factory):
    """A function that prepares a small synthetic store (``SyntheticConfig`` overrides) and opens it."""

    def make(name: str, **overrides):
        from hiclr.config import SyntheticConfig
        from hiclr.datasets.synthetic import prepare_synthetic
        from hiclr.store import Store

        root = tmp_path_factory.mktemp(name)
        summary = prepare_synthetic(root, SyntheticConfig(**overrides), progress=False)
        assert not summary.failed, summary.failed
        return Store.open(root)

    return make
