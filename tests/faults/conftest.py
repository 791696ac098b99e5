"""Fixtures of the fault suite: every bad input a user can give is refused in one line that names
the file and the fix, with no traceback and no existing data changed (issue 11). Helpers live in
``faultkit.py`` beside this file."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from faultkit import make_model  # noqa: E402


@pytest.fixture(scope="session")
def model_file(tmp_path_factory) -> Path:
    return make_model(tmp_path_factory.mktemp("model") / "model.pt")


@pytest.fixture(scope="session")
def room_store(make_synthetic_store):
    """One small synthetic room (the session's own; tests copy it before breaking anything)."""
    return make_synthetic_store("faults_room", scenes=2, views=2, width=64, height=48, spacing=0.08)


@pytest.fixture()
def store_copy(room_store, tmp_path) -> Path:
    dst = tmp_path / "store"
    shutil.copytree(room_store.root, dst)
    return dst
