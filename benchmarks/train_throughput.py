"""The whole training step as `hiclr train` pays it, per sparse backend and precision.

    python benchmarks/train_throughput.py [--device cpu|cuda] [--backends torch,torch:table,torch:before,spconv]
        [--precisions fp32,bf16] [--scenes 8] [--points 150000] [--batch-size B] [--steps S]
        [--workers W] [--work DIR] [--compile] [--ce rows,pairs] [--rounds R]
    python benchmarks/train_throughput.py --store demo/data --recipe recipes/synthetic.yaml --precisions fp32 \
        --workers 0 --ce rows,pairs --rounds 3        # the demo's step, this release's L_ce against the previous one

A store of ScanNet-sized synthetic scenes is written once under ``--work`` (reused while its
settings match): each a furnished room (bench_backbone.py's surfaces, ≈150 k points, 77 k voxels at
5 cm) with colours, normals, ground truth by surface, ``--views`` views, pseudo-label pairs (each
point seen by a view with probability 0.3, 20 % of the labels wrong), grid segments (30 cm cells of
one surface) and refined pairs from ``hiclr.refine.refine_pairs``. Then, for every backend ×
precision, the step of ``hiclr.train.loop`` (``--store``/``--recipe``: an existing store, e.g.
``make demo``'s, with a recipe's train settings — the demo's step at 10 cm, M = 256, batch 2): the same dataset, sampler and DataLoader
(``hiclr.train.data.scene_loader``: ``--workers`` processes), the same model (``HiclModel`` over
``build_network``), optimisers, loss terms (all stages, every term on: the most expensive phase)
and ``backward``. Stages are timed around the same calls, with a CUDA synchronise at each edge:

    load       waiting for the next batch (the loader works ahead in its workers)
    voxelise   points -> voxels in PointNetwork.forward_rows
    kmaps      kernel-map builds (once per stride and kernel per batch)
    network    the rest of the 3D network's forward
    transf.    the intra- and inter-scene transformers' forward
    losses     the rest of HiclModel.forward (gathers, L_ce, L̂_ce, L_kl)
    backward   loss.backward()
    optim      SGD + AdamW steps

Printed per configuration: seconds per step and per stage, the load cost of one scene when done
in-process (what the workers hide), scenes/s, peak memory (CUDA: allocated by torch; CPU: the
process's peak RSS so far) and the projected hours of ScanNet's 120 epochs × 1201 scenes at that
rate, against the 1.5 h goal.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import resource
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_backbone import device_arg, room_surfaces
from profile_torch_conv import variants

import hiclr.nn.network as network_module
import hiclr.train.model as model_module
from hiclr.config import load_section
from hiclr.losses import pair_ce_loss, pair_ce_loss_per_pair
from hiclr.nn.sparse.backends import torch_backend
from hiclr.nn.sparse.tensor import CoordinateContext
from hiclr.refine import refine_pairs
from hiclr.store import Pairs, Store, atomic_write_text
from hiclr.train.anchors import class_anchors
from hiclr.train.config import TrainConfig
from hiclr.train.data import EpochBatches, TrainScenes, scene_loader
from hiclr.train.loop import build_optimizers
from hiclr.train.model import HiclModel, build_network, mean_of_terms
from hiclr.train.schedule import epoch_terms

SCANNET_SCENE_STEPS = 1201 * 120
GOAL_HOURS = 1.5
CLASSES = ["wall", "floor", "ceiling", "cabinet", "bed", "chair", "sofa", "table"]
STAGES = ("load", "voxelise", "kmaps", "network", "transf.", "losses", "backward", "optim")


# -- the store ------------------------------------------------------------------------------------

def write_scene(store: Store, sid: str, n_points: int, n_views: int, seed: int) -> None:
    """One synthetic ScanNet-sized scene with every array training reads (see the module doc)."""
    pts, colours, surface, normal = room_surfaces(n_points, seed)
    rng = np.random.default_rng(seed)
    coord = pts.numpy()
    label = np.where(surface.numpy() < 6, np.array([1, 2, 0, 0, 0, 0])[np.minimum(surface.numpy(), 5)],
                     3 + surface.numpy() % (len(CLASSES) - 3)).astype(np.int16)  # floor, ceiling, walls, furniture
    cell = np.floor(coord / 0.3).astype(np.int64)
    key = ((surface.numpy().astype(np.int64) * 1000 + cell[:, 0]) * 1000 + cell[:, 1]) * 1000 + cell[:, 2]
    segments = np.unique(key, return_inverse=True)[1].astype(np.int32)
    seen = rng.random((n_views, n_points)) < 0.3
    view, point = np.nonzero(seen)
    plabel = label[point].copy()
    wrong = rng.random(len(point)) < 0.2
    plabel[wrong] = rng.integers(0, len(CLASSES), int(wrong.sum()))
    pairs = Pairs(point, view, plabel, rng.random(len(point)))
    sc = store.scene(sid)
    sc.write("coord", coord, "bench", "synthetic")
    sc.write("color", ((colours.numpy() + 1) * 127.5).astype(np.uint8), "bench", "synthetic")
    sc.write("normal", normal.numpy(), "bench", "synthetic")
    sc.write("label", label, "bench", "synthetic")
    sc.write("segments", segments, "bench", "synthetic")
    K = np.tile(np.array([[8.0, 0, 4], [0, 8, 4], [0, 0, 1]], np.float32), (n_views, 1, 1))
    sc.write_views(K, np.tile(np.eye(4), (n_views, 1, 1)), [np.zeros((8, 8, 3), np.uint8)] * n_views, None,
                   "bench", "synthetic")
    sc.write_pairs("pairs", pairs, "bench", "synthetic")
    sc.write_pairs("refined", pairs.with_labels(refine_pairs(point, view, plabel, segments)), "bench", "synthetic")


def bench_store(work: Path, n_scenes: int, n_points: int, n_views: int) -> Store:
    """The benchmark store for these settings, written on first use and reused after."""
    root = work / f"store-{n_scenes}x{n_points}-v{n_views}"
    ids = [f"scene{i:04d}" for i in range(n_scenes)]
    done = root / "done.json"
    if done.is_file():
        return Store.open(root)
    t0 = time.perf_counter()
    store = Store.create(root, "throughput", CLASSES, splits={"train": ids})
    for i, sid in enumerate(ids):
        write_scene(store, sid, n_points, n_views, seed=i)
    done.write_text(json.dumps({"seconds": time.perf_counter() - t0}))
    print(f"wrote {n_scenes} scenes to {root} in {time.perf_counter() - t0:.1f} s")
    return store


# -- timing ---------------------------------------------------------------------------------------

class StageClock:
    """Seconds per stage, accumulated around calls; synchronises CUDA at every edge."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)
        self._open: dict[str, float] = {}

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def start(self, name: str) -> None:
        self.sync()
        self._open[name] = time.perf_counter()

    def stop(self, name: str) -> float:
        self.sync()
        dt = time.perf_counter() - self._open.pop(name)
        self.seconds[name] += dt
        return dt

    def wrap(self, name: str, fn):  # type: ignore[no-untyped-def]
        def timed(*a, **kw):  # type: ignore[no-untyped-def]
            self.start(name)
            try:
                return fn(*a, **kw)
            finally:
                self.stop(name)
        return timed

    def hook(self, module: torch.nn.Module, name: str) -> None:
        def after(*_: object) -> None:  # a forward hook that returned a value would replace the output
            self.stop(name)

        module.register_forward_pre_hook(lambda *_: self.start(name))
        module.register_forward_hook(after)


def peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def in_process_load_seconds(dataset: TrainScenes, n: int = 3) -> float:
    """Median seconds to load one scene in this process (what the workers take off the step)."""
    times = []
    for i in range(min(n, len(dataset))):
        t0 = time.perf_counter()
        dataset[(1, i)]
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def train_config(args: argparse.Namespace, backend: str, precision: str, device: torch.device,
                 now: bool = True) -> TrainConfig:
    """The benchmark's TrainConfig: ``--recipe``'s train section (the demo's: ``recipes/synthetic.yaml``)
    or the ScanNet defaults with ``--arch``/``--samples``; backend, precision, workers and batch from the flags.
    ``now``: apply ``--now-set`` too (the recipe changes of this release; the previous release's step omits them)."""
    amp = precision == "bf16"
    if args.recipe:
        cfg = load_section(TrainConfig, "train", args.recipe, args.set + (args.now_set if now else []))
        return dataclasses.replace(cfg, backend=backend, workers=args.workers, device=str(device), amp=amp, val_split="",
                                   batch_size=args.batch_size or cfg.batch_size)
    return TrainConfig(arch=args.arch, backend=backend, batch_size=args.batch_size, workers=args.workers,
                       samples=args.samples, device=str(device), amp=amp, val_split="")


def run_config(store: Store, args: argparse.Namespace, backend: str, precision: str, device: torch.device,
               ce: str = "rows") -> dict:
    """Time ``args.steps`` training steps (after ``args.warmup``) of one backend and precision.

    ``ce``: ``rows`` is hiclr now (L_ce over (row, class) counts, fused optimiser updates), ``pairs``
    the previous release (L_ce pair by pair: a (P, C) gather and log-softmax; unfused optimisers)."""
    cfg = train_config(args, backend, precision, device, now=ce == "rows")
    ids = store.scene_ids("train")
    dataset = TrainScenes(store, ids, cfg)
    sampler = EpochBatches(len(ids), cfg.seed)
    loader = scene_loader(dataset, sampler, cfg, device)
    anchors, _ = class_anchors(store, cfg.text_embeddings)
    text = torch.from_numpy(anchors)
    torch.manual_seed(cfg.seed)
    model = HiclModel(build_network(cfg, out_channels=text.shape[1]), text, cfg).to(device)
    model_module.pair_ce_loss = pair_ce_loss if ce == "rows" else pair_ce_loss_per_pair
    opt_net, opt_tr = build_optimizers(model, cfg, device, fused=ce == "rows")  # the previous release: unfused
    terms = epoch_terms(cfg, cfg.epochs)  # the last epoch: every term of the stages on
    amp = cfg.amp  # as loop.py on CUDA; on CPU the benchmark also tries it (loop.py keeps CPU in fp32)

    clock = StageClock(device)
    model.net.forward_rows = clock.wrap("net", model.net.forward_rows)  # what HiclModel.forward calls
    for m in (model.intra, model.inter):
        if m is not None:
            clock.hook(m, "transf.")
            if args.compile:  # the hooks stay outside the compiled forward; compiling falls in the warm-up
                m.forward = torch.compile(m.forward, dynamic=True)
    network_module.voxelize = clock.wrap("voxelise", _voxelize)
    CoordinateContext.kernel_map = clock.wrap("kmaps", _kernel_map)  # type: ignore[method-assign]
    try:
        model.train()
        steps, epoch, it = [], 1, None
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        while len(steps) < args.warmup + args.steps:
            if it is None:
                sampler.set_epoch(epoch)
                it = iter(loader)
            clock.seconds.clear()
            t0, c0 = time.perf_counter(), time.process_time()
            clock.start("load")
            batch = next(it, None)
            clock.stop("load")
            if batch is None:
                it, epoch = None, epoch + 1
                continue
            opt_net.zero_grad(set_to_none=True)
            if opt_tr is not None:
                opt_tr.zero_grad(set_to_none=True)
            clock.start("forward")
            losses = model(batch, terms, amp)
            loss = mean_of_terms(losses)
            clock.stop("forward")
            clock.start("backward")
            loss.backward()
            clock.stop("backward")
            clock.start("optim")
            opt_net.step()
            if opt_tr is not None:
                opt_tr.step()
            clock.stop("optim")
            s = clock.seconds
            stage = {"load": s["load"], "voxelise": s["voxelise"], "kmaps": s["kmaps"],
                     "network": s["net"] - s["voxelise"] - s["kmaps"], "transf.": s["transf."],
                     "losses": s["forward"] - s["net"] - s["transf."], "backward": s["backward"], "optim": s["optim"]}
            stage["cpu"] = time.process_time() - c0  # this process's CPU seconds (workers not included)
            steps.append((time.perf_counter() - t0, stage, len(batch)))
    finally:
        model_module.pair_ce_loss = pair_ce_loss
        network_module.voxelize = _voxelize
        CoordinateContext.kernel_map = _kernel_map  # type: ignore[method-assign]
    measured = steps[args.warmup:]
    step_s = statistics.median(t for t, _, _ in measured)
    scenes = statistics.median(n for _, _, n in measured)
    return {"backend": backend, "precision": precision, "ce": ce, "step_s": step_s, "scenes": scenes,
            "stages": {k: statistics.median(st[k] for _, st, _ in measured) for k in STAGES},
            "cpu_s": statistics.median(st["cpu"] for _, st, _ in measured),
            "load_in_process_s": in_process_load_seconds(dataset), "peak_gb": peak_memory_gb(device)}


_voxelize = network_module.voxelize
_kernel_map = CoordinateContext.kernel_map


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--backends", default="", help="comma list (default: torch, + spconv on CUDA when installed); "
                    "torch:before, torch:fused, torch:grouped, torch:table, torch:table-all: the torch backend's variants of profile_torch_conv.py")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--arch", default="MinkUNet14A")
    ap.add_argument("--scenes", type=int, default=8, help="scenes in the benchmark store")
    ap.add_argument("--points", type=int, default=150_000, help="points per scene")
    ap.add_argument("--views", type=int, default=16, help="views per scene (pairs: each seen with p = 0.3)")
    ap.add_argument("--samples", type=int, default=1024, help="M, points per scene for the transformers")
    ap.add_argument("--batch-size", type=int, default=0, help="scenes per step (default: the recipe's; else 8 on CUDA, 1 on CPU)")
    ap.add_argument("--steps", type=int, default=0, help="measured steps (default: 10 on CUDA, 3 on CPU)")
    ap.add_argument("--warmup", type=int, default=-1, help="unmeasured first steps (default: 3 on CUDA, 1 on CPU)")
    ap.add_argument("--workers", type=int, default=TrainConfig.workers, help="DataLoader workers (train.workers)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--work", type=Path, default=Path("/tmp/hiclr-bench"), help="folder of the cached store")
    ap.add_argument("--compile", action="store_true", help="torch.compile the transformers' forward (dynamic shapes)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--store", type=Path, default=None,
                    help="time on this store's train split instead of the generated one (e.g. make demo's demo/data)")
    ap.add_argument("--recipe", default="", help="take the train settings from this recipe (the demo: recipes/synthetic.yaml)")
    ap.add_argument("--set", action="append", default=[], help="train.KEY=VALUE on top of --recipe (repeatable)")
    ap.add_argument("--ce", default="rows", help="comma list: rows (now: L_ce over row counts, fused optimisers), "
                    "pairs (the previous release: L_ce per pair, unfused optimisers)")
    ap.add_argument("--rounds", type=int, default=1, help="repeat the configurations this many times, in turn")
    ap.add_argument("--now-set", action="append", default=[],
                    help="train.KEY=VALUE applied to the 'rows' (this release) configurations only: a recipe change "
                    "of this release, timed against the previous release's step ('pairs') in the same process")
    args = ap.parse_args()
    device = device_arg(args.device)
    cuda = device.type == "cuda"
    args.batch_size = args.batch_size or (0 if args.recipe else 8 if cuda else 1)  # 0: the recipe's
    args.steps = args.steps or (10 if cuda else 3)
    args.warmup = args.warmup if args.warmup >= 0 else (3 if cuda else 1)
    torch.set_num_threads(args.threads)
    backends = [b for b in args.backends.split(",") if b] or (
        ["torch", "spconv"] if cuda and importlib.util.find_spec("spconv") else ["torch"])
    store = Store.open(args.store) if args.store else bench_store(args.work, args.scenes, args.points, args.views)
    name = torch.cuda.get_device_name(device) if cuda else f"CPU, {args.threads} thread(s)"
    what = (f"{args.store} with {args.recipe or 'the default'} train settings" if args.store
            else f"{args.arch}, batch {args.batch_size} scenes of {args.points} points")
    print(f"{what}, {args.workers} loader workers, {args.steps} steps after {args.warmup} warm-up, on {name}")

    results, failed = [], []
    header = {"device": name, "args": {k: str(v) for k, v in vars(args).items()}}
    configs = [(b, p, ce) for b in backends for p in args.precisions.split(",") if p
               for ce in args.ce.split(",") if ce]
    for _round in range(args.rounds):
        for backend, precision, ce in configs:
            name_, _, variant = backend.partition(":")  # torch:table etc.: profile_torch_conv.py's variants
            tag = backend + ("+compile" if args.compile else "") + ("" if ce == "rows" else f"+ce-{ce}")
            try:
                with torch_backend.settings(**(variants(device)[variant] if variant else {})):
                    results.append({**run_config(store, args, name_, precision, device, ce), "backend": tag})
                print(f"  {tag} {precision}: {results[-1]['step_s']:.3f} s per step", flush=True)
            except Exception as exc:  # noqa: BLE001 - report a failing configuration and go on
                print(f"{backend} {precision}: failed: {type(exc).__name__}: {exc}")
                failed.append(f"{tag} {precision}")
            if args.json:  # what is measured so far survives a run killed at its time limit
                atomic_write_text(args.json, json.dumps({**header, "results": results, "failed": failed,
                                                         "partial": True}, indent=1))
    if not results:
        sys.exit(f"failed: {', '.join(failed)}")
    base = results[0]["step_s"] / results[0]["scenes"]
    head = f"{'backend':14s} {'prec':5s} {'step s':>7s} " + " ".join(f"{s:>8s}" for s in STAGES)
    print(head + f" {'cpu s':>7s} {'load 1':>7s} {'scenes/s':>8s} {'peak GB':>7s} {'ScanNet h':>9s} {'ratio':>6s}")
    for r in results:
        per_scene = r["step_s"] / r["scenes"]
        hours = per_scene * SCANNET_SCENE_STEPS / 3600
        r.update(scenes_per_s=1 / per_scene, scannet_hours=hours, ratio_to_first=per_scene / base)
        print(f"{r['backend']:14s} {r['precision']:5s} {r['step_s']:7.2f} "
              + " ".join(f"{r['stages'][s]:8.3f}" for s in STAGES)
              + f" {r['cpu_s']:7.2f} {r['load_in_process_s']:7.3f} {1 / per_scene:8.3f} {r['peak_gb']:7.2f} {hours:9.1f} {per_scene / base:6.2f}")
    print(f"stage columns: wall seconds per step; cpu s: CPU seconds of the training process per step (on a "
          f"shared machine closer to an idle one's wall time at 1 thread); 'load 1': one scene loaded in-process; ScanNet h: "
          f"{SCANNET_SCENE_STEPS} scene-steps (120 epochs x 1201 scenes) at this rate, goal {GOAL_HOURS} h on one GPU")
    for r in results:
        share = r["stages"]["load"] / r["step_s"]
        print(f"{r['backend']} {r['precision']}: waiting on data is {100 * share:.1f} % of the step "
              f"(loading in-process would add {r['load_in_process_s'] * r['scenes']:.2f} s per step)")
    if args.json:
        atomic_write_text(args.json, json.dumps({**header, "results": results, "failed": failed}, indent=1))
    if failed:  # the table above has the others; a prepared GPU run must not read this as a pass
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
