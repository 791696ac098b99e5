"""The frozen class anchors T̂_c that training pulls point features towards (§3.1).

Normally these are the CLIP text embeddings (85 templates, averaged, unit length) that
``hiclr pseudolabel`` computed and cached in the store: the same vectors that labelled the pixels.

Data labelled by the synthetic oracle has no CLIP behind it and the cache holds nothing. For that
case only, the anchors are fixed random unit vectors, one per class, seeded by the class name
(sha256), width 512: deterministic, reproducible and nearly orthogonal, so every class is equally
separable. They carry no language meaning (open-vocabulary prompts are impossible with them) and a
tiny random-initialised CLIP text tower would be no better. The run's ``env.json`` says so loudly.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from hiclr.errors import HiclrError
from hiclr.store import atomic_save_npy, atomic_write_text, load_npy

RANDOM_WIDTH = 512
RANDOM_WARNING = ("class anchors are seeded RANDOM unit vectors, not CLIP text embeddings (no CLIP embeddings are "
                  "cached in the store: oracle-labelled data). The model has no language meaning: --prompts will not work.")


def random_anchors(classes: list[str], dim: int = RANDOM_WIDTH) -> np.ndarray:
    """(C, dim) float32 unit rows; row c depends only on the name of class c."""
    rows = []
    for name in classes:
        seed = int(hashlib.sha256(name.encode("utf-8")).hexdigest()[:16], 16)
        v = np.random.default_rng(seed).standard_normal(dim)
        rows.append(v / np.linalg.norm(v))
    return np.asarray(rows, dtype=np.float32)


def _cached_clip(store: Any) -> tuple[np.ndarray, dict[str, Any]] | None:
    """The CLIP class embeddings that ``hiclr pseudolabel`` cached in ``<store>/cache`` for exactly the
    store's classes (``hiclr.vlm.text`` format: ``text_<key>.npy`` + ``.json``), if any. With several
    entries (several CLIP models were used) the newest wins; the choice is recorded in the run."""
    cache = Path(store.root) / "cache"
    found = []
    for jsn in sorted(cache.glob("text_*.json")) if cache.is_dir() else []:
        try:
            meta = json.loads(jsn.read_text(encoding="utf-8"))
            arr = load_npy(jsn.with_suffix(".npy"))
        except (OSError, ValueError, HiclrError):
            continue
        if meta.get("classes") != store.classes or arr.dtype != np.float32 or arr.ndim != 2 or arr.shape[0] != store.num_classes:
            continue
        if not np.isfinite(arr).all() or not np.allclose(np.linalg.norm(arr, axis=1), 1.0, atol=1e-3):
            continue
        found.append((jsn.stat().st_mtime, jsn.name, arr, meta))
    if not found:
        return None
    _, name, arr, meta = max(found, key=lambda t: (t[0], t[1]))
    wid = str(meta.get("weights_id", ""))
    weights = wid[4:] if wid.startswith("tag:") else None  # a file's path is not recorded, only its name and hash
    return arr, {"clip_model": meta.get("model_name"), "clip_weights": weights, "clip_weights_id": wid,
                 "cache_entry": name, "templates_hash": meta.get("templates_hash")}


def class_anchors(store: Any, mode: str = "auto") -> tuple[np.ndarray, dict[str, Any]]:
    """T̂ (C, d) float32 and a description ``{"source", "clip_model", "clip_weights", "warning"?}``.

    mode: ``auto`` (CLIP cache, else the seeded random anchors), ``clip`` (CLIP cache or an error),
    ``random`` (always the seeded random anchors). The random anchors are also written to
    ``<store>/cache/anchors-random.npy`` with a JSON note, so the run is traceable."""
    if mode not in ("auto", "clip", "random"):
        raise HiclrError(f"train.text_embeddings: {mode!r}", "use auto, clip or random")
    if mode in ("auto", "clip"):
        found = _cached_clip(store)
        if found is not None:
            emb, info = found
            if emb.shape[0] != store.num_classes:
                raise HiclrError(f"cached text embeddings have {emb.shape[0]} rows for {store.num_classes} classes",
                                 "rerun hiclr pseudolabel --overwrite")
            return emb, {"source": "clip", **info}
        if mode == "clip":
            raise HiclrError(f"{store.root}: no cached CLIP text embeddings", "run hiclr pseudolabel (labeler maskclip) first")
    emb = random_anchors(store.classes)
    cache = Path(store.root) / "cache"
    path = cache / "anchors-random.npy"
    if not path.is_file() or not np.array_equal(load_npy(path), emb):
        atomic_save_npy(path, emb)
        atomic_write_text(cache / "anchors-random.json", json.dumps(
            {"classes": store.classes, "width": RANDOM_WIDTH, "seed": "sha256(class name)[:16 hex]", "warning": RANDOM_WARNING}, indent=1))
    return emb, {"source": "random", "clip_model": None, "clip_weights": None, "warning": RANDOM_WARNING}
