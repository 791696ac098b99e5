"""Where the ``torch`` backend's time goes, and what its variants change, on one scene.

    python benchmarks/profile_torch_conv.py [--device cpu|cuda] [--points 150000] [--voxel-size 0.05]
        [--repeats 3] [--threads N] [--precisions fp32,bf16] [--json FILE]

MinkUNet14A forward + backward on bench_backbone.py's furnished room (150 k points, 77 k voxels at
5 cm), as in every training step (voxelisation and kernel maps included). Variants of the backend
(``hiclr.nn.sparse.backends.torch_backend.settings``), all in this process on the same scene and
weights:

    before      the previous release: offsets, its scatter (index_put_ on CPU, index_add_ on CUDA),
                every kernel map searched
    offsets     offsets with index_add_ and kernel maps reused (the default now)
    fused       offsets with one gather and one index_add_ per group of offsets (<= 2^21 elements)
                and pass (HICLR_TORCH_CONV=fused)
    fused-big   fused with groups of up to 2^26 elements (about one group per layer), a torch.mm
                per offset
    grouped     fused-big with one grouped GEMM per group and pass (fused_gemm=grouped:
                torch.nn.functional.grouped_mm; CUTLASS kernels in bf16 on CUDA 9.x/10.x devices)
    table       the neighbour-table GEMM on layers whose table is >= 25 % full, offsets elsewhere
    table-all   the neighbour-table GEMM on every layer

Printed per variant and precision: median wall and process-CPU seconds of forward and of forward +
backward (the variants take turns, one step each per round), the ratio to ``before`` (same precision), the largest difference of the output and of the
weight gradients from ``before`` (relative to their largest magnitude), and the profile of one
forward + backward split into kernel maps (hiclr::kernel_map and hiclr::kernel_table ranges),
gather (index_select / index), GEMM (mm / addmm / bmm), scatter (index_add_ / index_put_) and the
rest (voxelisation, batch norm, ReLU, concatenation, autograd), as self time (CPU: host time,
CUDA: device time of the kernels each op launched), and the number of the convolutions' gather,
GEMM (a ``grouped_mm`` counts as one) and scatter ops (``conv ops``: a count that does not depend
on the machine, and the number of small kernel launches a GPU pays for; on CUDA also every kernel
launched).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_backbone import device_arg, synthetic_room

from hiclr.nn import PointNetwork
from hiclr.nn.sparse.backends import torch_backend

CATEGORIES = ("kernel maps", "gather", "GEMM", "scatter", "other")
_OPS = {
    "gather": ("aten::index_select", "aten::index", "aten::gather"),
    "GEMM": ("aten::mm", "aten::addmm", "aten::bmm", "aten::_addmm_activation", "aten::_grouped_mm"),
    "scatter": ("aten::index_add_", "aten::_index_put_impl_", "aten::scatter_add_"),
}
_RANGES = ("hiclr::kernel_map", "hiclr::kernel_table")


def variants(device: torch.device) -> dict[str, dict]:
    """The :func:`torch_backend.settings` changes of each variant."""
    before = "index_add" if device.type == "cuda" else "index_put"
    return {
        "before": {"algorithm": "offsets", "scatter": before, "reuse_maps": False},
        "offsets": {"algorithm": "offsets", "scatter": "index_add"},
        "fused": {"algorithm": "fused"},
        "fused-big": {"algorithm": "fused", "fused_block": 1 << 26, "fused_gemm": "loop"},
        "grouped": {"algorithm": "fused", "fused_block": 1 << 26, "fused_gemm": "grouped"},
        "table": {"algorithm": "table"},
        "table-all": {"algorithm": "table", "table_min_density": 0.0},
    }


def step(net: PointNetwork, pts: torch.Tensor, feats: torch.Tensor, amp: bool, backward: bool) -> torch.Tensor:
    net.zero_grad(set_to_none=True)
    with torch.set_grad_enabled(backward), torch.autocast(pts.device.type, torch.bfloat16, enabled=amp):
        out = net([pts], [feats])[0]
        if backward:
            out.float().sum().backward()
    return out.detach().float()


def timed(net, pts, feats, amp: bool, chosen: dict[str, dict], repeats: int) -> dict[str, dict[str, float]]:
    """Median wall and process-CPU seconds of forward and of forward + backward per variant.

    The variants take turns (one step each per round, ``repeats`` rounds after a warm-up round), so
    a slow spell of a shared machine falls on all of them alike."""
    times: dict[str, dict[str, list[float]]] = {n: {"fwd_s": [], "fwd_cpu_s": [], "fwd_bwd_s": [], "fwd_bwd_cpu_s": []} for n in chosen}
    for r in range(repeats + 1):
        for name, changes in chosen.items():
            for backward, key in ((False, "fwd"), (True, "fwd_bwd")):
                with torch_backend.settings(**changes):
                    sync(pts.device)
                    w0, c0 = time.perf_counter(), time.process_time()
                    step(net, pts, feats, amp, backward)
                    sync(pts.device)
                if r:
                    times[name][f"{key}_s"].append(time.perf_counter() - w0)
                    times[name][f"{key}_cpu_s"].append(time.process_time() - c0)
    return {n: {k: statistics.median(v) for k, v in t.items()} for n, t in times.items()}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def category(event) -> str:  # type: ignore[no-untyped-def]
    """The category of a profiler event: its outermost hiclr range if any, else its op name."""
    parent = event
    while parent is not None:
        if parent.name in _RANGES:
            return "kernel maps"
        parent = parent.cpu_parent
    for cat, names in _OPS.items():
        if event.name in names:
            return cat
    return "other"


def _is_conv_op(event) -> bool:  # type: ignore[no-untyped-def]
    """A gather, GEMM or scatter op called from no other such op, outside the kernel-map ranges."""
    if category(event) in ("kernel maps", "other"):
        return False
    parent = event.cpu_parent
    while parent is not None:
        if any(parent.name in names for names in _OPS.values()):
            return False
        parent = parent.cpu_parent
    return True


def breakdown(net, pts, feats, amp: bool) -> tuple[dict[str, float], dict[str, int]]:
    """Self seconds per category of one forward + backward (CUDA: device time), and counts: the
    convolutions' gather, GEMM and scatter ops (``conv_ops``) and, on CUDA, every kernel launched."""
    cuda = pts.device.type == "cuda"
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=acts) as prof:
        step(net, pts, feats, amp, True)
        sync(pts.device)
    out = dict.fromkeys(CATEGORIES, 0.0)
    counts = {"conv_ops": 0, "cuda_kernels": 0}
    for ev in prof.events():
        if ev.device_type != torch.autograd.DeviceType.CPU:
            counts["cuda_kernels"] += 1
            continue
        if ev.name in _RANGES:
            continue
        counts["conv_ops"] += _is_conv_op(ev)
        us = ev.self_device_time_total if cuda else ev.self_cpu_time_total
        out[category(ev)] += us / 1e6
    return out, counts


def max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--points", type=int, default=150_000)
    ap.add_argument("--voxel-size", type=float, default=0.05)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--precisions", default="fp32", help="comma list of fp32, bf16 (autocast)")
    ap.add_argument("--variants", default="", help="comma subset of: " + ", ".join(variants(torch.device("cpu"))))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    device = device_arg(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    pts, feats = (t.to(device) for t in synthetic_room(args.points))
    net = PointNetwork(arch="MinkUNet14A", voxel_size=args.voxel_size, backend="torch").to(device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} thread(s)"
    print(f"MinkUNet14A torch backend, {args.points} points at {args.voxel_size} m, {where}")
    chosen = {k: v for k, v in variants(device).items() if not args.variants or k in args.variants.split(",")}
    if "before" not in chosen:
        chosen = {"before": variants(device)["before"], **chosen}

    rows = []
    for prec in args.precisions.split(","):
        amp, ref = prec == "bf16", None
        for name, changes in chosen.items():
            with torch_backend.settings(**changes):
                out = step(net, pts, feats, amp, True)
                grads = torch.cat([p.grad.flatten().float() for p in net.parameters() if p.grad is not None])
                parts, counts = breakdown(net, pts, feats, amp)
            ref = ref or (out, grads)
            rows.append({"variant": name, "precision": prec, "profile_s": parts, **counts,
                         "out_diff": max_rel(out, ref[0]), "grad_diff": max_rel(grads, ref[1])})
        for name, t in timed(net, pts, feats, amp, chosen, args.repeats).items():
            next(r for r in rows if r["variant"] == name and r["precision"] == prec).update(t)
        print(f"  {prec} measured", flush=True)

    clock = "cpu" if device.type == "cpu" else ""
    key = "fwd_bwd_cpu_s" if clock else "fwd_bwd_s"
    print(f"\n{'variant':10s} {'prec':5s} {'fwd s':>7s} {'f+b s':>7s} {'ratio':>6s} "
          + " ".join(f"{c:>11s}" for c in CATEGORIES) + f" {'conv ops':>8s} {'out diff':>9s} {'grad diff':>9s}")
    for r in rows:
        base = next(b for b in rows if b["variant"] == "before" and b["precision"] == r["precision"])
        total = sum(r["profile_s"].values()) or 1.0
        r["ratio_to_before"] = r[key] / base[key]
        t_f, t_fb = (r["fwd_cpu_s"], r["fwd_bwd_cpu_s"]) if clock else (r["fwd_s"], r["fwd_bwd_s"])
        print(f"{r['variant']:10s} {r['precision']:5s} {t_f:7.3f} {t_fb:7.3f} {r['ratio_to_before']:6.2f} "
              + " ".join(f"{r['profile_s'][c]:6.3f} {100 * r['profile_s'][c] / total:3.0f}%" for c in CATEGORIES)
              + f" {r['conv_ops']:8d} {r['out_diff']:9.1e} {r['grad_diff']:9.1e}")
    print(f"seconds: {'process CPU' if clock else 'wall'} seconds, median of {args.repeats}; ratio: forward + backward "
          "against 'before' in the same precision; category columns: self seconds in one profiled forward + "
          f"backward ({'host' if clock else 'device'} time) and their share; conv ops: the convolutions' gather, GEMM "
          "and scatter ops in it (each one kernel launch or more on a GPU); diffs: largest |difference| from "
          "'before' over the largest |value| (output, weight gradients)")
    if not clock:
        print("CUDA kernels per forward + backward: "
              + ", ".join(f"{r['variant']} {r['precision']} {r['cuda_kernels']}" for r in rows))
    if args.json:
        args.json.write_text(json.dumps({"device": where, "args": {k: str(v) for k, v in vars(args).items()},
                                         "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
