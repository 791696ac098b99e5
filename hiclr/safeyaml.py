"""YAML read from users (recipes, ``--set`` values, ``dataset.yaml``): PyYAML's safe loader, checked.

``yaml.safe_load`` already refuses tags that would run code. It still accepts two things that hurt:

- a key given twice (``train:`` twice in a recipe) silently keeps the last one;
- anchors and aliases (``&a``/``*a``) let a few hundred bytes describe a tree of billions of values
  (an "alias bomb"): loading is cheap, but any code that walks the settings (checking, hashing,
  printing) runs out of memory.

:func:`load_yaml` refuses both, and undecodable bytes, as one :class:`HiclrError` that names the source.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from hiclr.errors import HiclrError, yaml_reason

# The most values a document may expand to (aliases counted at every use). Recipes hold a few
# hundred; a store's dataset.yaml lists its scenes (ScanNet: ~1,600; nuScenes: ~34,000), so it is
# read with STORE_VALUES.
MAX_VALUES = 10_000
STORE_VALUES = 1_000_000


class _Duplicate(yaml.constructor.ConstructorError):
    pass


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping key given twice."""

    def construct_mapping(self, node: Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: the base class reports it
                    break
                if first is not None:
                    raise _Duplicate(None, None, f"'{key}' is given twice (first on line {first.line + 1})",
                                     key_node.start_mark)
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def _expanded_size(root: Node, limit: int) -> int:
    """Values in the tree under ``root`` with every alias expanded, counted up to just past ``limit``."""
    sizes: dict[int, int] = {}
    busy: set[int] = set()

    def size(node: Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in busy:  # an alias inside its own anchor: an endless tree
            return limit + 1
        busy.add(key)
        total = 1
        if isinstance(node, SequenceNode):
            children = node.value
        elif isinstance(node, MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = []
        for child in children:
            total += size(child)
            if total > limit:
                break
        busy.discard(key)
        sizes[key] = total
        return total

    return size(root)


def load_yaml(data: str | bytes, source: str, hint: str, limit: int = MAX_VALUES) -> Any:
    """Parse one YAML document from ``data`` (bytes must be UTF-8).

    Args:
        source: what the text is, for the error line (a file path, ``--set 'a.b=…'``).
        hint: the fix to suggest when the text is not valid YAML.
    Raises:
        HiclrError: not UTF-8, invalid YAML (line and column given), a tag (``!!python/…``; never
        run), a key given twice, or aliases expanding to more than ``limit`` values."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise HiclrError(f"{source}: not UTF-8 text (byte {exc.start}, line {line})",
                             "save the file as UTF-8") from None
    loader = _Loader(data)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, limit) > limit:
            raise HiclrError(f"{source}: its anchors and aliases (&name, *name) expand to more than {limit:,} values",
                             "write the settings out in full, without anchors and aliases")
        return loader.construct_document(node)
    except _Duplicate as exc:
        raise HiclrError(f"{source}: {yaml_reason(exc)}", "keep one of them (merge the two into one)") from None
    except yaml.constructor.ConstructorError as exc:
        if "tag" in str(exc.problem):
            hint = "YAML tags (!!python/…, !!binary, …) are not read, nor run: give a plain value"
        raise HiclrError(f"{source}: not valid YAML ({yaml_reason(exc)})", hint) from None
    except yaml.YAMLError as exc:
        raise HiclrError(f"{source}: not valid YAML ({yaml_reason(exc)})", hint) from None
    finally:
        loader.dispose()
