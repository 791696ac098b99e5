"""Prompt templates for CLIP text embeddings.

``TEMPLATES`` holds the 85 templates that MaskCLIP and CLIP2Scene use: CLIP's 80 ImageNet templates
(Radford et al. 2021, ``Prompt_Engineering_for_ImageNet.ipynb``, in that order) followed by 5
scene templates ("there is a {} in the scene." …). Each template has one ``{}`` for the class name.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

# CLIP's 80 ImageNet templates, in CLIP's order.
IMAGENET_TEMPLATES: tuple[str, ...] = (
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a plushie {}.",
    "a photo of the nice {}.",
    "a photo of the small {}.",
    "a photo of the weird {}.",
    "the cartoon {}.",
    "art of the {}.",
    "a drawing of the {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "the plushie {}.",
    "a dark photo of a {}.",
    "itap of a {}.",
    "graffiti of the {}.",
    "a toy {}.",
    "itap of my {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "a tattoo of the {}.",
)

# MaskCLIP's 5 scene templates.
SCENE_TEMPLATES: tuple[str, ...] = (
    "there is a {} in the scene.",
    "there is the {} in the scene.",
    "this is a {} in the scene.",
    "this is the {} in the scene.",
    "this is one {} in the scene.",
)

TEMPLATES: tuple[str, ...] = IMAGENET_TEMPLATES + SCENE_TEMPLATES


def prompts_for(class_name: str, templates: tuple[str, ...] = TEMPLATES) -> list[str]:
    """The prompts of one class: every template with ``{}`` replaced by ``class_name``."""
    return [t.format(class_name) for t in templates]


def templates_hash(templates: tuple[str, ...] = TEMPLATES) -> str:
    """A short, stable hash of a template list (order matters), for caches."""
    blob = json.dumps(list(templates), ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def normalise_name(name: str) -> str:
    """The form two class names are compared in: lower case, inner whitespace collapsed."""
    return " ".join(name.split()).lower()


def read_class_names(path: Path | str) -> list[str]:
    """Class names of a prompts file: one per line, blank lines and ``#`` comments skipped.

    The file must be UTF-8 and name each class once (compared by :func:`normalise_name`): a
    duplicate would give two rows of one class, whose points then count under either name."""
    from hiclr.errors import HiclrError

    path = Path(path)
    if not path.is_file():
        raise HiclrError(f"{path}: no such prompts file", "write one class name per line")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise HiclrError(f"{path}: line {line} is not UTF-8 text (byte {data[exc.start]:#04x})",
                         "save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None
    names: list[str] = []
    first: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        name = raw.strip()
        if not name or name.startswith("#"):
            continue
        key = normalise_name(name)
        if key in first:
            raise HiclrError(f"{path}: line {number} repeats the class of line {first[key]} ({name!r})",
                             "name each class once (case and spaces do not make a new class)")
        first[key] = number
        names.append(name)
    if not names:
        raise HiclrError(f"{path}: no class names", "write one class name per line")
    return names
