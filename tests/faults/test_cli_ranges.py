"""Issue 22: CLI counts out of range are refused before anything is written: --workers 0 / -1 (a
click usage error naming the option and its range), prepare --views 0 (a setting out of range)."""

from __future__ import annotations

from pathlib import Path

import pytest

from faultkit import cli, refused, snapshot


@pytest.mark.parametrize("workers", ["0", "-1"])
@pytest.mark.parametrize("command", [["oversegment"], ["pseudolabel", "--labeler", "oracle"], ["refine"]])
def test_workers_below_one_are_refused(store_copy: Path, workers: str, command: list[str]) -> None:
    before = snapshot(store_copy)
    res = cli(command[0], store_copy, *command[1:], "--workers", workers)
    assert res.exit_code == 2, (res.output, res.stderr)
    assert "--workers" in res.stderr and "x>=1" in res.stderr
    assert snapshot(store_copy) == before


def test_prepare_refuses_zero_workers_and_zero_views(tmp_path: Path) -> None:
    res = cli("prepare", "synthetic", "--out", tmp_path / "a", "--scenes", "1", "--workers", "0")
    assert res.exit_code == 2 and "--workers" in res.stderr and not (tmp_path / "a").exists()
    refused(cli("prepare", "synthetic", "--out", tmp_path / "b", "--scenes", "1", "--views", "0"),
            "synthetic.views", "≥ 1")
    assert not (tmp_path / "b").exists()
