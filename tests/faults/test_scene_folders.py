"""Issue 22: prepare --overwrite on a scene folder that is a symbolic link is one line naming the
link and the fix; the data outside the store is untouched."""

from __future__ import annotations

import shutil
from pathlib import Path

from faultkit import cli, snapshot


def test_overwrite_refuses_a_symlinked_scene_folder(store_copy: Path, tmp_path: Path) -> None:
    sid = min(p.name for p in (store_copy / "scenes").iterdir())
    outside = tmp_path / "elsewhere" / sid
    shutil.move(store_copy / "scenes" / sid, outside)
    (store_copy / "scenes" / sid).symlink_to(outside, target_is_directory=True)
    before = snapshot(outside)
    res = cli("prepare", "synthetic", "--out", store_copy, "--scenes", "2", "--views", "2", "--overwrite", "--set",
              "synthetic.width=64", "--set", "synthetic.height=48", "--set", "synthetic.spacing=0.08")
    assert res.exit_code == 1
    failed = [ln for ln in res.stderr.splitlines() if f"failed {sid}:" in ln]
    assert len(failed) == 1 and "symbolic link" in failed[0] and f"rm {store_copy / 'scenes' / sid}" in failed[0]
    assert "rmtree" not in res.stderr and snapshot(outside) == before
