"""A disk cache of CLIP class text embeddings.

Encoding 85 prompts per class through the CLIP text tower takes seconds on a CPU; every step that
needs the class embeddings (pseudolabel, train, evaluate, predict) reads them from this cache
instead. An entry is two files in ``cache_dir``:

- ``text_<key>.npy``  float32 (C, D), one unit-norm row per class, in class order;
- ``text_<key>.json`` what produced it: model name, weights id, class list, template hash, D.

``key`` hashes the JSON fields, so entries of different models or class lists live side by side.
An entry is reused only when every field matches and the array checks out (shape, finite,
unit-norm rows); otherwise it is recomputed and replaced. Both files are written atomically
(temp file + ``os.replace``), the JSON last, so a reader never sees a half-written entry.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from hiclr.vlm.prompts import templates_hash

CACHE_FORMAT = 1


class TextEncoder(Protocol):
    """What the cache needs from a model (``MaskCLIP`` provides it)."""

    model_name: str
    weights_id: str
    templates: tuple[str, ...]

    def text_embeddings(self, class_names: Sequence[str]) -> torch.Tensor: ...


def _atomic_write_bytes(path: Path, write: Any) -> None:
    """Write through ``write(file_object)`` into memory, then atomically to ``path`` (the store's
    helper: umask respected, stale temporaries cleaned, disk errors name the file)."""
    from hiclr.store import atomic_write_bytes

    buf = io.BytesIO()
    write(buf)
    atomic_write_bytes(path, buf.getvalue())


def embed_class_names(clip: TextEncoder, class_names: Sequence[str], batch: int = 32,
                      progress: bool = False) -> torch.Tensor:
    """``clip.text_embeddings`` over ``class_names`` in batches of ``batch`` classes, with a progress
    bar when ``progress``: (C, D) float32 on the CPU. A row depends only on its class name, so the
    result equals one call over all names; a thousand classes show their progress and rate."""
    from tqdm import tqdm

    names = list(class_names)
    step = max(int(batch), 1)
    rows: list[torch.Tensor] = []
    with tqdm(total=len(names), desc="text embeddings", unit="class", disable=not progress or not names,
              leave=False) as bar:
        for i in range(0, len(names), step):
            chunk = names[i: i + step]
            rows.append(clip.text_embeddings(chunk).detach().to("cpu", torch.float32))
            bar.update(len(chunk))
    return torch.cat(rows) if rows else torch.zeros(0, 0)


def cache_meta(clip: TextEncoder, class_names: Sequence[str]) -> dict[str, Any]:
    """The fields that identify a cache entry (everything but the embedding width)."""
    return {
        "format": CACHE_FORMAT,
        "model_name": clip.model_name,
        "weights_id": clip.weights_id,
        "classes": list(class_names),
        "templates_hash": templates_hash(clip.templates),
        "num_templates": len(clip.templates),
    }


def cache_paths(cache_dir: Path, meta: dict[str, Any]) -> tuple[Path, Path]:
    """``(npy, json)`` paths of the entry for ``meta``."""
    key = hashlib.sha256(json.dumps(meta, sort_keys=True).encode("utf-8")).hexdigest()[:16]
    return cache_dir / f"text_{key}.npy", cache_dir / f"text_{key}.json"


def _read_entry(npy: Path, jsn: Path, meta: dict[str, Any]) -> torch.Tensor | None:
    """The cached (C, D) embeddings when the entry exists, matches ``meta`` and is sound."""
    if not (npy.is_file() and jsn.is_file()):
        return None
    try:
        stored = json.loads(jsn.read_text(encoding="utf-8"))
        arr = np.load(npy, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if {k: stored.get(k) for k in meta} != meta:
        return None
    if arr.dtype != np.float32 or arr.shape != (len(meta["classes"]), stored.get("dim")):
        return None
    if not np.all(np.isfinite(arr)) or not np.allclose(np.linalg.norm(arr, axis=1), 1.0, atol=1e-3):
        return None
    return torch.from_numpy(np.ascontiguousarray(arr))


def cached_text_embeddings(cache_dir: Path, clip: TextEncoder, class_names: Sequence[str],
                           progress: bool = False) -> torch.Tensor:
    """Class text embeddings (C, D) float32 on the CPU, unit-norm rows, read from or added to the cache.

    ``clip`` is a ``MaskCLIP`` (or anything with ``model_name``, ``weights_id``, ``templates`` and
    ``text_embeddings``). A random-weights model has a weights id that names its parameters, so two
    random initialisations never share an entry.
    """
    cache_dir = Path(cache_dir)
    meta = cache_meta(clip, class_names)
    npy, jsn = cache_paths(cache_dir, meta)
    hit = _read_entry(npy, jsn, meta)
    if hit is not None:
        return hit
    emb = embed_class_names(clip, class_names, progress=progress).contiguous()
    cache_dir.mkdir(parents=True, exist_ok=True)
    arr = emb.numpy()
    _atomic_write_bytes(npy, lambda f: np.save(f, arr, allow_pickle=False))
    record = dict(meta, dim=int(arr.shape[1]))
    blob = json.dumps(record, indent=1, ensure_ascii=False).encode("utf-8")
    _atomic_write_bytes(jsn, lambda f: f.write(blob))
    return emb
