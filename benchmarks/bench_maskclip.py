"""Frames per second of dense CLIP pseudo-labelling: ViT-B-16 dense labels for 640×480 frames.

Random weights (``pretrained=None``) cost exactly what the real ones do and need no download.
Per frame: CLIP normalisation, the ViT at the chosen input size, 20-class logits upsampled to the
640×480 depth grid, argmax and score — :meth:`MaskCLIP.label_images` — and, when
``hiclr.geometry`` is present, the point↔pixel pairing of a 150 k-point scene against the frame's
depth map (``pair_points_with_view``). The text tower is not timed (it runs once per class list and
is cached). Prints one line per (input size, precision), best of ``--repeats`` runs, then, with
``--modes``, one line per dense mode (``maskclip``, ``sclip``, ``clearclip``, ``naclip``, and
``naclip+pamr`` = NACLIP with its 10 PAMR steps on the 640×480 grid) at the first size and
precision, as frames/s and as a ratio to ``maskclip`` measured in the same run.

    python benchmarks/bench_maskclip.py [--frames 4] [--batch 4] [--device cpu|cuda|auto]
                                        [--sizes 480x640,240x320] [--precisions fp32,bf16]
                                        [--modes maskclip,sclip,clearclip,naclip,naclip+pamr]
"""

from __future__ import annotations

import argparse
import importlib
import os
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

os.environ.setdefault("HF_HUB_OFFLINE", "1")

FRAME_H, FRAME_W = 480, 640
NUM_CLASSES = 20


def best_of(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> float:
    best = float("inf")
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def synthetic_view(num_points: int, device: torch.device, seed: int = 0):
    """Points in front of a camera at the origin and a depth map that sees about half of them."""
    g = torch.Generator().manual_seed(seed)
    K = torch.tensor([[577.0, 0, 319.5], [0, 577.0, 239.5], [0, 0, 1]])
    z = 1.0 + 4.0 * torch.rand(num_points, generator=g)
    u = torch.rand(num_points, generator=g) * (FRAME_W - 1)
    v = torch.rand(num_points, generator=g) * (FRAME_H - 1)
    pts = torch.stack([(u - 319.5) * z / 577.0, (v - 239.5) * z / 577.0, z], 1)
    depth = 1.0 + 4.0 * torch.rand(FRAME_H, FRAME_W, generator=g)
    return pts.to(device), K.to(device), torch.eye(4).to(device), depth.to(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ViT-B-16")
    ap.add_argument("--frames", type=int, default=4, help="frames per timed run")
    ap.add_argument("--batch", type=int, default=4, help="frames per forward pass")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--sizes", default="480x640,240x320", help="network input sizes HxW, comma-separated")
    ap.add_argument("--precisions", default="", help="default: fp32,bf16 on CPU; fp32,fp16,bf16 on GPU")
    ap.add_argument("--points", type=int, default=150_000, help="scene points paired per frame")
    ap.add_argument("--modes", default="", help="dense modes to compare, e.g. maskclip,sclip,clearclip,naclip,"
                    "naclip+pamr ('' = none; maskclip is always measured first as the baseline)")
    args = ap.parse_args()

    from hiclr.vlm.maskclip import MaskCLIP, load_clip

    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    precisions = (
        args.precisions.split(",")
        if args.precisions
        else (["fp32", "fp16", "bf16"] if device.type == "cuda" else ["fp32", "bf16"])
    )
    model, weights_id = load_clip(args.model, None, device)
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    print(
        f"{args.model} random weights on {device} ({name}); torch {torch.__version__}; "
        f"{args.frames} frames of {FRAME_W}x{FRAME_H}, batch {args.batch}, best of {args.repeats}"
    )

    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (args.frames, FRAME_H, FRAME_W, 3), dtype=torch.uint8, generator=g)
    text = F.normalize(torch.randn(NUM_CLASSES, model.visual.output_dim, generator=g), dim=1)

    pair_s = None
    try:
        geometry = importlib.import_module("hiclr.geometry")
    except ImportError:
        geometry = None
    if geometry is not None:
        pts, K, pose, depth = synthetic_view(args.points, device)

        def pair() -> tuple:
            return geometry.pair_points_with_view(pts, K, pose, depth)

        pair()
        pair_s = best_of(pair, max(3, args.repeats), sync)
        visible = len(pair()[0])
        print(
            f"pairing: {args.points} points against one depth map ({visible} visible): "
            f"{pair_s * 1e3:.1f} ms/frame"
        )
    else:
        print("pairing: hiclr.geometry not present, skipped")

    for size_s in args.sizes.split(","):
        h, w = (int(s) for s in size_s.lower().split("x"))
        size = None if (h, w) == (FRAME_H, FRAME_W) else (h, w)
        for precision in precisions:
            clip = MaskCLIP(
                model, args.model, weights_id, precision=precision, input_size=size, batch_size=args.batch
            )

            def run(clip: MaskCLIP = clip) -> object:
                return clip.label_images(frames, text, out_size=(FRAME_H, FRAME_W))

            clip.label_images(frames[: min(args.batch, args.frames)], text)  # warm-up
            secs = best_of(run, args.repeats, sync)
            per_frame = secs / args.frames
            line = (
                f"input {h}x{w} ({h // 16}x{w // 16} patches) {precision}: {1 / per_frame:6.2f} frames/s "
                f"({per_frame * 1e3:.0f} ms/frame labels)"
            )
            if pair_s is not None:
                line += f"; with pairing {1 / (per_frame + pair_s):6.2f} frames/s"
            print(line, flush=True)

    if args.modes:
        h, w = (int(s) for s in args.sizes.split(",")[0].lower().split("x"))
        size = None if (h, w) == (FRAME_H, FRAME_W) else (h, w)
        modes = ["maskclip"] + [m for m in args.modes.split(",") if m and m != "maskclip"]
        print(f"dense modes at input {h}x{w} {precisions[0]} (ratio = frames/s over maskclip's, same run):")
        base = None
        for mode in modes:
            dense, _, post = mode.partition("+")
            clip = MaskCLIP(model, args.model, weights_id, precision=precisions[0], input_size=size,
                            batch_size=args.batch, dense=dense, pamr_steps=10 if post == "pamr" else 0)

            def run_mode(clip: MaskCLIP = clip) -> object:
                return clip.label_images(frames, text, out_size=(FRAME_H, FRAME_W))

            clip.label_images(frames[: min(args.batch, args.frames)], text)  # warm-up
            fps = args.frames / best_of(run_mode, args.repeats, sync)
            base = fps if base is None else base
            print(f"  {mode:12s} {fps:6.2f} frames/s  ratio {fps / base:5.2f}", flush=True)


if __name__ == "__main__":
    main()
