"""PLY files read and written with NumPy alone (ascii, binary little- and big-endian).

Why not open3d: it keeps only positions, colours and normals, so the ``label`` vertex property of
ScanNet's ``<scan>_vh_clean_2.labels.ply`` is lost. This reader returns every vertex property.

The format (Greg Turk, 1994): a text header ``ply`` / ``format <fmt> 1.0`` / ``element <name>
<count>`` followed by its ``property <type> <name>`` or ``property list <count type> <item type>
<name>`` lines / ``end_header``, then the elements in header order. Scalar types: char/int8,
uchar/uint8, short/int16, ushort/uint16, int/int32, uint/uint32, float/float32, double/float64.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hiclr.errors import HiclrError

_TYPES: dict[str, str] = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
_NAMES: dict[str, str] = {"i1": "char", "u1": "uchar", "i2": "short", "u2": "ushort", "i4": "int",
                          "u4": "uint", "f4": "float", "f8": "double"}
_FORMATS = {"ascii": "", "binary_little_endian": "<", "binary_big_endian": ">"}


@dataclass
class _Element:
    name: str
    count: int
    scalars: list[tuple[str, str]] = field(default_factory=list)  # (name, numpy code)
    lists: list[tuple[str, str, str]] = field(default_factory=list)  # (name, count code, item code)
    order: list[str] = field(default_factory=list)  # property names in file order


def _fail(path: Path, what: str) -> HiclrError:
    return HiclrError(f"{path}: not a readable PLY file ({what})", "check the file is complete; re-download it if not")


def _parse_header(path: Path, data: bytes) -> tuple[str, list[_Element], int]:
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise _fail(path, "no 'ply' magic or no 'end_header'")
    body_start = data.index(b"\n", end) + 1
    fmt = ""
    elements: list[_Element] = []
    for raw in data[:end].decode("ascii", errors="replace").splitlines()[1:]:
        tok = raw.split()
        if not tok or tok[0] in ("comment", "obj_info"):
            continue
        if tok[0] == "format":
            if len(tok) < 2 or tok[1] not in _FORMATS:
                raise _fail(path, f"unknown format line {raw!r}")
            fmt = tok[1]
        elif tok[0] == "element":
            if len(tok) != 3 or not tok[2].isdigit():
                raise _fail(path, f"bad element line {raw!r}: expected 'element <name> <count>'")
            elements.append(_Element(tok[1], int(tok[2])))
        elif tok[0] == "property" and elements:
            el = elements[-1]
            if len(tok) != (5 if tok[1:2] == ["list"] else 3):
                raise _fail(path, f"bad property line {raw!r}")
            if tok[1] == "list":
                if tok[2] not in _TYPES or tok[3] not in _TYPES:
                    raise _fail(path, f"unknown type in {raw!r}")
                el.lists.append((tok[4], _TYPES[tok[2]], _TYPES[tok[3]]))
            else:
                if tok[1] not in _TYPES:
                    raise _fail(path, f"unknown type in {raw!r}")
                if el.lists:
                    raise _fail(path, f"element {el.name}: scalar property after a list property is not supported")
                el.scalars.append((tok[2], _TYPES[tok[1]]))
            el.order.append(tok[-1])
        else:
            raise _fail(path, f"unexpected header line {raw!r}")
    if not fmt:
        raise _fail(path, "no format line")
    return fmt, elements, body_start


def _read_binary_element(path: Path, el: _Element, buf: memoryview, pos: int, endian: str) -> tuple[dict, int]:
    """Decode one binary element starting at byte ``pos``; returns (arrays, next position)."""
    scalar_dt = np.dtype([(n, endian + c) for n, c in el.scalars])
    if not el.lists:
        size = scalar_dt.itemsize * el.count
        if pos + size > len(buf):
            raise _fail(path, f"element {el.name} truncated")
        arr = np.frombuffer(buf, dtype=scalar_dt, count=el.count, offset=pos)
        return {"scalars": arr}, pos + size
    if len(el.lists) == 1 and el.count > 0:
        # Fast path: every row has the same list length (triangle meshes): one structured read.
        name, cnt_code, item_code = el.lists[0]
        cnt_dt = np.dtype(endian + cnt_code)
        first = pos + scalar_dt.itemsize
        if first + cnt_dt.itemsize > len(buf):
            raise _fail(path, f"element {el.name} truncated")
        k = int(np.frombuffer(buf, dtype=cnt_dt, count=1, offset=first)[0])
        row = np.dtype(scalar_dt.descr + [("__n", endian + cnt_code), ("__items", endian + item_code, (k,))]
                       if el.scalars else [("__n", endian + cnt_code), ("__items", endian + item_code, (k,))])
        size = row.itemsize * el.count
        if pos + size <= len(buf):
            arr = np.frombuffer(buf, dtype=row, count=el.count, offset=pos)
            if (arr["__n"] == k).all():
                scal = arr[[n for n, _ in el.scalars]] if el.scalars else None
                return {"scalars": scal, name: np.array(arr["__items"])}, pos + size
    # General path: variable-length lists, row by row.
    rows_s = np.zeros(el.count, dtype=scalar_dt)
    lists: dict[str, list[np.ndarray]] = {n: [] for n, _, _ in el.lists}
    for i in range(el.count):
        if el.scalars:
            rows_s[i] = np.frombuffer(buf, dtype=scalar_dt, count=1, offset=pos)[0]
            pos += scalar_dt.itemsize
        for n, cc, ic in el.lists:
            cdt, idt = np.dtype(endian + cc), np.dtype(endian + ic)
            if pos + cdt.itemsize > len(buf):
                raise _fail(path, f"element {el.name} truncated")
            k = int(np.frombuffer(buf, dtype=cdt, count=1, offset=pos)[0])
            pos += cdt.itemsize
            if pos + k * idt.itemsize > len(buf):
                raise _fail(path, f"element {el.name} truncated")
            lists[n].append(np.frombuffer(buf, dtype=idt, count=k, offset=pos).copy())
            pos += k * idt.itemsize
    out: dict = {"scalars": rows_s if el.scalars else None}
    out.update({n: _stack(v) for n, v in lists.items()})
    return out, pos


def _stack(rows: list[np.ndarray]) -> np.ndarray | list[np.ndarray]:
    """Equal-length lists become a 2-D array; ragged ones stay a list of arrays."""
    if rows and all(len(r) == len(rows[0]) for r in rows):
        return np.stack(rows)
    return rows


def _read_ascii(path: Path, elements: list[_Element], text: str) -> dict[str, dict]:
    tokens = text.split()
    pos = 0
    out: dict[str, dict] = {}
    for el in elements:
        scalar_dt = np.dtype([(n, c) for n, c in el.scalars])
        if not el.lists:
            width = len(el.scalars)
            flat = tokens[pos : pos + width * el.count]
            if len(flat) < width * el.count:
                raise _fail(path, f"element {el.name} truncated")
            try:
                table = np.array(flat, dtype=np.float64).reshape(el.count, width)
            except ValueError as exc:
                raise _fail(path, f"element {el.name}: {exc}") from None
            arr = np.zeros(el.count, dtype=scalar_dt)
            for j, (n, _) in enumerate(el.scalars):
                arr[n] = table[:, j]
            out[el.name] = {"scalars": arr}
            pos += width * el.count
            continue
        arr = np.zeros(el.count, dtype=scalar_dt)
        lists: dict[str, list[np.ndarray]] = {n: [] for n, _, _ in el.lists}
        try:
            for i in range(el.count):
                for n, _ in el.scalars:
                    arr[n][i] = float(tokens[pos])
                    pos += 1
                for n, _, ic in el.lists:
                    k = int(tokens[pos])
                    lists[n].append(np.array(tokens[pos + 1 : pos + 1 + k], dtype=np.float64).astype(ic))
                    pos += 1 + k
        except IndexError:
            raise _fail(path, f"element {el.name} truncated") from None
        except ValueError as exc:
            raise _fail(path, f"element {el.name}: {exc}") from None
        out[el.name] = {"scalars": arr if el.scalars else None, **{n: _stack(v) for n, v in lists.items()}}
    return out


def read_ply(path: Path | str) -> dict[str, np.ndarray]:
    """Read a PLY file.

    Returns a dict with:
      - ``"vertex"``: structured array (N,) with every vertex property by its header name
        (e.g. ``x, y, z`` float32, ``red, green, blue, alpha`` uint8, ``label`` uint16);
      - ``"face"``: (F, 3) int32 triangle indices when the file has triangular faces (the
        ``vertex_indices`` or ``vertex_index`` list); (0, 3) when it has none;
      - ``"elements"``: every element by name, as ``{"scalars": structured array | None,
        <list name>: (rows, k) array or list of arrays}`` for anything else in the file.
    Polygons with more than three corners are fan-triangulated.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise HiclrError(f"{path}: cannot read ({exc.strerror})", "check the path") from exc
    try:
        fmt, elements, start = _parse_header(path, data)
        if fmt == "ascii":
            parsed = _read_ascii(path, elements, data[start:].decode("ascii", errors="replace"))
        else:
            parsed, pos, buf = {}, start, memoryview(data)
            for el in elements:
                parsed[el.name], pos = _read_binary_element(path, el, buf, pos, _FORMATS[fmt])
    except (ValueError, TypeError, IndexError) as exc:  # whatever else a malformed file trips
        raise _fail(path, f"{type(exc).__name__}: {exc}") from exc
    if "vertex" not in parsed or parsed["vertex"]["scalars"] is None:
        raise _fail(path, "no vertex element")
    vertex = np.array(parsed["vertex"]["scalars"])  # own the memory, native layout kept per field
    vertex = vertex.astype(vertex.dtype.newbyteorder("=")) if fmt == "binary_big_endian" else vertex
    faces = np.zeros((0, 3), dtype=np.int32)
    if "face" in parsed:
        lst = parsed["face"].get("vertex_indices", parsed["face"].get("vertex_index"))
        if lst is not None:
            faces = _triangulate(lst)
            if faces.size and (faces.min() < 0 or faces.max() >= len(vertex)):
                raise _fail(path, "face indices outside the vertex range")
    return {"vertex": vertex, "face": faces, "elements": parsed}


def vertex_colors(path: Path | str, vertex: np.ndarray) -> tuple[np.ndarray | None, str | None]:
    """The vertex colours of a PLY file as (N, 3) uint8, read by their declared type, and a note
    saying what was assumed (None when the file is plain 8-bit); (None, None) without colours.

    As common tools read them: ``uchar`` 0–255 as it is; ``ushort`` scaled from 0–65535;
    ``float``/``double`` in 0–1, or in 0–255 when a value exceeds 1; other integer types only when
    every value is within 0–255. Anything else (NaN, negative, beyond the type's range, mixed
    channel types, floats whose values fit both ranges) is refused: a guess would change the labels."""
    names = set(vertex.dtype.names or ())
    if not {"red", "green", "blue"} <= names:
        return None, None
    path = Path(path)
    kinds = {vertex.dtype[c].str[1:] for c in ("red", "green", "blue")}
    declared = ", ".join(sorted(_NAMES.get(k, k) for k in kinds))
    hint = "write red/green/blue as uchar 0–255 (or ushort 0–65535, or float 0–1)"
    if len(kinds) > 1:
        raise HiclrError(f"{path}: red/green/blue have different types ({declared})", hint)
    (code,) = kinds
    rgb = np.stack([vertex["red"], vertex["green"], vertex["blue"]], 1)
    if code == "u1":
        return rgb.astype(np.uint8), None
    if code == "u2":
        return np.round(rgb.astype(np.float64) / 257.0).astype(np.uint8), f"{path}: ushort colours read as 0–65535"
    values = rgb.astype(np.float64)
    if not np.isfinite(values).all():
        raise HiclrError(f"{path}: non-finite vertex colours ({declared})", hint)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if low < 0 or high > 255:
        raise HiclrError(f"{path}: {declared} colours in [{low:g}, {high:g}], outside 0–255", hint)
    if code[0] == "f":
        if high > 1:
            return np.round(values).astype(np.uint8), f"{path}: {declared} colours read as 0–255 (values up to {high:g})"
        if high == 1 and np.all((values == 0) | (values == 1)):  # 0/1 only: white (0–1) or black (0–255)?
            raise HiclrError(f"{path}: {declared} colours are all 0 or 1, which fits both 0–1 and 0–255", hint)
        return np.round(values * 255.0).astype(np.uint8), f"{path}: {declared} colours read as 0–1"
    return values.astype(np.uint8), f"{path}: {declared} colours read as 0–255"


def _triangulate(lst: np.ndarray | list[np.ndarray]) -> np.ndarray:
    if isinstance(lst, np.ndarray):
        if lst.ndim == 2 and lst.shape[1] == 3:
            return lst.astype(np.int32)
        lst = list(lst)
    tris = [np.stack([np.full(len(p) - 2, p[0]), p[1:-1], p[2:]], axis=1) for p in lst if len(p) >= 3]
    return np.concatenate(tris).astype(np.int32) if tris else np.zeros((0, 3), dtype=np.int32)


def write_ply(path: Path | str, vertices: dict[str, np.ndarray], faces: np.ndarray | None = None,
              binary: bool = True) -> None:
    """Write a PLY file atomically (temporary file + rename).

    Args:
        vertices: property name → (N,) array, written in the given order with the array's dtype
            (e.g. ``{"x": f4, "y": f4, "z": f4, "red": u1, "green": u1, "blue": u1, "label": u2}``).
        faces: optional (F, 3) int triangle indices, written as ``property list uchar int vertex_indices``.
        binary: binary little-endian (default) or ascii.
    """
    from hiclr.store import atomic_write_bytes

    names = list(vertices)
    cols = [np.asarray(vertices[n]) for n in names]
    n = len(cols[0]) if cols else 0
    if any(c.ndim != 1 or len(c) != n for c in cols):
        raise HiclrError(f"{path}: vertex properties must be 1-D arrays of one length", "pass (N,) arrays")
    codes = []
    for name, c in zip(names, cols):
        code = c.dtype.str[1:]
        if code not in _NAMES:
            raise HiclrError(f"{path}: property {name!r} has unsupported dtype {c.dtype}", "cast to a PLY scalar type")
        codes.append(code)
    tri = None if faces is None else np.asarray(faces, dtype=np.int32).reshape(-1, 3)
    lines = ["ply", f"format {'binary_little_endian' if binary else 'ascii'} 1.0", "comment written by hiclr",
             f"element vertex {n}"] + [f"property {_NAMES[c]} {nm}" for nm, c in zip(names, codes)]
    if tri is not None:
        lines += [f"element face {len(tri)}", "property list uchar int vertex_indices"]
    header = ("\n".join(lines + ["end_header"]) + "\n").encode("ascii")
    if binary:
        vdt = np.dtype([(nm, "<" + c) for nm, c in zip(names, codes)])
        rec = np.empty(n, dtype=vdt)
        for nm, c in zip(names, cols):
            rec[nm] = c
        body = rec.tobytes()
        if tri is not None:
            frec = np.empty(len(tri), dtype=[("n", "u1"), ("i", "<i4", (3,))])
            frec["n"], frec["i"] = 3, tri
            body += frec.tobytes()
    else:
        rows = [" ".join(_fmt(c[i]) for c in cols) for i in range(n)]
        if tri is not None:
            rows += [f"3 {a} {b} {c}" for a, b, c in tri]
        body = ("\n".join(rows) + ("\n" if rows else "")).encode("ascii")
    atomic_write_bytes(Path(path), header + body)


def _fmt(v: np.generic) -> str:
    return repr(float(v)) if np.issubdtype(type(v), np.floating) else str(int(v))


__all__ = ["read_ply", "vertex_colors", "write_ply"]
