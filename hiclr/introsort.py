"""libstdc++'s ``std::sort``, reproduced so that equal keys end up in the same order.

``std::sort`` is not stable: the order it leaves equal keys in is an artefact of its algorithm
(introsort: median-of-three quicksort with an unguarded partition, a heapsort fallback at depth
``2 floor(log2 n)``, and a final insertion sort over runs of 16). ScanNet's Segmentator sorts its
edges with it, and that order decides which neighbour a small segment joins, so reproducing the
algorithm step for step (as GCC >= 4.9 implements it in ``bits/stl_algo.h`` / ``stl_heap.h``) is
what makes :mod:`hiclr.oversegment` match the released ``*.segs.json`` files exactly, ties
included. libc++ (clang) and MSVC sort differently; only the tie order would differ.

The functions permute ``key`` and a payload ``val`` together, in place, and are compiled with
numba (plain Python if numba is missing: correct, but slow). Import this module only where it is
used: importing it imports numba.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

try:
    import numba

    _njit: Callable[[Any], Any] = numba.njit(cache=True, nogil=True)
except ImportError:  # pragma: no cover - numba is a core dependency

    def _njit(fn: Any) -> Any:
        return fn


_THRESHOLD = 16  # libstdc++ _S_threshold


@_njit
def _swap(key: np.ndarray, val: np.ndarray, i: int, j: int) -> None:
    key[i], key[j] = key[j], key[i]
    val[i], val[j] = val[j], val[i]


@_njit
def _adjust_heap(key: np.ndarray, val: np.ndarray, first: int, hole: int, length: int, k, v) -> None:
    """std::__adjust_heap followed by std::__push_heap, on the heap at offset ``first``."""
    top = hole
    child = hole
    while child < (length - 1) // 2:
        child = 2 * (child + 1)
        if key[first + child] < key[first + child - 1]:
            child -= 1
        key[first + hole], val[first + hole] = key[first + child], val[first + child]
        hole = child
    if (length & 1) == 0 and child == (length - 2) // 2:
        child = 2 * (child + 1)
        key[first + hole], val[first + hole] = key[first + child - 1], val[first + child - 1]
        hole = child - 1
    parent = (hole - 1) // 2
    while hole > top and key[first + parent] < k:
        key[first + hole], val[first + hole] = key[first + parent], val[first + parent]
        hole = parent
        parent = (hole - 1) // 2
    key[first + hole], val[first + hole] = k, v


@_njit
def _heap_sort(key: np.ndarray, val: np.ndarray, first: int, last: int) -> None:
    """std::__partial_sort(first, last, last): make_heap, then pop_heap down to one element."""
    length = last - first
    if length >= 2:
        parent = (length - 2) // 2
        while True:
            _adjust_heap(key, val, first, parent, length, key[first + parent], val[first + parent])
            if parent == 0:
                break
            parent -= 1
    end = last
    while end - first > 1:
        end -= 1
        k, v = key[end], val[end]
        key[end], val[end] = key[first], val[first]
        _adjust_heap(key, val, first, 0, end - first, k, v)


@_njit
def _unguarded_linear_insert(key: np.ndarray, val: np.ndarray, last: int) -> None:
    k, v = key[last], val[last]
    nxt = last - 1
    while k < key[nxt]:
        key[last], val[last] = key[nxt], val[nxt]
        last = nxt
        nxt -= 1
    key[last], val[last] = k, v


@_njit
def _insertion_sort(key: np.ndarray, val: np.ndarray, first: int, last: int) -> None:
    for i in range(first + 1, last):
        if key[i] < key[first]:
            k, v = key[i], val[i]
            for j in range(i, first, -1):
                key[j], val[j] = key[j - 1], val[j - 1]
            key[first], val[first] = k, v
        else:
            _unguarded_linear_insert(key, val, i)


@_njit
def _median_to_first(key: np.ndarray, val: np.ndarray, result: int, a: int, b: int, c: int) -> None:
    if key[a] < key[b]:
        if key[b] < key[c]:
            _swap(key, val, result, b)
        elif key[a] < key[c]:
            _swap(key, val, result, c)
        else:
            _swap(key, val, result, a)
    elif key[a] < key[c]:
        _swap(key, val, result, a)
    elif key[b] < key[c]:
        _swap(key, val, result, c)
    else:
        _swap(key, val, result, b)


@_njit
def _partition_pivot(key: np.ndarray, val: np.ndarray, first: int, last: int) -> int:
    """std::__unguarded_partition_pivot: the pivot stays at ``first``; returns the cut."""
    mid = first + (last - first) // 2
    _median_to_first(key, val, first, first + 1, mid, last - 1)
    lo, hi = first + 1, last
    while True:
        while key[lo] < key[first]:
            lo += 1
        hi -= 1
        while key[first] < key[hi]:
            hi -= 1
        if not lo < hi:
            return lo
        _swap(key, val, lo, hi)
        lo += 1


@_njit
def std_sort(key: np.ndarray, val: np.ndarray) -> None:
    """Sort ``key`` ascending in place as libstdc++'s ``std::sort`` does, moving ``val`` along.

    Args:
        key: (E,) keys compared with ``<`` (no NaN).
        val: (E,) payload (e.g. ``arange(E)``, giving the permutation).
    """
    n = key.shape[0]
    if n < 2:
        return
    lg = 0  # std::__lg(n) = floor(log2(n))
    m = n
    while m > 1:
        m >>= 1
        lg += 1
    depth = 2 * lg
    # __introsort_loop: recurse on [cut, last), loop on [first, cut); an explicit stack instead
    stack = np.empty((2 * depth + 2, 3), dtype=np.int64)
    stack[0, 0], stack[0, 1], stack[0, 2] = 0, n, depth
    top = 1
    while top > 0:
        top -= 1
        first, last, limit = stack[top, 0], stack[top, 1], stack[top, 2]
        while last - first > _THRESHOLD:
            if limit == 0:
                _heap_sort(key, val, first, last)
                break
            limit -= 1
            cut = _partition_pivot(key, val, first, last)
            stack[top, 0], stack[top, 1], stack[top, 2] = cut, last, limit
            top += 1
            last = cut
    # __final_insertion_sort
    if n > _THRESHOLD:
        _insertion_sort(key, val, 0, _THRESHOLD)
        for i in range(_THRESHOLD, n):
            _unguarded_linear_insert(key, val, i)
    else:
        _insertion_sort(key, val, 0, n)
