"""Issue 22: a .npy or .npz whose header claims an absurd size is refused naming the file, before
anything is allocated (was "MemoryError: Unable to allocate 112 GiB" with no file named)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np



def _huge_header(arr: np.ndarray, rows: int) -> bytes:
    """``arr`` saved as .npy, then its header edited to claim ``rows`` rows (same header length)."""
    buf = io.BytesIO()
    np.save(buf, arr)
    data = buf.getvalue()
    old = f"({arr.shape[0]}, {arr.shape[1]})" if arr.ndim == 2 else f"({arr.shape[0]},)"
    new = f"({rows}, {arr.shape[1]})" if arr.ndim == 2 else f"({rows},)"
    head_len = int.from_bytes(data[8:10], "little")
    head = data[10:10 + head_len].decode("latin1").replace(old, new)
    head = head.rstrip(" \n")[: head_len - 1].ljust(head_len - 1) + "\n"
    return data[:10] + head.encode("latin1") + data[10 + head_len:]


def test_an_npy_header_claiming_terabytes_is_named(store_copy: Path) -> None:
    from faultkit import cli

    sid = min(p.name for p in (store_copy / "scenes").iterdir())
    coord = store_copy / "scenes" / sid / "coord.npy"
    coord.write_bytes(_huge_header(np.load(coord), 10_000_000_000))  # 112 GiB of float32 rows
    res = cli("oversegment", store_copy, "--overwrite")
    assert res.exit_code == 1
    failed = [ln for ln in res.stderr.splitlines() if f"failed {sid}:" in ln]
    assert len(failed) == 1 and str(coord) in failed[0] and "header needs 120000000128" in failed[0], res.stderr
    assert "MemoryError" not in res.stderr and "--overwrite" in failed[0]


def test_an_npz_member_header_claiming_terabytes_is_named(store_copy: Path) -> None:
    from faultkit import cli

    assert cli("pseudolabel", store_copy, "--labeler", "oracle").exit_code == 0
    sid = min(p.name for p in (store_copy / "scenes").iterdir())
    pairs = store_copy / "scenes" / sid / "pairs.npz"
    with np.load(pairs) as z:
        cols = {k: z[k] for k in z.files}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k, v in cols.items():
            zf.writestr(f"{k}.npy", _huge_header(v, 30_000_000_000) if k == "point" else _npy(v))
    pairs.write_bytes(buf.getvalue())
    from hiclr.errors import HiclrError
    from hiclr.store import Store

    scene = Store.open(store_copy).scene(sid)
    try:
        scene.read_pairs("pairs")
    except HiclrError as exc:
        assert str(pairs) in exc.message and "point.npy" in exc.message and "header needs" in exc.message
        assert "--overwrite" in exc.hint
    else:
        raise AssertionError("read")
    assert scene.problem("pairs") is not None  # so a rerun redoes it instead of skipping it


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()
