"""The learning benchmark: does the 3D student end up better than the 2D labels it learned from?

    python benchmarks/learning.py [--work DIR] [--rooms 16] [--noise 0.5] [--systematic 0,0.3]
                                  [--rows I,II,III,IV,V] [--logits cosine] [--logit-rows V] [--set train.k=v]

On synthetic rooms labelled by the oracle (noisy ground truth, no CLIP), it trains Table 2's rows
(EXP I–V) with the same recipe and the same optimiser-step budget each, and scores every row on the
val split **like for like**: the trained model, the raw pseudo-labels and the refined pseudo-labels
on the same points, both on all labelled points (a point no view sees has no pseudo-label and is a
miss) and on the points seen by at least one view. It runs once per noise setting: per-view noise
only (``--systematic 0``: drawn anew per view, so averaging views removes much of it) and per-view
+ systematic confusion (``pseudolabel.systematic`` > 0: a fixed look-alike swapped in every view of
a scene, which no multi-view vote can undo). ``--logits`` lists logit forms (cosine, learnable,
inner) compared on the ``--logit-rows`` rows at the first setting.

Writes under ``--work``: ``results.json`` (every row: all/seen mIoU of model, pseudo, refined,
per-class IoU, steps, seconds), ``curves.csv`` (val mIoU and every loss term per epoch, per row),
``curves.png`` (needs matplotlib) and ``table.md``. Finished rows are reused: rerun to resume.
The paper's ordering (I < II < III < IV < V) is the hypothesis, not an assertion: read the table.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any

RECIPE = "recipes/synthetic.yaml"


def torch_no_grad(fn: Any) -> Any:
    def wrapped(*a: Any, **k: Any) -> Any:
        import torch

        with torch.no_grad():
            return fn(*a, **k)
    return wrapped


def build_store(work: Path, base: Path, rooms: int, val_rooms: int, noise: float, systematic: float, seed: int,
                recipe: str) -> Path:
    """A synthetic store labelled at (noise, systematic); the rooms are generated once and copied."""
    from hiclr.config import OversegmentConfig, PseudolabelConfig, RefineConfig, SyntheticConfig, load_section
    from hiclr.datasets.synthetic import prepare_synthetic
    from hiclr.oversegment import run_oversegment
    from hiclr.pseudolabel import run_pseudolabel
    from hiclr.refine import run_refine
    from hiclr.store import Store

    if not (base / "dataset.yaml").is_file():
        syn = dataclasses.replace(load_section(SyntheticConfig, "synthetic", recipe), scenes=rooms, seed=seed,
                                  val_fraction=val_rooms / rooms)
        prepare_synthetic(base, syn, workers=2, progress=True)
    data = work / f"store-noise{noise:g}-sys{systematic:g}"
    if not (data / "dataset.yaml").is_file():
        tmp = data.with_name(data.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(base, tmp)
        tmp.rename(data)
    store = Store.open(data)
    pl = dataclasses.replace(load_section(PseudolabelConfig, "pseudolabel", recipe), labeler="oracle", noise=noise,
                             systematic=systematic)
    run_pseudolabel(store, pl, progress=True)
    run_oversegment(store, load_section(OversegmentConfig, "oversegment", recipe), workers=2, progress=True)
    run_refine(store, load_section(RefineConfig, "refine", recipe), progress=True)
    return data


def score_row(store: Any, run: Path, device: str) -> dict[str, Any]:
    """Export the run's last checkpoint and predict the val split with it, as ``hiclr distill --export``
    and ``hiclr evaluate --model`` do; score model, pseudo and refined alike."""
    from hiclr.distill import export_model
    from hiclr.evaluate import evaluate_sources
    from hiclr.predict import predict_store

    model, _, _ = export_model(run, run / "model.pt", "last")
    predict_store(store, model, split="val", device=device, overwrite=True)
    out: dict[str, Any] = {}
    for ev in evaluate_sources(store, ["pred", "pseudo", "refined"], "val", progress=False):
        name = "model" if ev.labels == "pred" else ev.labels
        out[name] = {"all": 100 * ev.scores["miou"], "seen": 100 * (ev.scores_seen or {}).get("miou", float("nan")),
                     "per_class_all": {k: v["iou"] for k, v in ev.scores["per_class"].items()}}
        out["coverage"] = ev.coverage
    return out


@torch_no_grad
def attention_probe(store: Any, run: Path, cfg: Any, device: str) -> dict[str, float] | None:
    """Does the intra-scene transformer attend along the labels? On the val rooms, the first block's
    attention over M points sampled as in training: the attention mass on points whose ground truth
    equals the query's (``same_label``), against that share under uniform attention (``chance``)."""
    import numpy as np
    import torch

    from hiclr.inference import input_features
    from hiclr.train.checkpoint import load_checkpoint
    from hiclr.train.model import HiclModel, build_network
    from hiclr.train.sampler import sample_points

    state = load_checkpoint(run / "ckpt" / "last.pt")
    if "intra" not in state:
        return None
    model = HiclModel(build_network(cfg, int(state["text"].shape[1])), state["text"], cfg)
    model.net.load_state_dict(state["net"])
    model.intra.load_state_dict(state["intra"])
    model.eval()
    same, chance = [], []
    for i, sid in enumerate(store.scene_ids("val")):
        sc = store.scene(sid)
        gt = sc.read("label").astype(np.int64)
        idx = sample_points(sc.read("segments"), np.where(gt >= 0, gt, -1), cfg.samples, np.random.default_rng([cfg.seed, i]))
        feats = input_features(sc.read("color"), None, cfg.input, sc.num_points)
        rows, index, _ = model.net.forward_rows([torch.from_numpy(sc.read("coord"))], [torch.from_numpy(feats)])
        x = rows[index[torch.from_numpy(idx)]].float()
        block = model.intra.blocks[0]
        w = block.attn.weights(block.ln_1(x)).mean(0)  # (M, M), averaged over heads
        eq = torch.from_numpy(gt[idx][:, None] == gt[idx][None, :]).float()
        same.append(float((w * eq).sum(1).mean()))
        chance.append(float(eq.mean(1).mean()))
    return {"same_label": float(np.mean(same)), "chance": float(np.mean(chance))}


def read_curves(run: Path) -> list[dict[str, str]]:
    with open(run / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def plot(curves: list[dict[str, Any]], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no curves.png (pip install matplotlib)")
        return None
    keys = sorted({(c["setting"], c["row"], c["logits"]) for c in curves})
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for key in keys:
        pts = [c for c in curves if (c["setting"], c["row"], c["logits"]) == key]
        label = f"{key[0]} EXP {key[1]} {key[2]}"
        val = [(int(c["epoch"]), float(c["val_miou"]) * 100) for c in pts if c.get("val_miou")]
        if val:
            axes[0].plot(*zip(*val), marker="o", ms=3, label=label)
        axes[1].plot([int(c["epoch"]) for c in pts], [float(c["loss"]) for c in pts], label=label)
    axes[0].set(xlabel="epoch", ylabel="val mIoU %, all labelled points", title="model during training")
    axes[1].set(xlabel="epoch", ylabel="training loss (mean of active terms)", title="loss")
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="benchmarks/_learning", help="Working folder (stores, runs, results).")
    ap.add_argument("--recipe", default=RECIPE, help="Recipe whose synthetic/pseudolabel/.../train sections are used.")
    ap.add_argument("--rooms", type=int, default=16)
    ap.add_argument("--val-rooms", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--noise", type=float, default=0.5, help="Per-view oracle noise.")
    ap.add_argument("--systematic", default="0,0.3", help="Comma list: one benchmark per systematic-confusion rate.")
    ap.add_argument("--rows", default="I,II,III,IV,V")
    ap.add_argument("--logits", default="cosine", help="Comma list of logit forms (cosine, learnable, inner).")
    ap.add_argument("--logit-rows", default="V", help="Rows on which the extra logit forms are compared.")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto (train and predict).")
    ap.add_argument("--prepare-only", action="store_true",
                    help="Build the stores and stop (prepare needs open3d: do it here, carry --work to a GPU machine).")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="train.KEY=VALUE (repeatable)")
    args = ap.parse_args()

    import torch

    from hiclr.config import load_section
    from hiclr.store import Store
    from hiclr.train.config import TABLE2, TrainConfig
    from hiclr.train.loop import train

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    base_cfg = load_section(TrainConfig, "train", args.recipe, args.overrides)
    results_path = work / "results.json"
    results: dict[str, Any] = json.loads(results_path.read_text()) if results_path.is_file() else {}
    curves: list[dict[str, Any]] = []
    forms = [f.strip() for f in args.logits.split(",") if f.strip()]
    settings = [float(s) for s in args.systematic.split(",")]
    t_all = time.time()
    for si, systematic in enumerate(settings):
        setting = f"noise {args.noise:g}" + (f" + systematic {systematic:g}" if systematic else " (per-view only)")
        data = build_store(work, work / f"rooms-{args.rooms}-seed{args.seed}", args.rooms, args.val_rooms, args.noise,
                           systematic, args.seed, args.recipe)
        store = Store.open(data)
        if args.prepare_only:
            continue
        jobs = [(row, "cosine" if "cosine" in forms else forms[0]) for row in args.rows.split(",")]
        if si == 0:
            jobs += [(row, f) for f in forms for row in args.logit_rows.split(",") if (row, f) not in jobs]
        for row, form in jobs:
            key = f"{setting} | EXP {row} | {form}"
            run = data.parent / f"run-sys{systematic:g}-{row}-{form}"
            cfg = dataclasses.replace(base_cfg, stages=TABLE2[row], logits=form, device=args.device)
            if form == "inner" and cfg.grad_clip == 0:
                cfg = dataclasses.replace(cfg, grad_clip=1.0)  # the raw inner product diverges at lr 0.2 without it
            if key not in results:
                torch.manual_seed(cfg.seed)
                t0 = time.time()
                resume = (run / "ckpt" / "last.pt").is_file()
                if not resume:
                    shutil.rmtree(run, ignore_errors=True)
                res = train(data, run, cfg, resume=resume)
                steps = res.epochs_done * -(-len(store.scene_ids("train")) // cfg.batch_size)
                results[key] = {"setting": setting, "row": row, "logits": form, "stages": cfg.stages, "steps": steps,
                                "seconds": round(time.time() - t0, 1), **score_row(store, run, args.device),
                                "attention": attention_probe(store, run, cfg, args.device)}
                results_path.write_text(json.dumps(results, indent=1))
            r = results[key]
            print(f"{key}: model {r['model']['all']:.1f} / {r['model']['seen']:.1f}  pseudo {r['pseudo']['all']:.1f} / "
                  f"{r['pseudo']['seen']:.1f}  refined {r['refined']['all']:.1f} / {r['refined']['seen']:.1f}"
                  f"  ({r['steps']} steps, {r['seconds']:.0f} s)"
                  + (f"  attention on same label {100 * r['attention']['same_label']:.0f} % (uniform "
                     f"{100 * r['attention']['chance']:.0f} %)" if r.get("attention") else ""), flush=True)
            curves += [{"setting": setting, "row": row, "logits": form, **c} for c in read_curves(run)]

    if args.prepare_only:
        print(f"stores ready under {work}")
        return
    cols = sorted({k for c in curves for k in c})
    with open(work / "curves.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(curves)
    plot(curves, work / "curves.png")
    header = ("| setting | EXP | logits | model all | model seen | pseudo all | pseudo seen | refined all | refined seen "
              "| steps | s |")
    lines = [header, "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results.values():
        lines.append(f"| {r['setting']} | {r['row']} | {r['logits']} | {r['model']['all']:.1f} | {r['model']['seen']:.1f} "
                     f"| {r['pseudo']['all']:.1f} | {r['pseudo']['seen']:.1f} | {r['refined']['all']:.1f} "
                     f"| {r['refined']['seen']:.1f} | {r['steps']} | {r['seconds']:.0f} |")
    cov = next(iter(results.values()))["coverage"] if results else None
    lines.append(f"\nval mIoU %, {args.val_rooms} val rooms of {args.rooms}; all = every labelled point (unlabelled = "
                 f"miss), seen = the {100 * (cov or 0):.1f} % seen by a view; {time.time() - t_all:.0f} s this call")
    (work / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
