"""Without nuscenes-devkit, `prepare nuscenes` fails at the point of use and names the extra."""

from __future__ import annotations

import sys

import pytest

from hiclr.config import NuScenesConfig
from hiclr.datasets import nuscenes as nus
from hiclr.errors import MissingDependencyError


def test_missing_devkit_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "nuscenes", None)  # import nuscenes → ImportError
    monkeypatch.setitem(sys.modules, "nuscenes.nuscenes", None)
    monkeypatch.setattr(nus, "_NUSC", {})
    with pytest.raises(MissingDependencyError, match=r"hiclr\[nuscenes\]"):
        nus.prepare_nuscenes(tmp_path, tmp_path / "out", NuScenesConfig(version="v1.0-mini"), progress=False)
