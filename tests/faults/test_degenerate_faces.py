"""Issue 22: a mesh whose faces are all degenerate (``faces.npy`` all (0, 0, 0)) is not segmented
into one-vertex segments: oversegment uses the kNN graph of a point cloud and says so, naming
the file and the fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from faultkit import cli


def test_degenerate_faces_fall_back_to_the_knn_graph_and_say_so(store_copy: Path) -> None:
    faces = store_copy / "scenes/room_0000/faces.npy"
    n_faces = len(np.load(faces))
    np.save(faces, np.zeros((n_faces, 3), np.int32))  # a valid array of the size recorded: indices in range
    res = cli("oversegment", store_copy)
    assert res.exit_code == 0, res.output + res.stderr
    notes = [ln for ln in res.stderr.splitlines() if "note:" in ln]
    assert len(notes) == 1 and str(faces) in notes[0] and "kNN graph" in notes[0] and "hiclr prepare" in notes[0], \
        res.stderr
    n = len(np.load(store_copy / "scenes/room_0000/coord.npy"))
    segments = np.load(store_copy / "scenes/room_0000/segments.npy")
    assert segments.max() + 1 < n / 10  # real segments, not one per vertex
