"""Issue 22: temporaries that a killed step left in a scene (``.pairs.npz.*.tmp``,
``.scene.json.*.tmp``) are removed by the rerun even when it finds the scene up to date."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from faultkit import cli


def _dead_pid() -> int:
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    return int(p.stdout)


def test_a_rerun_removes_a_killed_writers_temporaries(store_copy: Path) -> None:
    assert cli("pseudolabel", store_copy, "--labeler", "oracle").exit_code == 0
    scene = store_copy / "scenes" / min(p.name for p in (store_copy / "scenes").iterdir())
    pid, host = _dead_pid(), socket.gethostname()
    left = [scene / f".pairs.npz.{host}.{pid}.0badf00d.tmp", scene / f".scene.json.{host}.{pid}.0123abcd.tmp",
            scene / "views" / f".intrinsics.npy.{host}.{pid}.fedcba98.tmp"]
    for tmp in left:
        tmp.write_bytes(b"PK\x03\x04 half a file")
    live = scene / f".pairs.npz.{host}.{1}.0badf00d.tmp"  # pid 1 is alive: a writer at work
    live.write_bytes(b"in progress")
    res = cli("pseudolabel", store_copy, "--labeler", "oracle")
    assert res.exit_code == 0 and "0 done" in res.output  # up to date: skipped …
    assert not any(t.exists() for t in left)  # … and nothing half-written is left behind
    assert live.exists()
    for kind in ("oversegment", "prepare"):
        for tmp in left[:1]:
            tmp.write_bytes(b"x")
        args = ["prepare", "synthetic", "--out", store_copy, "--scenes", "2", "--views", "2", "--set",
                "synthetic.width=64", "--set", "synthetic.height=48", "--set", "synthetic.spacing=0.08"] \
            if kind == "prepare" else ["oversegment", store_copy]
        assert cli(*args).exit_code == 0
        assert not left[0].exists(), kind
