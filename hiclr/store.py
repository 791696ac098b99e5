"""The on-disk scene store (format version 1, DESIGN.md §2): the contract between pipeline steps.

Layout::

    <root>/dataset.yaml                 name, format_version, classes, source_map, ignore_index, splits
    <root>/scenes/<scene_id>/scene.json provenance per array: producing step, hiclr version, fingerprint
    <root>/scenes/<scene_id>/<name>.npy coord, color, normal, label, faces, intensity, segments, pred
    <root>/scenes/<scene_id>/pairs.npz, refined.npz
    <root>/scenes/<scene_id>/views/{intrinsics.npy, cam_to_world.npy, color/NNNNNN.jpg, depth/NNNNNN.png}

This module owns every path inside a scene: no other code builds one. Every write is atomic
(temporary file in the same folder, then ``os.replace``), so an interrupted step loses nothing
and a rerun resumes. Every read is validated (dtype, shape, one N per scene, finite coordinates,
label range) and a missing output names the step that makes it.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import io
import json
import os
import re
import secrets
import socket
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hiclr import __version__
from hiclr.errors import HiclrError, write_error

FORMAT_VERSION = 1
IGNORE_INDEX = -1
_SCENE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True)
class ArraySpec:
    """What a per-scene array must look like and which step makes it."""

    dtype: str
    trailing: tuple[int, ...]  # shape after the first axis; () for (N,)
    per_point: bool  # first axis is N, the scene's point count
    step: str  # the command that produces it


ARRAYS: dict[str, ArraySpec] = {
    "coord": ArraySpec("float32", (3,), True, "hiclr prepare"),
    "color": ArraySpec("uint8", (3,), True, "hiclr prepare"),
    "normal": ArraySpec("float32", (3,), True, "hiclr prepare"),
    "label": ArraySpec("int16", (), True, "hiclr prepare (the source has no ground truth)"),
    "intensity": ArraySpec("float32", (), True, "hiclr prepare"),
    "faces": ArraySpec("int32", (3,), False, "hiclr prepare (the source is not a mesh)"),
    "segments": ArraySpec("int32", (), True, "hiclr oversegment"),
    "pred": ArraySpec("int16", (), True, "hiclr evaluate --model"),
}
PAIR_KINDS: dict[str, str] = {"pairs": "hiclr pseudolabel", "refined": "hiclr refine"}
PAIR_COLUMNS: dict[str, str] = {"point": "int32", "view": "int16", "label": "int16", "score": "float16"}
VIEW_ARRAYS: dict[str, tuple[tuple[int, ...], str]] = {
    "intrinsics": ((3, 3), "float32"),
    "cam_to_world": ((4, 4), "float32"),
}


# --------------------------------------------------------------------------------------------
# atomic writes
#
# A temporary file is named ``.<name>.<host>.<pid>.<random>.tmp`` beside its target: a later write
# of the same target removes the temporaries that a dead process on this host left (kill -9, power
# loss), and those of other hosts once they are a day old. It is created with mode 0666 less the
# umask, like any file a program opens, so the renamed file can be shared on a cluster.

_STALE_FOREIGN_S = 24 * 3600.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def clean_stale_temporaries(path: Path, every: bool = False) -> list[Path]:
    """Remove temporaries of ``path`` whose writer is gone; returns what was removed.

    ``every``: ``path`` is a folder, and the dead temporaries of every file in it are removed."""
    path = Path(path)
    removed: list[Path] = []
    host = socket.gethostname()
    name = ".+" if every else re.escape(path.name)
    ours = re.compile(rf"^\.{name}\.{re.escape(host)}\.(\d+)\.[0-9a-f]{{8}}\.tmp$")
    folder, pattern = (path, ".*.tmp") if every else (path.parent, f".{glob.escape(path.name)}.*.tmp")
    for tmp in folder.glob(pattern):
        m = ours.match(tmp.name)
        try:
            if m:
                stale = not _pid_alive(int(m.group(1)))
            else:  # another host, or the mkstemp names of hiclr <= 0.1
                stale = time.time() - tmp.stat().st_mtime > _STALE_FOREIGN_S
            if stale:
                tmp.unlink()
                removed.append(tmp)
        except FileNotFoundError:  # its writer renamed or removed it meanwhile
            continue
        except OSError:  # a read-only store: nothing can be cleaned, and reading it must still work
            continue
    return removed


def _write_failed(path: Path, exc: OSError) -> HiclrError:
    return write_error(path, exc)


def _discard(tmp: Path) -> None:
    """Remove a temporary if it is there. On a read-only file system even removing a file that
    does not exist fails (EROFS): that must not hide the error that made the write fail."""
    with contextlib.suppress(OSError):
        tmp.unlink()


def atomic_write_bytes(path: Path, data: bytes) -> int:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    Returns the number of bytes written. An OSError (disk full, no permission) becomes a
    :class:`HiclrError` naming ``path``; the target keeps its previous content and no temporary
    is left behind."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_failed(path.parent, exc) from exc
    clean_stale_temporaries(path)
    tmp = path.parent / f".{path.name}.{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return len(data)
    except OSError as exc:
        _discard(tmp)
        raise _write_failed(path, exc) from exc
    except BaseException:
        _discard(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> int:
    return atomic_write_bytes(path, text.encode("utf-8"))


def npy_bytes(arr: np.ndarray) -> bytes:
    """``arr`` as the bytes of a ``.npy`` file (no pickle)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def atomic_save_npy(path: Path, arr: np.ndarray) -> int:
    """Write ``arr`` as ``.npy`` (no pickle) atomically; returns the file size in bytes."""
    return atomic_write_bytes(path, npy_bytes(arr))


@contextlib.contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``lock_path`` (created if absent) for the block.

    Serialises read-modify-write of a manifest between processes of one machine (and over NFS
    where ``flock`` is supported); a no-op where ``fcntl`` is missing."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:  # a read-only store, or no permission: name the manifest it guards
        raise write_error(Path(lock_path).with_name(Path(lock_path).name.removeprefix(".").removesuffix(".lock")),
                          exc) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _npy_header_problem(f: Any, size: int) -> str | None:
    """Why the ``.npy`` stream ``f`` of ``size`` bytes is not complete, read from its header alone:
    the header's shape and dtype must need exactly the bytes that follow it (a corrupt header may
    claim terabytes, which ``np.load`` would try to allocate)."""
    try:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(f)
        start = f.tell()
    except (OSError, ValueError, EOFError) as exc:
        return f"unreadable header ({exc})"
    expected = start + int(np.prod(shape, dtype=object)) * dtype.itemsize  # Python ints: no overflow
    return None if size == expected else f"{size} bytes, its header needs {expected}"


def npy_problem(path: Path) -> str | None:
    """Why ``path`` is not a complete ``.npy`` file (header read, size checked), or None."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            return _npy_header_problem(f, size)
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"


def npz_problem(path: Path, members: Iterable[str] = ()) -> str | None:
    """Why ``path`` is not a complete ``.npz`` of ``members`` (each member's ``.npy`` header checked
    against its size in the archive, before anything is allocated), or None."""
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            missing = [m for m in members if f"{m}.npy" not in names]
            if missing:
                return f"columns missing ({', '.join(missing)})"
            for info in z.infolist():
                with z.open(info) as f:
                    why = _npy_header_problem(f, info.file_size)
                if why:
                    return f"{info.filename}: {why}"
    except FileNotFoundError:
        return "missing"
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as exc:
        return f"not a readable .npz ({exc})"
    return None


def load_npy(path: Path, mmap: bool = False) -> np.ndarray:
    """Load a ``.npy`` file without pickle; a truncated or corrupt file raises :class:`HiclrError`."""
    why = npy_problem(path)
    if why == "missing":
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(path))
    if why:
        raise HiclrError(f"{path}: truncated or corrupt .npy file ({why})",
                         "rerun the step that wrote it with --overwrite")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise HiclrError(
            f"{path}: unreadable .npy file ({exc})", "the file is truncated or corrupt: rerun the step that wrote it with --overwrite"
        ) from exc


def read_image(path: Path, mode: str | None, hint: str) -> np.ndarray:
    """Decode an image file fully (``mode`` "RGB" converts; None keeps 16-bit depth as it is).

    A truncated or corrupt file raises :class:`HiclrError` naming it, with ``hint``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(im.convert(mode) if mode else im)
    except FileNotFoundError:
        raise
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise HiclrError(f"{path}: unreadable image ({exc})", hint) from exc


# --------------------------------------------------------------------------------------------
# pairs


@dataclass
class Pairs:
    """Point↔view pseudo-label pairs: one row per visible point×view, all columns of length P."""

    point: np.ndarray  # (P,) int32  index into the scene's points
    view: np.ndarray  # (P,) int16  index into the scene's views
    label: np.ndarray  # (P,) int16  class index
    score: np.ndarray  # (P,) float16 confidence of the label in [0, 1]

    def __post_init__(self) -> None:
        for name, dtype in PAIR_COLUMNS.items():
            setattr(self, name, np.ascontiguousarray(np.asarray(getattr(self, name)).astype(dtype, copy=False)))
        sizes = {len(getattr(self, n)) for n in PAIR_COLUMNS}
        if len(sizes) > 1:
            raise HiclrError(f"pair columns have different lengths {sorted(sizes)}", "build Pairs from equal-length arrays")

    def __len__(self) -> int:
        return len(self.point)

    def with_labels(self, label: np.ndarray) -> Pairs:
        return Pairs(self.point, self.view, label, self.score)


# --------------------------------------------------------------------------------------------
# cameras


def camera_problems(intrinsics: np.ndarray | None = None, cam_to_world: np.ndarray | None = None) -> list[tuple[int, str]]:
    """(view, what is wrong) for every view whose camera cannot project a point.

    Intrinsics (V, 3, 3): finite, focal lengths ``fx``, ``fy`` > 0, last row (0, 0, 1). Poses
    (V, 4, 4) camera-to-world: finite, last row (0, 0, 0, 1), a rotation (orthonormal to 1e-2,
    determinant +1). A view failing these makes NaN rays or points behind every camera, so
    pseudolabel would label nothing, or run without end, instead of failing."""
    out: list[tuple[int, str]] = []
    if intrinsics is not None:
        K = np.asarray(intrinsics, dtype=np.float64)
        for v in range(len(K)):
            k = K[v]
            if not np.isfinite(k).all():
                out.append((v, "non-finite intrinsics"))
            elif not (k[0, 0] > 0 and k[1, 1] > 0):
                out.append((v, f"intrinsics with focal lengths fx={k[0, 0]:g}, fy={k[1, 1]:g} (both must be > 0)"))
            elif not np.allclose(k[2], (0, 0, 1), atol=1e-6):
                out.append((v, f"intrinsics whose last row is {k[2].tolist()}, not [0, 0, 1]"))
    if cam_to_world is not None:
        T = np.asarray(cam_to_world, dtype=np.float64)
        for v in range(len(T)):
            t = T[v]
            if not np.isfinite(t).all():
                out.append((v, "a non-finite camera pose"))
                continue
            r = t[:3, :3]
            if not np.allclose(t[3], (0, 0, 0, 1), atol=1e-6):
                out.append((v, f"a camera pose whose last row is {t[3].tolist()}, not [0, 0, 0, 1]"))
            elif np.abs(r.T @ r - np.eye(3)).max() > 1e-2 or np.linalg.det(r) < 0:
                out.append((v, "a camera pose whose 3x3 part is not a rotation"))
    return sorted(out)


def _camera_error(problems: list[tuple[int, str]], where: str, hint: str) -> HiclrError:
    v, what = problems[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return HiclrError(f"{where}: view {v} has {what}{more}", hint)


# --------------------------------------------------------------------------------------------
# local origin

LOCAL_GRID = 1000.0  # metres: a scene is stored relative to its centre rounded to whole kilometres


def local_origin(coord: np.ndarray) -> np.ndarray:
    """(3,) float64 origin that a scene's points and poses are stored relative to.

    The centre of the bounding box of ``coord`` (N, 3) rounded to whole kilometres: zero for a
    scene within 500 m of its frame's origin (ScanNet, nuScenes, synthetic rooms: nothing moves),
    a round number for a georeferenced one (UTM eastings of 10^5-10^6 m, northings of 10^6-10^7 m),
    whose float32 coordinates would otherwise lose centimetres and its poses whole frames."""
    c = np.asarray(coord, dtype=np.float64)
    if c.size == 0:
        return np.zeros(3)
    centre = (c.min(axis=0) + c.max(axis=0)) / 2.0
    return np.round(centre / LOCAL_GRID) * LOCAL_GRID


# --------------------------------------------------------------------------------------------
# the dataset


def check_scene_id(scene_id: str) -> str:
    """Return ``scene_id`` if it is a safe folder name, else raise (no separators, no '..')."""
    if not isinstance(scene_id, str) or not _SCENE_ID.match(scene_id) or ".." in scene_id:
        raise HiclrError(
            f"invalid scene id {scene_id!r}", "scene ids are file-name safe: letters, digits, '_', '-', '.', no '/' or '..'"
        )
    return scene_id


class Store:
    """A dataset on disk: ``dataset.yaml`` plus one folder per scene."""

    def __init__(self, root: Path, meta: dict[str, Any]) -> None:
        self.root = Path(root)
        self.meta = meta

    # -- creation and opening
    @classmethod
    def create(
        cls,
        root: Path | str,
        name: str,
        classes: Sequence[str],
        source_map: dict[int, int] | None = None,
        splits: dict[str, list[str]] | None = None,
    ) -> Store:
        """Write ``dataset.yaml`` (atomically) and return the store. An existing file is replaced."""
        root = Path(root)
        meta = {
            "name": name,
            "format_version": FORMAT_VERSION,
            "hiclr_version": __version__,
            "classes": list(classes),
            "source_map": {int(k): int(v) for k, v in (source_map or {}).items()},
            "ignore_index": IGNORE_INDEX,
            "splits": {k: sorted(map(check_scene_id, v)) for k, v in (splits or {}).items()},
        }
        atomic_write_text(root / "dataset.yaml", yaml.safe_dump(meta, sort_keys=False))
        (root / "scenes").mkdir(parents=True, exist_ok=True)
        return cls(root, meta)

    @classmethod
    def open(cls, root: Path | str) -> Store:
        root = Path(root)
        path = root / "dataset.yaml"
        if not path.is_file():
            raise HiclrError(f"{path}: no dataset here", "create one with 'hiclr prepare synthetic|scannet|nuscenes --out DIR'")
        from hiclr.safeyaml import STORE_VALUES, load_yaml

        try:
            text = path.read_bytes()
        except OSError as exc:
            raise HiclrError(f"{path}: cannot read ({exc.strerror})", "check the store's permissions") from exc
        meta = load_yaml(text, str(path), "rerun 'hiclr prepare' to rewrite it", STORE_VALUES)
        if not isinstance(meta, dict) or not isinstance(meta.get("classes"), list):
            raise HiclrError(f"{path}: missing 'classes'", "rerun 'hiclr prepare' to rewrite it")
        if meta.get("format_version") != FORMAT_VERSION:
            raise HiclrError(
                f"{path}: store format {meta.get('format_version')} but this hiclr reads {FORMAT_VERSION}",
                "prepare the dataset again with this hiclr version",
            )
        meta.setdefault("splits", {})
        meta.setdefault("source_map", {})
        return cls(root, meta)

    def save_meta(self) -> None:
        atomic_write_text(self.root / "dataset.yaml", yaml.safe_dump(self.meta, sort_keys=False))

    def set_split(self, split: str, scene_ids: Iterable[str]) -> None:
        """Add scenes to a split (union with what is there) and rewrite ``dataset.yaml``."""
        current = set(self.meta["splits"].get(split, []))
        current.update(check_scene_id(s) for s in scene_ids)
        self.meta["splits"][split] = sorted(current)
        self.save_meta()

    # -- metadata
    @property
    def name(self) -> str:
        return str(self.meta.get("name", self.root.name))

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def num_classes(self) -> int:
        return len(self.meta["classes"])

    @property
    def ignore_index(self) -> int:
        return int(self.meta.get("ignore_index", IGNORE_INDEX))

    @property
    def splits(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self.meta["splits"].items()}

    def scene_ids(self, split: str | None = None) -> list[str]:
        """Scenes on disk (sorted), or the scenes of ``split``.

        A scene folder without ``scene.json`` (``split`` None or ``"all"``) and a scene the split
        lists but the store lacks are errors that name them: a step never skips them silently."""
        folder = self.root / "scenes"
        present, broken = [], []
        for p in sorted(folder.iterdir()) if folder.is_dir() else []:
            if p.is_dir() and not p.name.startswith("."):
                (present if (p / "scene.json").is_file() else broken).append(p.name)
        if split is None or split == "all":
            if broken:
                raise HiclrError(f"{folder / broken[0] / 'scene.json'}: missing scene manifest"
                                 + (f" (and {len(broken) - 1} more folders without one)" if len(broken) > 1 else ""),
                                 "prepare the scene again (hiclr prepare … --overwrite) or delete its folder")
            return present
        if split not in self.meta["splits"]:
            raise HiclrError(
                f"{self.root / 'dataset.yaml'}: no split {split!r}",
                f"use one of {sorted(self.meta['splits']) + ['all']}",
            )
        wanted = sorted(self.meta["splits"][split])
        lost = [s for s in wanted if s not in set(present)]
        if lost:
            names = ", ".join(lost[:5]) + (" …" if len(lost) > 5 else "")
            what = "have a folder but no scene.json" if set(lost) <= set(broken) else "are not in the store"
            raise HiclrError(f"{self.root / 'dataset.yaml'}: {len(lost)} scenes of split '{split}' {what}: {names}",
                             "prepare them (hiclr prepare …; a --shard job may still be running), "
                             "or remove them from the split in dataset.yaml")
        return wanted

    def scene(self, scene_id: str) -> Scene:
        return Scene(self, check_scene_id(scene_id))


class Scene:
    """One scene folder. Reads validate; writes are atomic and recorded in ``scene.json``.

    ``scene.json`` is updated under a per-scene lock (``.scene.json.lock``) by re-reading it, so
    steps that run at once on one scene (pseudolabel and oversegment) keep each other's records.
    Each record holds the output's size in bytes: an output is up to date only when its file is
    complete (size and ``.npy`` header agree with the record), not because the record exists."""

    def __init__(self, store: Store, scene_id: str) -> None:
        self.store = store
        self.id = scene_id
        self.path = store.root / "scenes" / scene_id
        self._manifest: dict[str, Any] | None = None

    # -- manifest
    @property
    def manifest_path(self) -> Path:
        return self.path / "scene.json"

    def _empty_manifest(self) -> dict[str, Any]:
        return {"scene_id": self.id, "counts": {}, "arrays": {}, "meta": {}}

    def _read_manifest(self) -> dict[str, Any]:
        try:
            m = json.loads(self.manifest_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise HiclrError(f"{self.manifest_path}: corrupt manifest ({exc})", "rerun 'hiclr prepare' with --overwrite") from exc
        if not isinstance(m, dict) or not isinstance(m.get("arrays"), dict):
            raise HiclrError(f"{self.manifest_path}: not a scene manifest", "rerun 'hiclr prepare' with --overwrite")
        return m

    @property
    def manifest(self) -> dict[str, Any]:
        if self._manifest is None:
            if not self.manifest_path.is_file():
                if self.path.is_dir():
                    raise HiclrError(
                        f"{self.manifest_path}: missing scene manifest", "rerun 'hiclr prepare' for this scene with --overwrite"
                    )
                self._manifest = self._empty_manifest()
            else:
                self._manifest = self._read_manifest()
        return self._manifest

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def _update(self, change: Callable[[dict[str, Any]], None]) -> None:
        """Apply ``change`` to the manifest on disk under the scene lock and write it back atomically."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _write_failed(self.path, exc) from exc
        with locked(self.path / ".scene.json.lock"):
            m = self._read_manifest() if self.manifest_path.is_file() else self._empty_manifest()
            for key in ("counts", "arrays", "meta"):
                m.setdefault(key, {})
            change(m)
            atomic_write_text(self.manifest_path, json.dumps(m, indent=1, sort_keys=True))
        self._manifest = m

    def _record(self, name: str, step: str, fingerprint: str, counts: dict[str, Any] | None = None, **extra: Any) -> None:
        entry = {"step": step, "hiclr_version": __version__, "fingerprint": fingerprint, **extra}

        def change(m: dict[str, Any]) -> None:
            m["arrays"][name] = entry
            m["counts"].update(counts or {})

        self._update(change)

    def set_meta(self, **values: Any) -> None:
        """Store free-form scene facts (units, image size, source) in the manifest."""
        self._update(lambda m: m["meta"].update(values))

    @property
    def meta(self) -> dict[str, Any]:
        return dict(self.manifest.get("meta", {}))

    @property
    def origin(self) -> np.ndarray:
        """(3,) float64: world position of the stored coordinates' origin (``coord`` + origin = source frame)."""
        return np.asarray(self.manifest.get("meta", {}).get("origin", (0.0, 0.0, 0.0)), dtype=np.float64)

    def has(self, name: str) -> bool:
        return name in self.manifest["arrays"] and self._file(name).is_file()

    def problem(self, name: str) -> str | None:
        """Why the recorded output ``name`` is not usable as it is (missing, truncated, resized), or None."""
        entry = self.manifest["arrays"].get(name)
        if entry is None:
            return "not recorded"
        path = self._file(name)
        if not path.is_file():
            return f"{path} missing"
        size = path.stat().st_size
        if "bytes" in entry and size != entry["bytes"]:
            return f"{path}: {size} bytes, {entry['bytes']} when written"
        if path.suffix == ".npy":
            why = npy_problem(path)
            if why:
                return f"{path}: {why}"
        elif path.suffix == ".npz":
            why = npz_problem(path, PAIR_COLUMNS)
            if why:
                return f"{path}: {why}"
        if name == "views":
            for kind, sizes in entry.get("image_bytes", {}).items():
                for v, want in enumerate(sizes):
                    img = self._view_image(kind, v)
                    if not img.is_file() or img.stat().st_size != want:
                        return f"{img}: missing or not the size written"
            why = npy_problem(self._file("intrinsics"))
            if why:
                return f"{self._file('intrinsics')}: {why}"
        return None

    def fingerprint(self, name: str) -> str | None:
        """The config fingerprint of output ``name`` when it is recorded and its file is intact, else None."""
        entry = self.manifest["arrays"].get(name)
        return entry["fingerprint"] if entry and self.problem(name) is None else None

    def remove(self) -> None:
        """Delete the scene folder before it is prepared again.

        The outputs of later steps (pairs, segments, refined, pred) that are intact are first set
        aside in ``scenes/.<id>.later``: :meth:`restore_later`, called once prepare has written
        the scene again, puts them back when the prepared arrays came back byte-identical (a
        repair), and otherwise removes them and says so. A scene folder that is a symbolic link is
        refused: the data it points to lies outside the store and is never deleted."""
        import shutil

        if self.path.is_symlink():
            raise HiclrError(f"{self.path}: the scene folder is a symbolic link (to {os.readlink(self.path)}); "
                             "hiclr does not delete data outside the store",
                             f"remove the link (rm {self.path}) or replace it with a real folder, then rerun")
        try:
            if self.path.exists():
                self._set_aside_later()
                shutil.rmtree(self.path)
        except OSError as exc:
            raise _write_failed(Path(exc.filename or self.path), exc) from exc
        self._manifest = None

    @property
    def _later_path(self) -> Path:
        return self.path.parent / f".{self.id}.later"

    def _prepared_digests(self, manifest: dict[str, Any]) -> dict[str, str | None]:
        return {n: e.get("sha256") for n, e in manifest.get("arrays", {}).items()
                if str(e.get("step", "")).startswith("hiclr prepare")}

    def _set_aside_later(self) -> None:
        """Move the intact outputs of later steps to :attr:`_later_path`, with their records and the
        digests of the prepared arrays they were computed from. A folder left there by an
        interrupted prepare is kept when the scene has nothing newer to set aside."""
        import shutil

        try:
            m = self._read_manifest() if self.manifest_path.is_file() else self._empty_manifest()
        except HiclrError:  # a corrupt scene.json: nothing can be trusted
            return
        later = {n: e for n, e in m["arrays"].items()
                 if not str(e.get("step", "")).startswith("hiclr prepare") and self.problem(n) is None}
        if not later:
            return
        held = self._later_path
        if held.exists():
            shutil.rmtree(held)
        held.mkdir()
        for name in later:
            os.replace(self._file(name), held / self._file(name).name)
        atomic_write_text(held / "records.json", json.dumps(
            {"prepared": self._prepared_digests(m), "counts": m.get("counts", {}), "later": later}, indent=1))

    def restore_later(self) -> list[str]:
        """After prepare wrote the scene again: put back the outputs :meth:`remove` set aside if
        the prepared arrays are byte-identical to those they were computed from (same digests,
        same counts), else delete them. Returns a note for the user when something was removed."""
        import shutil

        held = self._later_path
        if not held.is_dir():
            return []
        try:
            rec = json.loads((held / "records.json").read_text())
            later: dict[str, Any] = rec["later"]
        except (OSError, ValueError, KeyError, TypeError):
            shutil.rmtree(held, ignore_errors=True)
            return []
        m = self._read_manifest()
        old, new = rec.get("prepared", {}), self._prepared_digests(m)
        same = old == new and all(new.values()) and all(m.get("counts", {}).get(k) == v
                                                           for k, v in rec.get("counts", {}).items())
        if same:
            for name in later:
                os.replace(held / self._file(name).name, self._file(name))
            self._update(lambda mm: mm["arrays"].update(later))
        shutil.rmtree(held, ignore_errors=True)
        if same:
            return []
        steps = sorted({str(e.get("step", "")).split(" (")[0] for e in later.values()})
        if not all(old.values()):
            why = "its old arrays were written by an older hiclr, without content digests to compare"
        else:
            why = f"prepared again with different content ({', '.join(sorted(n for n in set(old) | set(new) if old.get(n) != new.get(n)))})"
        return [f"scene {self.id}: {why}, so its {', '.join(sorted(later))} were removed: rerun {', '.join(steps)}"]

    def clean_temporaries(self) -> list[Path]:
        """Remove the temporaries that dead writers left in the scene (a killed step): a rerun that
        finds the scene up to date leaves no half-written file behind."""
        if not self.path.is_dir() or self.path.is_symlink():
            return []
        return [p for d in (self.path, self.path / "views") if d.is_dir() for p in clean_stale_temporaries(d, every=True)]

    def is_done(self, name: str, fingerprint: str) -> bool:
        """True when ``name`` exists intact and was made with this exact config fingerprint (dead
        writers' temporaries in the scene are removed first)."""
        self.clean_temporaries()
        return self.fingerprint(name) == fingerprint

    def is_prepared(self, fingerprint: str) -> bool:
        """True when prepare finished this scene with ``fingerprint`` and all its outputs are intact."""
        self.clean_temporaries()
        m = self.manifest if self.exists() else {}
        if m.get("meta", {}).get("prepared") != fingerprint:
            return False
        return all(self.problem(n) is None for n, e in m["arrays"].items() if str(e.get("step", "")).startswith("hiclr prepare"))

    @property
    def num_points(self) -> int:
        n = self.manifest.get("counts", {}).get("points")
        if n is None:
            raise HiclrError(f"{self.manifest_path}: scene has no points", "run 'hiclr prepare' first")
        return int(n)

    # -- arrays
    def path_of(self, name: str) -> Path:
        """The file of array or output ``name`` (for messages; read and write through the methods)."""
        return self._file(name)

    def _file(self, name: str) -> Path:
        if name in PAIR_KINDS:
            return self.path / f"{name}.npz"
        if name in VIEW_ARRAYS:
            return self.path / "views" / f"{name}.npy"
        if name == "views":
            return self.path / "views" / "cam_to_world.npy"
        if name not in ARRAYS:
            raise HiclrError(f"unknown scene array {name!r}", f"one of {sorted(ARRAYS)}")
        return self.path / f"{name}.npy"

    def write(self, name: str, arr: np.ndarray, step: str, fingerprint: str) -> None:
        """Validate and atomically write a per-scene array, then record its provenance.

        ``coord`` is given in the source's frame (float64 keeps georeferenced positions exact) and
        stored relative to :func:`local_origin`, recorded as ``meta.origin`` in ``scene.json``;
        write it before the views, whose poses are shifted by the same origin."""
        spec = ARRAYS.get(name)
        if spec is None:
            raise HiclrError(f"unknown scene array {name!r}", f"one of {sorted(ARRAYS)}")
        arr = np.asarray(arr)
        counts: dict[str, Any] = {}
        origin = None
        if name == "coord":
            where = f"writing coord of scene {self.id}"
            if arr.ndim != 2 or arr.shape[1:] != (3,) or len(arr) == 0:
                raise HiclrError(f"{where}: shape {arr.shape}: a scene needs at least one point, (N, 3)",
                                 "check the source file has vertices")
            world = arr.astype(np.float64, copy=False)
            if not np.isfinite(world).all():
                raise HiclrError(f"{where}: non-finite values (NaN or inf)", "clean the source point cloud")
            origin = local_origin(world)
            arr = world - origin if origin.any() else world
            counts["points"] = int(arr.shape[0])
        arr = arr.astype(spec.dtype, copy=False)
        self._validate(name, arr, where=f"writing {name} of scene {self.id}", points=counts.get("points"))
        data = npy_bytes(arr)
        nbytes = atomic_write_bytes(self._file(name), data)
        entry = {"step": step, "hiclr_version": __version__, "fingerprint": fingerprint,
                 "shape": list(arr.shape), "dtype": spec.dtype, "bytes": nbytes,
                 "sha256": hashlib.sha256(data).hexdigest()}

        def change(m: dict[str, Any]) -> None:
            m["arrays"][name] = entry
            m["counts"].update(counts)
            if origin is not None:
                m["meta"].pop("origin", None)
                if origin.any():
                    m["meta"]["origin"] = origin.tolist()

        self._update(change)

    def read(self, name: str, mmap: bool = False) -> np.ndarray:
        """Read and validate a per-scene array; a missing one names the step that makes it."""
        spec = ARRAYS.get(name)
        if spec is None:
            raise HiclrError(f"unknown scene array {name!r}", f"one of {sorted(ARRAYS)}")
        path = self._file(name)
        if not path.is_file():
            raise HiclrError(f"{path}: scene {self.id} has no {name}", f"run {spec.step} first")
        arr = load_npy(path, mmap=mmap)
        self._validate(name, arr, where=str(path))
        return arr

    def _validate(self, name: str, arr: np.ndarray, where: str, points: int | None = None) -> None:
        spec = ARRAYS[name]
        fix = f"rerun {spec.step.split(' (')[0]} with --overwrite"
        if arr.dtype != np.dtype(spec.dtype):
            raise HiclrError(f"{where}: dtype {arr.dtype}, expected {spec.dtype}", fix)
        if arr.ndim != 1 + len(spec.trailing) or tuple(arr.shape[1:]) != spec.trailing:
            want = "(N" + "".join(f", {t}" for t in spec.trailing) + ")"
            raise HiclrError(f"{where}: shape {arr.shape}, expected {want}", fix)
        n = points if points is not None else self.manifest.get("counts", {}).get("points")
        if spec.per_point and n is not None and arr.shape[0] != n:
            raise HiclrError(f"{where}: {arr.shape[0]} rows but the scene has {n} points", fix)
        if name in ("coord", "normal", "intensity") and not np.isfinite(arr).all():
            raise HiclrError(f"{where}: non-finite values (NaN or inf)", fix)
        if name in ("label", "pred"):
            c = self.store.num_classes
            if arr.size and (arr.min() < IGNORE_INDEX or arr.max() >= c):
                raise HiclrError(f"{where}: labels outside [-1, {c - 1}] (min {arr.min()}, max {arr.max()})", fix)
        if name == "faces" and n is not None and arr.size and (arr.min() < 0 or arr.max() >= n):
            raise HiclrError(f"{where}: face indices outside [0, {n - 1}]", fix)

    # -- pairs
    def write_pairs(self, kind: str, pairs: Pairs, step: str, fingerprint: str) -> None:
        if kind not in PAIR_KINDS:
            raise HiclrError(f"unknown pair kind {kind!r}", f"one of {sorted(PAIR_KINDS)}")
        self._validate_pairs(pairs, where=f"writing {kind} of scene {self.id}")
        buf = io.BytesIO()
        np.savez(buf, **{c: getattr(pairs, c) for c in PAIR_COLUMNS})
        nbytes = atomic_write_bytes(self._file(kind), buf.getvalue())
        self._record(kind, step, fingerprint, rows=len(pairs), bytes=nbytes)

    def read_pairs(self, kind: str = "pairs") -> Pairs:
        if kind not in PAIR_KINDS:
            raise HiclrError(f"unknown pair kind {kind!r}", f"one of {sorted(PAIR_KINDS)}")
        path = self._file(kind)
        if not path.is_file():
            raise HiclrError(f"{path}: scene {self.id} has no {kind}", f"run {PAIR_KINDS[kind]} first")
        why = npz_problem(path, PAIR_COLUMNS)
        if why:
            raise HiclrError(f"{path}: unreadable pairs file ({why})", f"rerun {PAIR_KINDS[kind]} with --overwrite")
        try:
            with np.load(path, allow_pickle=False) as z:
                cols = {c: z[c] for c in PAIR_COLUMNS}
        except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise HiclrError(f"{path}: unreadable pairs file ({exc})", f"rerun {PAIR_KINDS[kind]} with --overwrite") from exc
        pairs = Pairs(**cols)
        self._validate_pairs(pairs, where=str(path))
        return pairs

    def _validate_pairs(self, pairs: Pairs, where: str) -> None:
        n, v, c = self.manifest.get("counts", {}).get("points"), self.num_views, self.store.num_classes
        if len(pairs) == 0:
            return
        if pairs.point.min() < 0 or (n is not None and pairs.point.max() >= n):
            raise HiclrError(f"{where}: point index outside the scene's {n} points", "rerun the step with --overwrite")
        if pairs.view.min() < 0 or pairs.view.max() >= max(v, 1):
            raise HiclrError(f"{where}: view index outside the scene's {v} views", "rerun the step with --overwrite")
        if pairs.label.min() < 0 or pairs.label.max() >= c:
            raise HiclrError(f"{where}: pair labels outside [0, {c - 1}]", "rerun the step with --overwrite")

    # -- views
    @property
    def num_views(self) -> int:
        return int(self.manifest.get("counts", {}).get("views", 0))

    def _view_image(self, kind: str, v: int) -> Path:
        ext = "jpg" if kind == "color" else "png"
        return self.path / "views" / kind / f"{v:06d}.{ext}"

    def write_views(
        self,
        intrinsics: np.ndarray,
        cam_to_world: np.ndarray,
        colors: Iterable[np.ndarray],
        depths: Iterable[np.ndarray] | None,
        step: str,
        fingerprint: str,
        jpeg_quality: int = 95,
    ) -> None:
        """Write all views of the scene: intrinsics (V,3,3), poses (V,4,4), RGB uint8 (H,W,3) frames
        and optional depth frames (float metres or uint16 millimetres, 0 = no measurement).

        Poses are in the source's frame (float64 keeps georeferenced ones exact) and stored relative
        to the scene's origin (:attr:`origin`, set when ``coord`` was written)."""
        from PIL import Image

        K = np.asarray(intrinsics, dtype=np.float32)
        T = np.array(cam_to_world, dtype=np.float64)
        if K.ndim != 3 or K.shape[1:] != (3, 3) or T.shape != (len(K), 4, 4):
            raise HiclrError(f"scene {self.id}: intrinsics {K.shape} / poses {T.shape} do not match (V,3,3)/(V,4,4)", "fix the converter")
        problems = camera_problems(K, T)
        if problems:
            raise _camera_error(problems, f"writing views of scene {self.id}",
                                "fix the source's camera intrinsics and poses, or leave those frames out")
        T[:, :3, 3] -= self.origin
        T = T.astype(np.float32)
        vdir = self.path / "views"
        sizes: dict[str, list[int]] = {"color": []}
        shapes: list[tuple[int, ...]] = []
        digest = hashlib.sha256()  # of everything below: tells a re-prepared scene's views from the old ones
        for v, rgb in enumerate(colors):
            shapes.append(np.shape(rgb)[:2])
            buf = io.BytesIO()
            Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(buf, format="JPEG", quality=jpeg_quality)
            digest.update(buf.getvalue())
            sizes["color"].append(atomic_write_bytes(self._view_image("color", v), buf.getvalue()))
        n_color = len(K)
        if depths is not None:
            for v, d in enumerate(depths):
                d = np.asarray(d)
                if v < len(shapes) and d.shape != shapes[v]:
                    raise HiclrError(f"writing views of scene {self.id}: depth frame {v} is {d.shape[1]}x{d.shape[0]} "
                                     f"but its colour frame is {shapes[v][1]}x{shapes[v][0]}",
                                     "store depth on the colour frame's grid (the converter must resample it)")
                if d.dtype != np.uint16:
                    d = np.clip(np.round(np.nan_to_num(d, nan=0.0, posinf=0.0) * 1000.0), 0, 65535).astype(np.uint16)
                buf = io.BytesIO()
                Image.fromarray(d).save(buf, format="PNG", compress_level=1)  # 4-7x faster than the default, ~10 % larger
                digest.update(buf.getvalue())
                sizes.setdefault("depth", []).append(atomic_write_bytes(self._view_image("depth", v), buf.getvalue()))
        k_bytes, t_bytes = npy_bytes(K), npy_bytes(T)
        digest.update(k_bytes + t_bytes)
        atomic_write_bytes(vdir / "intrinsics.npy", k_bytes)
        nbytes = atomic_write_bytes(vdir / "cam_to_world.npy", t_bytes)
        self._record("views", step, fingerprint, counts={"views": n_color, "has_depth": depths is not None},
                     views=n_color, bytes=nbytes, image_bytes=sizes, sha256=digest.hexdigest())

    def intrinsics(self) -> np.ndarray:
        return self._read_view_array("intrinsics")

    def cam_to_world(self) -> np.ndarray:
        return self._read_view_array("cam_to_world")

    def _read_view_array(self, name: str) -> np.ndarray:
        path = self._file(name)
        if not path.is_file():
            raise HiclrError(f"{path}: scene {self.id} has no views", "run 'hiclr prepare' with frames for this scene")
        arr = load_npy(path)
        shape, dtype = VIEW_ARRAYS[name]
        if arr.dtype != np.dtype(dtype) or arr.shape[1:] != shape or len(arr) != self.num_views:
            raise HiclrError(f"{path}: expected ({self.num_views}, {shape}) {dtype}, got {arr.shape} {arr.dtype}", "rerun 'hiclr prepare' with --overwrite")
        problems = camera_problems(**{name: arr})
        if problems:
            raise _camera_error(problems, f"{path} (scene {self.id})", "rerun 'hiclr prepare' for this scene with --overwrite")
        return arr

    def read_color(self, v: int) -> np.ndarray:
        """RGB frame ``v`` as uint8 (H, W, 3)."""

        path = self._view_image("color", v)
        if not path.is_file():
            raise HiclrError(f"{path}: missing colour frame {v} of scene {self.id}", "rerun 'hiclr prepare' with --overwrite")
        return read_image(path, "RGB", "rerun 'hiclr prepare' with --overwrite")

    def has_depth(self) -> bool:
        return bool(self.manifest.get("counts", {}).get("has_depth", False))

    def read_depth(self, v: int) -> np.ndarray | None:
        """Depth frame ``v`` in metres as float32 (H, W), 0 = no measurement; None without depth."""
        if not self.has_depth():
            return None
        path = self._view_image("depth", v)
        if not path.is_file():
            raise HiclrError(f"{path}: missing depth frame {v} of scene {self.id}", "rerun 'hiclr prepare' with --overwrite")
        d = read_image(path, None, "rerun 'hiclr prepare' with --overwrite")
        if d.dtype not in (np.uint16, np.int32, np.uint32):
            raise HiclrError(f"{path}: depth PNG is {d.dtype}, expected 16-bit millimetres", "rerun 'hiclr prepare' with --overwrite")
        return d.astype(np.float32) / 1000.0
