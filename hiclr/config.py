"""Typed configuration: one dataclass per step; defaults ← recipe YAML ← ``--set a.b=value``.

A recipe is a YAML file with one section per step (``prepare``, ``pseudolabel``, ``oversegment``,
``refine``, ``train``, ``evaluate``, ``predict``). Unknown keys are rejected with the closest valid
name. Every step records the resolved config and its fingerprint next to its outputs, so a rerun
with the same settings skips finished scenes and a changed setting redoes them.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml

from hiclr.errors import HiclrError
from hiclr.safeyaml import load_yaml

T = TypeVar("T")

# Fields that change how a step runs but never what it computes: left out of fingerprints.
NON_SEMANTIC = frozenset({"workers", "shard", "overwrite", "progress", "device", "batch_frames", "log_every"})

# The sections a recipe may hold, one per step that reads one (a new step adds its name here).
# Any other top-level key is a misspelling and fails with the closest name.
RECIPE_SECTIONS: tuple[str, ...] = ("synthetic", "scannet", "nuscenes", "pseudolabel", "oversegment", "refine",
                                    "train", "distill", "evaluate", "predict")

# Every numeric setting must be finite and >= 0 (no hiclr setting is negative); a config class
# narrows this with ``RANGES: ClassVar[dict[str, tuple[low, high]]]`` (inclusive, None = open).
Range = tuple[float | None, float | None]


# --------------------------------------------------------------------------------------------
# step configs


@dataclass
class SyntheticConfig:
    """`hiclr prepare synthetic`: procedural indoor rooms with rendered RGB-D views."""

    RANGES: ClassVar[dict[str, Range]] = {"scenes": (1, None), "views": (1, None), "width": (8, None), "height": (8, None),
                                          "spacing": (0.005, 0.5), "val_fraction": (0.0, 1.0)}

    scenes: int = 4  # number of rooms
    seed: int = 0  # base seed; room i uses seed + i
    views: int = 12  # RGB-D views rendered per room
    width: int = 640  # image width in pixels (ScanNet depth grid)
    height: int = 480  # image height in pixels
    spacing: float = 0.03  # target vertex spacing of the tessellated mesh, metres
    ceiling: bool = False  # add a ceiling (labelled ignore, as in ScanNet-20)
    val_fraction: float = 0.25  # share of rooms put in the val split


@dataclass
class ScanNetConfig:
    """`hiclr prepare scannet`: raw ScanNet v2 scans into the store."""

    RANGES: ClassVar[dict[str, Range]] = {"frame_stride": (1, None), "image_width": (8, None), "image_height": (8, None)}

    frame_stride: int = 20  # keep every n-th frame of the RGB-D stream
    splits: list[str] = field(default_factory=lambda: ["train", "val"])
    image_width: int = 640  # colour is resized to the depth grid
    image_height: int = 480


@dataclass
class NuScenesConfig:
    """`hiclr prepare nuscenes`: nuScenes keyframes with lidarseg labels into the store."""

    RANGES: ClassVar[dict[str, Range]] = {"image_scale": (1e-3, 10.0), "normal_knn": (3, None)}

    version: str = "v1.0-trainval"
    splits: list[str] = field(default_factory=lambda: ["train", "val"])
    image_scale: float = 1.0  # camera images (1600x900) and their intrinsics are resized by this factor
    normal_knn: int = 16  # neighbours for LiDAR point normals (PCA), oriented towards the sensor


@dataclass
class PseudolabelConfig:
    """`hiclr pseudolabel`: dense CLIP labels (or imported label maps, or the synthetic-only oracle),
    point↔pixel pairs."""

    RANGES: ClassVar[dict[str, Range]] = {"noise": (0.0, 1.0), "depth_relative": (0.0, 1.0), "batch_frames": (1, None)}

    labeler: str = "maskclip"  # maskclip (dense CLIP) | images (label maps, see labels_from) | oracle (synthetic only)
    dense: str = "maskclip"  # CLIP's last block: maskclip (the paper's) | sclip | clearclip | naclip
    pamr_steps: int = 0  # PAMR refinement steps on the view grid after upsampling (NACLIP uses 10); 0 = off
    labels_from: str = ""  # images labeler: folder of per-view label maps <scene_id>/<view:06d>.png
    clip: str = "ViT-B-16"  # open_clip model name
    clip_weights: str = "openai"  # open_clip pretrained tag, a local checkpoint path, or random (smoke tests only)
    depth_test: str = "absolute"  # absolute | relative
    depth_tolerance: float = 0.05  # metres, for the absolute test
    depth_relative: float = 0.25  # fraction of the measured depth, for the relative test
    min_distance: float = 1.0  # metres; views without depth (LiDAR datasets) pair points farther than this
    noise: float = 0.5  # oracle only: noise level in [0, 1]
    seed: int = 0  # oracle only: base seed of its per-view noise (view v of scene s: seed, s, v)
    systematic: float = 0.0  # oracle only: P(a class is swapped for its fixed look-alike in every view of a scene)
    key_smoothing: bool = False
    prompt_denoising: bool = False
    batch_frames: int = 8
    device: str = "auto"


@dataclass
class OversegmentConfig:
    """`hiclr oversegment`: normal-based graph segmentation (ScanNet Segmentator rule)."""

    RANGES: ClassVar[dict[str, Range]] = {"min_size": (1, None), "knn": (1, None)}

    k_thresh: float = 0.01  # Felzenszwalb–Huttenlocher constant k
    min_size: int = 20  # components smaller than this many vertices are merged
    knn: int = 10  # neighbours per point when the scene has no faces


@dataclass
class RefineConfig:
    """`hiclr refine`: intra-set vote of pseudo-labels per (segment, view)."""

    per_view: bool = True  # vote within each (segment, view); False: one vote per segment


@dataclass
class EvaluateConfig:
    """`hiclr evaluate`: ScanNet-benchmark mIoU of a label array of the store."""

    labels: str = "gt"  # gt | pseudo | refined | pred
    split: str = "val"


# --------------------------------------------------------------------------------------------
# building configs from dictionaries


def _closest(name: str, options: list[str]) -> str:
    match = difflib.get_close_matches(name, options, n=1, cutoff=0.0)
    return f"did you mean '{match[0]}'?" if match else f"valid keys: {', '.join(options)}"


def _coerce(value: Any, typ: Any, where: str) -> Any:
    origin = typing.get_origin(typ)
    if dataclasses.is_dataclass(typ):
        if not isinstance(value, dict):
            raise HiclrError(f"{where}: expected a mapping, got {value!r}", "check the recipe's indentation")
        return from_dict(typ, value, where)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], where)
    if origin is list:
        (item,) = typing.get_args(typ) or (Any,)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise HiclrError(f"{where}: expected a list, got {value!r}", "write it as [a, b] or a,b")
        return [_coerce(v, item, where) for v in value]
    if origin is dict or typ is Any:
        return value
    if isinstance(value, (list, dict)) and typ in (bool, int, float, str):
        raise HiclrError(f"{where}: expected one {typ.__name__}, got a {type(value).__name__}", "give a single value")
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise HiclrError(f"{where}: expected true/false, got {value!r}", "use true or false")
    if typ in (int, float, str):
        if typ is not str and isinstance(value, bool):
            raise HiclrError(f"{where}: expected a number, got {str(value).lower()}", "give a number")
        if typ is int and isinstance(value, float) and not value.is_integer():
            raise HiclrError(f"{where}: expected an integer, got {value!r}", "give a whole number")
        try:
            return typ(value)
        except (TypeError, ValueError):
            raise HiclrError(f"{where}: expected {typ.__name__}, got {value!r}", "fix the value") from None
    return value


def _check_number(value: Any, bounds: Range, where: str) -> None:
    """Numeric settings are finite and inside ``bounds`` (default: >= 0)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    low, high = bounds
    if not math.isfinite(value):
        raise HiclrError(f"{where} = {value!r}: must be a finite number", "give a plain number in the recipe or --set")
    if (low is not None and value < low) or (high is not None and value > high):
        want = (f"in [{low}, {high}]" if high is not None else f"≥ {low}") if low is not None else f"≤ {high}"
        raise HiclrError(f"{where} = {value!r}: out of range", f"give a value {want}")


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys fail with the closest valid name, numbers
    must be finite and in range (``cls.RANGES``, else >= 0)."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    ranges: dict[str, Range] = getattr(cls, "RANGES", {})
    if not isinstance(data, dict):
        raise HiclrError(f"{where or cls.__name__}: expected a mapping of settings, got {data!r}",
                         "write one 'key: value' per line under the section")
    kwargs: dict[str, Any] = {}
    for key, value in (data or {}).items():
        here = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise HiclrError(f"unknown setting '{here}'", _closest(str(key), names))
        kwargs[key] = _coerce(value, hints[key], here)
        for item in kwargs[key] if isinstance(kwargs[key], list) else [kwargs[key]]:
            _check_number(item, ranges.get(key, (0, None)), here)
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["train.epochs=3", "pseudolabel.noise=0.2"]`` → nested dict (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise HiclrError(f"--set {item!r}: expected key=value", "for example --set train.epochs=3")
        key, raw = item.split("=", 1)
        value = load_yaml(raw, f"--set {item!r}", "quote the value, e.g. --set 'a.b=\"text\"'") if raw.strip() else ""
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``over`` into a copy of ``base``."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_recipe(path: Path | str | None) -> dict[str, Any]:
    """The raw sections of a recipe YAML file ({} for None)."""
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        builtin = Path(__file__).resolve().parent.parent / "recipes" / f"{path}"
        if not builtin.suffix:
            builtin = builtin.with_suffix(".yaml")
        if builtin.is_file():
            path = builtin
        else:
            raise HiclrError(f"{path}: recipe not found", "give a path to a YAML file, e.g. recipes/synthetic.yaml")
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise HiclrError(f"{path}: cannot read the recipe ({exc.strerror})", "check the path and its permissions") from exc
    data = load_yaml(text, str(path), "fix the recipe file") or {}
    if not isinstance(data, dict):
        raise HiclrError(f"{path}: a recipe is a mapping of step sections", "see recipes/synthetic.yaml")
    for name in data:
        if name not in RECIPE_SECTIONS:
            raise HiclrError(f"{path}: unknown recipe section '{name}'",
                             _closest(str(name), list(RECIPE_SECTIONS)).replace("valid keys", "sections"))
    return data


def load_section(cls: type[T], section: str, recipe: Path | str | None = None, overrides: list[str] | tuple[str, ...] = (),
                 **cli_values: Any) -> T:
    """Resolve one step's config: dataclass defaults ← recipe section ← ``--set`` ← explicit CLI options.

    ``cli_values`` whose value is None are ignored (an option the user did not give)."""
    data = read_recipe(recipe).get(section, {}) or {}
    sets = parse_overrides(overrides)
    data = merge(data, sets.get(section, {}))
    unknown_sections = set(sets) - {section}
    if unknown_sections:
        raise HiclrError(f"--set {min(unknown_sections)}.…: this command reads only the '{section}' section",
                         f"write --set {section}.KEY=VALUE")
    data = merge(data, {k: v for k, v in cli_values.items() if v is not None})
    return from_dict(cls, data, section)


def fingerprint(cfg: Any, **extra: Any) -> str:
    """A short stable hash of what a config computes (run-time-only fields left out)."""
    d = {k: v for k, v in to_dict(cfg).items() if k not in NON_SEMANTIC}
    d.update(extra)
    blob = json.dumps(d, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def save_config(cfg: Any, path: Path | str) -> None:
    """Write the resolved config as YAML (atomically), next to the step's outputs."""
    from hiclr.store import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(to_dict(cfg), sort_keys=False))
