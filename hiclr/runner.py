"""Per-scene loops shared by every step: shard selection, parallel workers, progress, resumability.

A step is a function ``work(scene_id) -> dict`` that returns a small summary of what it did
(``{"status": "done" | "skipped" | "failed", "notes": [what the user should know], ...}``). :func:`run_scenes` runs it over scenes with a
tqdm bar, in ``workers`` processes when asked, and never lets one broken scene stop the rest:
its error is recorded by name and the loop goes on.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from hiclr.errors import HiclrError, describe


def parse_shard(shard: str | None) -> tuple[int, int] | None:
    """``"2/4"`` → (2, 4) (1-based); None stays None."""
    if shard is None:
        return None
    try:
        k, n = (int(x) for x in shard.split("/"))
    except ValueError:
        raise HiclrError(f"--shard {shard!r}: expected K/N", "for example --shard 1/4") from None
    if not 1 <= k <= n:
        raise HiclrError(f"--shard {shard!r}: K must be in 1..N", "for example --shard 1/4") from None
    return k, n


def select_shard(scene_ids: Sequence[str], shard: str | None) -> list[str]:
    """Scenes of shard K/N: every N-th scene of the sorted list, starting at K-1."""
    ids = sorted(scene_ids)
    parsed = parse_shard(shard)
    if parsed is None:
        return ids
    k, n = parsed
    return ids[k - 1 :: n]


@dataclass
class RunSummary:
    """What a per-scene step did."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # scene id → one-line error
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the user should know beyond the counts

    def line(self) -> str:
        return f"{len(self.done)} done, {len(self.skipped)} skipped (up to date), {len(self.failed)} failed"


def _call(work: Callable[[str], dict[str, Any]], scene_id: str) -> tuple[str, dict[str, Any]]:
    try:
        return scene_id, work(scene_id)
    except Exception as exc:  # noqa: BLE001 - one broken scene must not stop the others
        return scene_id, {"status": "failed", "error": describe(exc)}


def run_scenes(
    work: Callable[[str], dict[str, Any]],
    scene_ids: Sequence[str],
    workers: int = 1,
    desc: str = "scenes",
    progress: bool = True,
) -> RunSummary:
    """Run ``work`` over ``scene_ids`` (in ``workers`` processes when > 1) with a progress bar.

    ``work`` must be picklable (a module-level function or a functools.partial of one) when
    ``workers > 1``."""
    from tqdm import tqdm

    summary = RunSummary()
    bar = tqdm(total=len(scene_ids), desc=desc, unit="scene", disable=not progress or not scene_ids, leave=False)

    def record(scene_id: str, res: dict[str, Any]) -> None:
        status = res.get("status", "done")
        if status == "skipped":
            summary.skipped.append(scene_id)
        elif status == "failed":
            summary.failed[scene_id] = str(res.get("error", "unknown error"))
        else:
            summary.done.append(scene_id)
        summary.results[scene_id] = res
        bar.update(1)

    if workers <= 1 or len(scene_ids) <= 1:
        for sid in scene_ids:
            record(*_call(work, sid))
    else:
        ctx = mp.get_context("spawn" if os.name != "posix" else "fork")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = [pool.submit(_call, work, sid) for sid in scene_ids]
            for fut in as_completed(futures):
                record(*fut.result())
    bar.close()
    for lst in (summary.done, summary.skipped):
        lst.sort()
    summary.notes += [note for sid in summary.done for note in summary.results[sid].get("notes", [])]
    return summary
