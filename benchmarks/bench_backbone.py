"""Forward + backward time of MinkUNet14A on a ScanNet-sized scene, for every installed backend.

    python benchmarks/bench_backbone.py [--points 150000] [--voxel-sizes 0.05,0.1] [--repeats 3]
                                        [--device cpu|cuda] [--threads N] [--arch MinkUNet14A]
                                        [--backends torch,minkowski,spconv,torchsparse] [--json PATH]

The scene is synthetic and surface-like, as a scan is: the floor, ceiling and four walls of a
6 × 5 × 2.6 m room plus eight boxes on the floor, sampled uniformly per unit area with 5 mm noise and
random colours in [-1, 1]. One step is ``PointNetwork(points, feats)`` (voxelisation and kernel
maps included, as every training step on a new scene pays them) followed by ``backward`` of the sum
of the 512-wide outputs. All backends share one state dict (eval mode: one function for all) and run
side by side in one process, voxel size by voxel size. Printed (and written to ``--json``): median wall and process-CPU seconds
per step, forward only and forward + backward, per precision (``--precisions fp32,bf16``: bf16
autocast), the ratio to the ``torch`` backend in fp32 at the same voxel size, and the largest
difference of the forward output from ``torch``'s. On CPU, spconv is timed forward-only and with one
thread (its CPU backward needs CUDA; its CPU results are right only with one thread), and
torchsparse forward-only (1.4.0's CPU backward raises ``NotImplementedError``; 2.x has no CPU
convolution at all).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from hiclr.device import resolve_device
from hiclr.errors import HiclrError
from hiclr.nn import PointNetwork, available_backends


def device_arg(name: str) -> torch.device:
    """``--device`` of a benchmark as a torch device, or one line and exit 2 (no CUDA here, a typo)."""
    try:
        return resolve_device(name, "--device")
    except HiclrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def synthetic_room(n_points: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3) points in metres on the surfaces of a furnished room, and (N, 3) colours in [-1, 1]."""
    pts, colours, _, _ = room_surfaces(n_points, seed)
    return pts, colours


def room_surfaces(n_points: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`synthetic_room` with each point's surface (N,) int64 (0 floor, 1 ceiling, 2-5 walls,
    then five per box) and its unit normal (N, 3)."""
    g = torch.Generator().manual_seed(seed)
    lx, ly, lz = 6.0, 5.0, 2.6
    # rectangles: origin, edge u, edge v
    rects = [
        ((0, 0, 0), (lx, 0, 0), (0, ly, 0)),  # floor
        ((0, 0, lz), (lx, 0, 0), (0, ly, 0)),  # ceiling
        ((0, 0, 0), (lx, 0, 0), (0, 0, lz)),
        ((0, ly, 0), (lx, 0, 0), (0, 0, lz)),
        ((0, 0, 0), (0, ly, 0), (0, 0, lz)),
        ((lx, 0, 0), (0, ly, 0), (0, 0, lz)),
    ]
    for _ in range(8):  # boxes: four sides and a top each
        ox, oy = (torch.rand(2, generator=g) * torch.tensor([lx - 1.2, ly - 1.2]) + 0.1).tolist()
        sx, sy, sz = (torch.rand(3, generator=g) * torch.tensor([1.0, 1.0, 1.2]) + 0.2).tolist()
        rects += [
            ((ox, oy, sz), (sx, 0, 0), (0, sy, 0)),
            ((ox, oy, 0), (sx, 0, 0), (0, 0, sz)),
            ((ox, oy + sy, 0), (sx, 0, 0), (0, 0, sz)),
            ((ox, oy, 0), (0, sy, 0), (0, 0, sz)),
            ((ox + sx, oy, 0), (0, sy, 0), (0, 0, sz)),
        ]
    o, u, v = (torch.tensor([r[i] for r in rects], dtype=torch.float32) for i in range(3))
    cross = torch.linalg.cross(u, v)
    area = cross.norm(dim=1)
    which = torch.multinomial(area, n_points, replacement=True, generator=g)
    st = torch.rand(n_points, 2, generator=g)
    pts = o[which] + st[:, :1] * u[which] + st[:, 1:] * v[which]
    pts = pts + torch.randn(n_points, 3, generator=g) * 0.005
    colours = torch.rand(n_points, 3, generator=g) * 2 - 1
    return pts, colours, which, (cross / area[:, None])[which]


def time_backend(
    net: PointNetwork, pts, feats, repeats: int, backward: bool, amp: bool = False
) -> tuple[float, float, torch.Tensor]:
    """Median (wall, process CPU) seconds of one step over ``repeats`` runs, after one warm-up run,
    and the output of the last run (detached).

    On a shared machine the wall time depends on the other jobs; with one thread, process CPU time
    is close to what the step takes on an idle core.
    """
    walls, cpus = [], []
    for i in range(repeats + 1):
        net.zero_grad(set_to_none=True)
        if pts.is_cuda:
            torch.cuda.synchronize()
        w0, c0 = time.perf_counter(), time.process_time()
        with torch.set_grad_enabled(backward), torch.autocast(pts.device.type, torch.bfloat16, enabled=amp):
            out = net([pts], [feats])[0]
            if backward:
                out.sum().backward()
        if pts.is_cuda:
            torch.cuda.synchronize()
        if i > 0:
            walls.append(time.perf_counter() - w0)
            cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus), out.detach().float()


def cpu_passes(name: str, device: str) -> tuple[list[str], str]:
    """The passes a backend can be timed in on ``device``, and why a pass is missing ("" if none)."""
    if device == "cpu" and name == "spconv":
        return ["fwd"], "spconv's CPU backward needs CUDA; timed with one thread (its only correct CPU setting)"
    if device == "cpu" and name == "torchsparse":
        return ["fwd"], "torchsparse 1.4.0's CPU backward raises NotImplementedError"
    return ["fwd", "fwd+bwd"], ""


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for dist in ("MinkowskiEngine", "spconv", "cumm", "torchsparse"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="MinkUNet14A")
    ap.add_argument("--points", type=int, default=150_000)
    ap.add_argument("--voxel-size", type=float, default=0.05, help="one voxel size (see --voxel-sizes)")
    ap.add_argument("--voxel-sizes", default="", help="comma list of voxel sizes in metres (overrides --voxel-size)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--backends", default="", help="comma-separated subset (default: all installed)")
    ap.add_argument("--precisions", default="fp32", help="comma list of fp32, bf16 (autocast)")
    ap.add_argument("--json", default="", help="write the results to this JSON file")
    args = ap.parse_args()

    args.device = str(device_arg(args.device))
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    pts, feats = synthetic_room(args.points)
    pts, feats = pts.to(args.device), feats.to(args.device)
    sizes = [float(v) for v in args.voxel_sizes.split(",") if v] or [args.voxel_size]
    installed = [b for b, ok in available_backends().items() if ok]
    wanted = [b for b in args.backends.split(",") if b] or installed
    result = {
        "arch": args.arch,
        "points": args.points,
        "device": args.device,
        "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else cpu_model(),
        "threads": args.threads,
        "repeats": args.repeats,
        "versions": versions(),
        "not_installed": [b for b in wanted if b not in installed],
        "notes": {b: cpu_passes(b, args.device)[1] for b in wanted if cpu_passes(b, args.device)[1]},
        "levels": [],
    }
    failed: list[str] = []
    for voxel_size in sizes:
        n_vox = torch.unique(torch.floor(pts / voxel_size), dim=0).shape[0]
        print(
            f"\n{args.arch}, {args.points} points -> {n_vox} voxels at {voxel_size} m, "
            f"device {args.device}, {args.threads} thread(s)"
        )
        torch.manual_seed(0)
        ref = PointNetwork(arch=args.arch, voxel_size=voxel_size, backend="torch").to(args.device).eval()
        rows: list[dict] = []
        ref_out: torch.Tensor | None = None
        for name in wanted:
            if name not in installed:
                print(f"{name:12s} not installed")
                continue
            net = PointNetwork.from_config({**ref.arch_config(), "backend": name}).to(args.device).eval()
            net.load_state_dict(ref.state_dict())
            passes, _ = cpu_passes(name, args.device)
            torch.set_num_threads(1 if name == "spconv" and args.device == "cpu" else args.threads)
            for prec in args.precisions.split(","):
                for kind in passes:
                    try:
                        wall, cpu, out = time_backend(net, pts, feats, args.repeats, kind == "fwd+bwd", prec == "bf16")
                    except Exception as exc:  # noqa: BLE001 - report a failing backend and go on
                        print(f"{name:12s} {prec} {kind} failed: {type(exc).__name__}: {exc}")
                        failed.append(f"{name} {prec} {kind} at {voxel_size} m")
                        continue
                    if name == "torch" and prec == "fp32" and kind == "fwd":
                        ref_out = out
                    diff = float((out - ref_out).abs().max()) if ref_out is not None else float("nan")
                    rows.append({"backend": name, "precision": prec, "pass": kind, "wall_s": wall, "cpu_s": cpu,
                                 "max_abs_diff_to_torch": diff})
            torch.set_num_threads(args.threads)
            del net
        base = {r["pass"]: r for r in rows if r["backend"] == "torch" and r["precision"] == "fp32"}
        print(f"{'backend':12s} {'prec':5s} {'pass':8s} {'wall s':>8s} {'cpu s':>8s} "
              f"{'ratio to torch fp32 (wall, cpu)':>32s} {'max |out - torch|':>18s}")
        for r in rows:
            b = base.get(r["pass"])
            r["ratio_wall"] = r["wall_s"] / b["wall_s"] if b else None
            r["ratio_cpu"] = r["cpu_s"] / b["cpu_s"] if b else None
            rw, rc = (r["ratio_wall"], r["ratio_cpu"]) if b else (float("nan"), float("nan"))
            print(f"{r['backend']:12s} {r['precision']:5s} {r['pass']:8s} {r['wall_s']:8.2f} {r['cpu_s']:8.2f} "
                  f"{rw:16.2f} {rc:15.2f} {r['max_abs_diff_to_torch']:18.1e}")
        result["levels"].append({"voxel_size": voxel_size, "voxels": n_vox, "rows": rows})
    for name, why in result["notes"].items():
        print(f"note: {name}: {why}")
    result["failed"] = failed
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.json}")
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
