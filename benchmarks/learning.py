"""The learning benchmark: does the 3D student end up better than the 2D labels it learned from?

    python benchmarks/learning.py [--work DIR] [--rooms N] [--noise 0.5] [--systematic 0,0.3]
                                  [--rows I,II,III,IV,V] [--seeds 0,1] [--logits cosine] [--logit-rows V]
                                  [--set train.k=v] [--tag NAME] [--report-only]

On synthetic rooms labelled by the oracle (noisy ground truth, no CLIP), it trains Table 2's rows
(EXP I–V) with the same recipe and the same optimiser-step budget each, and scores every row on the
val split **like for like**: the trained model, the raw pseudo-labels and the refined pseudo-labels
on the same points, both on all labelled points (a point no view sees has no pseudo-label and is a
miss) and on the points seen by at least one view. It runs once per noise setting: per-view noise
only (``--systematic 0``: drawn anew per view, so averaging views removes much of it) and per-view
+ systematic confusion (``pseudolabel.systematic`` > 0: a fixed look-alike swapped in every view of
a scene, which no multi-view vote can undo). ``--logits`` lists logit forms (cosine, learnable,
inner) compared on the ``--logit-rows`` rows at the first setting.

``--seeds`` trains each row once per training seed on the same store (same rooms, same
pseudo-labels), so the table gives each row's mean and spread. ``--set train.k=v`` makes a variant:
its runs are named by the overrides (or ``--tag``), except the budget's keys (epochs, val_every),
which every row shares. Each run writes its own ``result.json`` when it finishes, so several
processes may train different rows of one ``--work`` at once (prepare the stores first with
``--prepare-only``); a killed run resumes from its checkpoint, and each job prints what is left.

Writes under ``--work``: ``run-*/result.json`` (one run: all/seen mIoU of model, pseudo, refined,
per-class IoU, the attention probe, steps, seconds), and from every finished run there:
``results.json``, ``table.md`` (mean ± half the range over seeds), ``table2.png`` (the rows as bars,
seeds as dots, the teacher as lines), ``attention.png`` (the probe per row), ``curves.csv`` (val
mIoU and every loss term per epoch, per run) and ``curves.png`` (figures need matplotlib).

    python benchmarks/learning.py --work benchmarks/_table2 --systematic 0 --seeds 0,1 --set train.epochs=20
    python benchmarks/learning.py --work benchmarks/_table2 --rows V --set train.kl_over=logits   # a variant
The paper's ordering (I < II < III < IV < V) is the hypothesis, not an assertion: read the table.

**The budget curve** (``--curve``): each of ``--rows`` (default II,V) trained once for the recipe's
budget (``--set train.epochs=N``), validated every ``train.val_every`` epochs on all and seen points
(``hiclr train``'s own ``val.jsonl``), against optimiser steps and training seconds (validation
excluded), with the pseudo-label and refined-label lines on the same axes. Writes ``curve.csv``
(every validation: row, step, seconds, all, seen, per-class IoU), ``curve.png`` and prints the
**time to teacher**: the first validation at which the model passes the refined labels on all points
and the pseudo-labels on seen points, or "not reached" with the gap at the end. Resumable: a killed
row continues from its last checkpoint.

    python benchmarks/learning.py --curve --rows II,V --systematic 0 --set train.epochs=250 --set train.val_every=5
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

import numpy as np

RECIPE = "recipes/synthetic.yaml"


def torch_no_grad(fn: Any) -> Any:
    def wrapped(*a: Any, **k: Any) -> Any:
        import torch

        with torch.no_grad():
            return fn(*a, **k)
    return wrapped


def store_dir(work: Path, noise: float, systematic: float) -> Path:
    """The store labelled at (noise, systematic) under ``work``."""
    return work / f"store-noise{noise:g}-sys{systematic:g}"


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
    data = store_dir(work, noise, systematic)
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
    equals the query's (``same_label``), against that share under uniform attention (``chance``).
    And does the feedback's target know more than the student? The accuracy against the ground
    truth of the class logits of the network's features (``acc_net``) and of the last transformer's
    outputs on the same points (``acc_transformer``), each room's samples on their own."""
    import numpy as np
    import torch

    from hiclr.inference import input_features
    from hiclr.losses import class_logits
    from hiclr.train.checkpoint import load_checkpoint
    from hiclr.train.model import HiclModel, build_network
    from hiclr.train.sampler import sample_points

    state = load_checkpoint(run / "ckpt" / "last.pt")
    if "intra" not in state:
        return None
    model = HiclModel(build_network(cfg, int(state["text"].shape[1])), state["text"], cfg)
    model.net.load_state_dict(state["net"])
    model.intra.load_state_dict(state["intra"])
    if model.inter is not None and "inter" in state:
        model.inter.load_state_dict(state["inter"])
    model.eval()
    same, chance, hits_net, hits_tr, n = [], [], 0, 0, 0
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
        scene = torch.zeros(len(idx), dtype=torch.long)
        agg = model.intra(x, scene)
        agg = model.inter(agg, scene) if model.inter is not None else agg
        truth = torch.from_numpy(gt[idx])
        n += len(idx)
        hits_net += int((class_logits(x, model.text, cfg.tau, cfg.normalize).argmax(1) == truth).sum())
        hits_tr += int((class_logits(agg, model.text, cfg.tau, cfg.normalize).argmax(1) == truth).sum())
    return {"same_label": float(np.mean(same)), "chance": float(np.mean(chance)),
            "acc_net": hits_net / n, "acc_transformer": hits_tr / n}


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
    def key_of(c: dict[str, Any]) -> tuple[str, ...]:
        return (c["setting"], c["row"], c["logits"], c.get("tag", ""), str(c.get("seed", "")))

    keys = sorted({key_of(c) for c in curves})
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for key in keys:
        pts = [c for c in curves if key_of(c) == key]
        label = f"{key[0]} EXP {key[1]} {key[2]} {key[3]} seed {key[4]}"
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


def teacher_scores(store: Any) -> dict[str, dict[str, float]]:
    """mIoU % (all, seen) of the pseudo and refined labels on the val split, as ``evaluate --compare``."""
    from hiclr.evaluate import evaluate_sources

    return {ev.labels: {"all": 100 * ev.scores["miou"], "seen": 100 * (ev.scores_seen or {}).get("miou", float("nan"))}
            for ev in evaluate_sources(store, ["pseudo", "refined"], "val", progress=False)}


def time_to_teacher(points: list[dict[str, Any]], teacher: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The first validation (step, seconds) at which the model is above refined on all points and
    above pseudo on seen points, each on its own and both together; else the gap at the last one."""
    out: dict[str, Any] = {}
    goals = {"all > refined": lambda p: p["all"] > teacher["refined"]["all"],
             "seen > pseudo": lambda p: p["seen"] > teacher["pseudo"]["seen"]}
    goals["both"] = lambda p: all(g(p) for k, g in goals.items() if k != "both")
    last = points[-1] if points else None
    for name, reached in goals.items():
        hit = next((p for p in points if reached(p)), None)
        if hit is not None:
            out[name] = {"step": hit["step"], "seconds": hit["train_seconds"]}
        elif last is not None:
            out[name] = {"not_reached": True, "gap_all": last["all"] - teacher["refined"]["all"],
                         "gap_seen": last["seen"] - teacher["pseudo"]["seen"], "last_step": last["step"]}
    return out


def plot_curve(points: list[dict[str, Any]], teacher: dict[str, dict[str, float]], path: Path, title: str) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no curve.png (pip install matplotlib)")
        return None
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    rows = sorted({p["row"] for p in points}, key=lambda r: ("I", "II", "III", "IV", "V").index(r))
    for col, (xkey, xlabel) in enumerate((("step", "optimiser steps"), ("train_seconds", "training seconds (no validation)"))):
        for r, (metric, teach) in enumerate((("all", "refined"), ("seen", "pseudo"))):
            ax = axes[r][col]
            for row in rows:
                pts = [p for p in points if p["row"] == row]
                ax.plot([p[xkey] for p in pts], [p[metric] for p in pts], marker="o", ms=2.5, label=f"model, EXP {row}")
            for src, style in (("pseudo", ":"), ("refined", "--")):
                ax.axhline(teacher[src][metric], color="k", ls=style, lw=1, label=f"{src} labels")
            ax.set(xlabel=xlabel, ylabel=f"val mIoU %, {metric} points", title=f"{metric} points: goal above {teach}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def curve_main(args: argparse.Namespace, base_cfg: Any, work: Path) -> None:
    """``--curve``: see the module doc."""
    from hiclr.store import Store
    from hiclr.train.config import TABLE2
    from hiclr.train.loop import train

    systematic = float(args.systematic.split(",")[0])
    data = build_store(work, work / f"rooms-{args.rooms}-seed{args.seed}", args.rooms, args.val_rooms, args.noise,
                       systematic, args.seed, args.recipe)
    store = Store.open(data)
    teacher = teacher_scores(store)
    points: list[dict[str, Any]] = []
    tags = [f"train.{o}" if not o.startswith("train.") else o for o in args.overrides]
    for row in args.rows.split(","):
        run = data.parent / f"curve-sys{systematic:g}-{row}"
        cfg = dataclasses.replace(base_cfg, stages=TABLE2[row], device=args.device)
        done = (run / "ckpt" / "last.pt").is_file()
        if args.report_only:
            if not (run / "val.jsonl").is_file():
                continue
            print(f"EXP {row}: reporting what {run} has so far (not training)")
        else:
            t0 = time.time()
            res = train(data, run, cfg, resume=done and not _finished(run, cfg))
            print(f"EXP {row}: {res.epochs_done} epochs ({'already done' if res.skipped else f'{time.time() - t0:.0f} s'})",
                  flush=True)
        for line in (run / "val.jsonl").read_text().splitlines():
            rec = json.loads(line)
            points.append({"row": row, "epoch": rec["epoch"], "step": rec["step"], "train_seconds": rec["train_seconds"],
                           "all": 100 * rec["all"], "seen": 100 * rec["seen"],
                           **{f"iou_{k}": 100 * v for k, v in rec["per_class"].items()}})
    cols = list(dict.fromkeys(k for p in points for k in p))
    with open(work / "curve.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(points)
    title = (f"{args.rooms - args.val_rooms} train / {args.val_rooms} val rooms, noise {args.noise:g}, systematic "
             f"{systematic:g}; {args.recipe} {' '.join(tags)}")
    plot_curve(points, teacher, work / "curve.png", title)
    summary: dict[str, Any] = {"teacher": teacher, "settings": title, "rows": {}}
    print(f"teacher: pseudo {teacher['pseudo']['all']:.1f} / {teacher['pseudo']['seen']:.1f}, refined "
          f"{teacher['refined']['all']:.1f} / {teacher['refined']['seen']:.1f} (all / seen)")
    for row in args.rows.split(","):
        pts = [p for p in points if p["row"] == row]
        if not pts:
            continue
        ttt = time_to_teacher(pts, teacher)
        best = max(pts, key=lambda p: p["all"])
        summary["rows"][row] = {"time_to_teacher": ttt, "last": pts[-1], "best_all": best}
        for goal, v in ttt.items():
            if v.get("not_reached"):
                print(f"EXP {row} time to teacher ({goal}): not reached in {v['last_step']} steps; at the end "
                      f"all {v['gap_all']:+.1f} vs refined, seen {v['gap_seen']:+.1f} vs pseudo")
            else:
                print(f"EXP {row} time to teacher ({goal}): step {v['step']}, {v['seconds']:.0f} s of training")
        print(f"EXP {row} last: step {pts[-1]['step']} all {pts[-1]['all']:.1f} seen {pts[-1]['seen']:.1f}; "
              f"best all {best['all']:.1f} at step {best['step']}")
    (work / "curve.json").write_text(json.dumps(summary, indent=1))


def _finished(run: Path, cfg: Any) -> bool:
    """The run in ``run`` already trained ``cfg.epochs`` epochs (train() then skips it)."""
    from hiclr.train.checkpoint import load_checkpoint

    return int(load_checkpoint(run / "ckpt" / "last.pt")["epoch"]) >= cfg.epochs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="benchmarks/_learning", help="Working folder (stores, runs, results).")
    ap.add_argument("--recipe", default=RECIPE, help="Recipe whose synthetic/pseudolabel/.../train sections are used.")
    ap.add_argument("--rooms", type=int, default=0, help="Rooms in all (default: the recipe's synthetic.scenes).")
    ap.add_argument("--val-rooms", type=int, default=0, help="Val rooms (default: the recipe's, from val_fraction).")
    ap.add_argument("--seed", type=int, default=0, help="Seed of the rooms and their pseudo-labels (the store).")
    ap.add_argument("--seeds", default="", help="Comma list of training seeds, one run each (default: the recipe's).")
    ap.add_argument("--tag", default="", help="Name of this variant or budget in the run folders (default: its --set "
                    "overrides); the report groups runs by their --set overrides and step budget, not by the tag.")
    ap.add_argument("--noise", type=float, default=0.5, help="Per-view oracle noise.")
    ap.add_argument("--systematic", default="0,0.3", help="Comma list: one benchmark per systematic-confusion rate.")
    ap.add_argument("--rows", default="I,II,III,IV,V")
    ap.add_argument("--logits", default="cosine", help="Comma list of logit forms (cosine, learnable, inner).")
    ap.add_argument("--logit-rows", default="V", help="Rows on which the extra logit forms are compared.")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto (train and predict).")
    ap.add_argument("--prepare-only", action="store_true",
                    help="Build the stores and stop (prepare needs open3d: do it here, carry --work to a GPU machine).")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="train.KEY=VALUE (repeatable)")
    ap.add_argument("--curve", action="store_true",
                    help="The budget curve: --rows (default II,V) validated along one long run each; time to teacher.")
    ap.add_argument("--reprobe", action="store_true",
                    help="Rerun the attention probe on finished runs whose results lack a field it gives now, then report.")
    ap.add_argument("--report-only", action="store_true",
                    help="Write the tables and figures from the runs finished so far, without training.")
    args = ap.parse_args()
    if args.curve and args.rows == "I,II,III,IV,V":
        args.rows = "II,V"
    from hiclr.config import SyntheticConfig, load_section
    from hiclr.datasets.synthetic import splits_for

    syn = load_section(SyntheticConfig, "synthetic", args.recipe)
    args.rooms = args.rooms or syn.scenes
    args.val_rooms = args.val_rooms or len(splits_for(dataclasses.replace(syn, scenes=args.rooms))["val"])

    import torch

    from hiclr.store import Store
    from hiclr.train.config import TABLE2, TrainConfig
    from hiclr.train.loop import train

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    base_cfg = load_section(TrainConfig, "train", args.recipe, args.overrides)
    if args.curve:
        curve_main(args, base_cfg, work)
        return
    if args.reprobe:
        reprobe(work, base_cfg, args)
    if args.report_only or args.reprobe:
        report(work, args)
        return
    forms = [f.strip() for f in args.logits.split(",") if f.strip()]
    seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else [base_cfg.seed]
    settings = [float(s) for s in args.systematic.split(",")]
    tag = args.tag or variant_tag(args.overrides)
    jobs: list[tuple[float, str, str, int]] = []
    for si, systematic in enumerate(settings):
        rows = [(row, "cosine" if "cosine" in forms else forms[0]) for row in args.rows.split(",")]
        if si == 0:
            rows += [(row, f) for f in forms for row in args.logit_rows.split(",") if row and (row, f) not in rows]
        jobs += [(systematic, row, form, seed) for row, form in rows for seed in seeds]
    t_all = time.time()
    stores = {systematic: build_store(work, work / f"rooms-{args.rooms}-seed{args.seed}", args.rooms, args.val_rooms,
                                      args.noise, systematic, args.seed, args.recipe) for systematic in settings}
    if args.prepare_only:
        print(f"stores ready under {work}")
        return
    for k, (systematic, row, form, seed) in enumerate(jobs):
        data = stores[systematic]
        store = Store.open(data)
        run = data.parent / run_name(systematic, row, form, seed, tag)
        cfg = dataclasses.replace(base_cfg, stages=TABLE2[row], logits=form, device=args.device, seed=seed)
        if form == "inner" and cfg.grad_clip == 0:
            cfg = dataclasses.replace(cfg, grad_clip=1.0)  # the raw inner product diverges at lr 0.2 without it
        steps_per_epoch = -(-len(store.scene_ids("train")) // cfg.batch_size)
        print(remaining_cost(work, jobs[k:], cfg.epochs * steps_per_epoch, tag), flush=True)
        clash = budget_clash(run, cfg.epochs, steps_per_epoch)
        if clash:
            raise SystemExit(clash)
        if not (run / "result.json").is_file():
            torch.manual_seed(cfg.seed)
            t0 = time.time()
            resume = (run / "ckpt" / "last.pt").is_file()
            if not resume:
                shutil.rmtree(run, ignore_errors=True)
            res = train(data, run, cfg, resume=resume)
            setting = f"noise {args.noise:g}" + (f" + systematic {systematic:g}" if systematic else " (per-view only)")
            result = {"setting": setting, "row": row, "logits": form, "tag": tag, "overrides": args.overrides,
                      "seed": seed, "stages": cfg.stages, "steps": res.epochs_done * steps_per_epoch,
                      "seconds": round(time.time() - t0, 1), "train_seconds": train_seconds(run),
                      **score_row(store, run, args.device), "attention": attention_probe(store, run, cfg, args.device)}
            write_json(run / "result.json", result)
        r = json.loads((run / "result.json").read_text())
        print(f"{r['setting']} | EXP {row} | {form} | seed {seed}{' | ' + tag if tag else ''}: model "
              f"{r['model']['all']:.1f} / {r['model']['seen']:.1f}  pseudo {r['pseudo']['all']:.1f} / "
              f"{r['pseudo']['seen']:.1f}  refined {r['refined']['all']:.1f} / {r['refined']['seen']:.1f}"
              f"  ({r['steps']} steps, {r['seconds']:.0f} s)"
              + (f"  attention on same label {100 * r['attention']['same_label']:.0f} % (uniform "
                 f"{100 * r['attention']['chance']:.0f} %)" if r.get("attention") else ""), flush=True)
    print(f"{time.time() - t_all:.0f} s this call")
    report(work, args)


BUDGET_KEYS = ("epochs", "val_every", "workers", "device")  # --set keys that set the budget, not a variant


def budget_clash(run: Path, epochs: int, steps_per_epoch: int) -> str | None:
    """Why ``run`` cannot stand for this call's budget, if it was trained (or begun) with another.

    A run's folder is named without the budget, so another ``train.epochs`` would otherwise
    print the old run's result as the new budget's, or resume it under another schedule."""
    if (run / "result.json").is_file():
        had = int(json.loads((run / "result.json").read_text()).get("steps", 0))
    elif (run / "config.yaml").is_file():
        from hiclr.train.loop import read_config

        had = read_config(run).epochs * steps_per_epoch
    else:
        return None
    if had == epochs * steps_per_epoch:
        return None
    return (f"{run}: trained for {had} optimiser steps, this call asks for {epochs * steps_per_epoch}; "
            f"name this budget with --tag (e.g. --tag steps{epochs * steps_per_epoch}) or use another --work")


def variant_tag(overrides: list[str]) -> str:
    """The variant's name from its --set overrides, leaving out the budget's keys (every row shares them)."""
    keys = [o.removeprefix("train.") for o in overrides]
    return "+".join(k for k in keys if k.split("=")[0] not in BUDGET_KEYS)


def reprobe(work: Path, base_cfg: Any, args: argparse.Namespace) -> None:
    """The attention probe again for finished runs whose result lacks a field the probe gives now."""
    from hiclr.store import Store

    for f in sorted(work.glob("run-*/result.json")):
        r = json.loads(f.read_text())
        if not r.get("attention") or "acc_net" in r["attention"]:
            continue
        systematic = float(f.parent.name.split("-")[1].removeprefix("sys"))
        store = Store.open(store_dir(work, args.noise, systematic))
        cfg = dataclasses.replace(base_cfg, stages=r["stages"], seed=r["seed"], logits=r["logits"], device=args.device)
        r["attention"] = attention_probe(store, f.parent, cfg, args.device)
        write_json(f, r)
        print(f"{f.parent.name}: probe {r['attention']}", flush=True)


def run_name(systematic: float, row: str, form: str, seed: int, tag: str) -> str:
    """A run's folder: the seed and the variant tag (its --set overrides) are part of its name."""
    safe = "".join(c if c.isalnum() or c in "._=+-" else "_" for c in tag)
    return f"run-sys{systematic:g}-{row}-{form}-seed{seed}" + (f"-{safe}" if safe else "")


def write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    tmp.replace(path)


def train_seconds(run: Path) -> float | None:
    """Training seconds (validation excluded) of the run's last validation, from ``val.jsonl``."""
    lines = (run / "val.jsonl").read_text().splitlines() if (run / "val.jsonl").is_file() else []
    return float(json.loads(lines[-1])["train_seconds"]) if lines else None


def remaining_cost(work: Path, jobs: list[tuple[float, str, str, int]], steps: int, tag: str) -> str:
    """What is left of this call: jobs, optimiser steps and, from this folder's finished runs of the
    same row, seconds (runs already finished or resumed count as what they have left)."""
    per_step: dict[str, list[float]] = {}
    for f in work.glob("run-*/result.json"):
        r = json.loads(f.read_text())
        if r.get("steps"):
            per_step.setdefault(r["row"], []).append(r["seconds"] / r["steps"])
    left, secs, unknown = 0, 0.0, 0
    for systematic, row, form, seed in jobs:
        run = work / run_name(systematic, row, form, seed, tag)
        if (run / "result.json").is_file():
            continue
        left += steps
        if per_step.get(row):
            secs += steps * float(sorted(per_step[row])[len(per_step[row]) // 2])
        else:
            unknown += 1
    if not left:
        est = ""
    elif unknown == len(jobs):
        est = " (time not known until a run of these rows has finished here)"
    else:
        est = f", ~{secs / 60:.0f} min" + (f" + {unknown} job(s) of rows not yet timed here" if unknown else "")
    return f"[learning] {len(jobs)} job(s) left in this call: {left} optimiser steps to train{est}"


def report(work: Path, args: argparse.Namespace) -> None:
    """results.json, table.md (mean and spread over seeds), table2.png, attention.png and curves.csv/png
    from every finished run under ``work`` (runs of other calls and processes included)."""
    files = sorted(work.glob("run-*/result.json"))
    results = [json.loads(f.read_text()) for f in files]
    write_json(work / "results.json", results)
    curves: list[dict[str, Any]] = []
    for f, r in zip(files, results):
        curves += [{"setting": r["setting"], "row": r["row"], "logits": r["logits"], "tag": r.get("tag", ""),
                    "seed": r.get("seed", 0), **c} for c in read_curves(f.parent)]
    if curves:
        cols = list(dict.fromkeys(k for c in curves for k in c))
        with open(work / "curves.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=cols)
            w.writeheader()
            w.writerows(curves)
        plot(curves, work / "curves.png")
    groups = group_results(results)
    lines = [("| setting | EXP | variant | seeds | model all | model seen | pseudo all / seen | refined all / seen "
             "| attention same-label (uniform) | probe acc net / transformer | steps |"), "|---|---|---|---|---|---|---|---|---|---|---|"]
    for g in groups:
        att = [r["attention"] for r in g["runs"] if r.get("attention")]
        att_s = (f"{100 * np.mean([a['same_label'] for a in att]):.1f} % ({100 * np.mean([a['chance'] for a in att]):.1f} %)"
                 if att else "–")
        acc = [a for a in att if "acc_net" in a]
        acc_s = (f"{100 * np.mean([a['acc_net'] for a in acc]):.1f} / {100 * np.mean([a['acc_transformer'] for a in acc]):.1f}"
                 if acc else "–")
        r0 = g["runs"][0]
        lines.append(f"| {g['setting']} | {g['row']} | {g['variant']} | {g['seeds']} | {fmt(g['all'])} | {fmt(g['seen'])} "
                     f"| {r0['pseudo']['all']:.1f} / {r0['pseudo']['seen']:.1f} | {r0['refined']['all']:.1f} / "
                     f"{r0['refined']['seen']:.1f} | {att_s} | {acc_s} | {r0['steps']} |")
    cov = results[0]["coverage"] if results else 0.0
    lines.append(f"\nval mIoU %, {args.val_rooms} val rooms of {args.rooms}; all = every labelled point (unlabelled = "
                 f"miss), seen = the {100 * (cov or 0):.1f} % seen by a view; mean ± half the range over the seeds "
                 f"(training seeds on one store: same rooms, same pseudo-labels); the probe (attention_probe): the intra-scene "
                 f"transformer's first block on M sampled val points, and the accuracy of the class logits of the "
                 f"network's features / of the last transformer's outputs there")
    (work / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    (work / "per_class.md").write_text("\n".join(per_class_deltas(groups)) + "\n")
    plot_table2(groups, work / "table2.png")
    plot_attention(groups, work / "attention.png")


def default_rows(groups: list[dict[str, Any]]) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """The default variant's groups (Table 2 proper) per (setting, step budget), in ``groups``' order."""
    out: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for g in groups:
        if g["variant"] == "cosine":
            out.setdefault((g["setting"], g["steps"]), []).append(g)
    return out


def _iou(g: dict[str, Any], cls: str) -> float:
    """Class ``cls``'s IoU % on all points, mean over the group's seeds."""
    return 100 * float(np.mean([r["model"]["per_class_all"][cls] for r in g["runs"]]))


def per_class_deltas(groups: list[dict[str, Any]], base: str = "II") -> list[str]:
    """Per class, each default row's IoU (all points, mean over its seeds) minus row ``base``'s, one
    markdown table per setting and budget: what each stage buys, class by class."""
    out: list[str] = []
    for (setting, steps), rows in default_rows(groups).items():
        gs = {g["row"]: g for g in rows}
        if base not in gs or len(gs) < 2:
            continue
        others = [row for row in gs if row != base]
        classes = list(gs[base]["runs"][0]["model"]["per_class_all"])
        seeds = ", ".join(f"{row} {g['seeds']}" for row, g in gs.items())
        out += [f"\n{setting}, {steps} steps: IoU % (all points) of EXP {base}, and each row minus it "
                f"(mean over seeds: {seeds})", "",
                f"| class | {base} | " + " | ".join(f"{row} − {base}" for row in others) + " |",
                "|---" * (2 + len(others)) + "|"]
        out += [f"| {c} | {_iou(gs[base], c):.1f} | " + " | ".join(f"{_iou(gs[row], c) - _iou(gs[base], c):+.1f}" for row in others)
                + " |" for c in classes]
    return out


def fmt(v: list[float]) -> str:
    return f"{np.mean(v):.1f}" + (f" ± {(max(v) - min(v)) / 2:.1f}" if len(v) > 1 else "")


def group_results(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs grouped by (setting, step budget, row, logit form, variant), in Table 2's order, the
    largest budget first; all/seen lists over seeds. The variant is named by the run's --set
    overrides without the budget's keys (a --tag that only names the budget is not a variant)."""
    order = ("I", "II", "III", "IV", "V")
    out: dict[tuple[str, int, str, str], dict[str, Any]] = {}
    for r in results:
        name = variant_tag(r["overrides"]) if "overrides" in r else r.get("tag", "")
        variant = r["logits"] + (f" {name}" if name else "")
        steps = int(r.get("steps", 0))
        g = out.setdefault((r["setting"], steps, r["row"], variant),
                           {"setting": r["setting"], "steps": steps, "row": r["row"], "variant": variant,
                            "runs": [], "all": [], "seen": [], "seeds": ""})
        g["runs"].append(r)
        g["all"].append(r["model"]["all"])
        g["seen"].append(r["model"]["seen"])
        g["seeds"] = ",".join(str(x["seed"]) for x in g["runs"])
    return sorted(out.values(), key=lambda g: (g["setting"], -g["steps"], g["variant"] != "cosine", g["variant"],
                                               order.index(g["row"])))


def plot_table2(groups: list[dict[str, Any]], path: Path) -> Path | None:
    """Table 2 as bars: per setting, the model's mIoU per row (seeds as dots), the teacher as lines."""
    plt = _pyplot()
    panels = default_rows(groups)  # one line of panels per setting and budget
    if plt is None or not panels:
        return None
    fig, axes = plt.subplots(len(panels), 2, figsize=(12, 3.8 * len(panels)), squeeze=False)
    for i, ((setting, steps), gs) in enumerate(panels.items()):
        for j, metric in enumerate(("all", "seen")):
            ax = axes[i][j]
            ax.bar(range(len(gs)), [np.mean(g[metric]) for g in gs], color="tab:blue", alpha=0.6)
            for x, g in enumerate(gs):
                ax.plot([x] * len(g[metric]), g[metric], "k.", ms=6)
            r0 = gs[0]["runs"][0]
            for src, style in (("pseudo", ":"), ("refined", "--")):
                ax.axhline(r0[src][metric], color="k", ls=style, lw=1, label=f"{src} labels")
            ax.set_xticks(range(len(gs)), [f"EXP {g['row']}" for g in gs])
            lo = min(min(min(g[metric]) for g in gs), r0["pseudo"][metric], r0["refined"][metric])
            ax.set_ylim(max(0.0, lo - 3), None)
            ax.set(ylabel=f"val mIoU %, {metric} points", title=f"{setting}: {metric} points ({steps} steps)")
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_attention(groups: list[dict[str, Any]], path: Path) -> Path | None:
    """The attention probe per row and variant: mass on same-label points against uniform attention."""
    plt = _pyplot()
    gs = [g for g in groups if any(r.get("attention") for r in g["runs"])]
    if plt is None or not gs:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(max(10.0, 1.5 * len(gs)), 4.8))
    x = np.arange(len(gs))
    labels = [f"{'sys 0.3' if 'systematic' in g['setting'] else 'per-view'} EXP {g['row']}\n"
              f"{g['variant'].removeprefix('cosine').strip().replace('transformer_', 't_') or 'default'} ({g['steps']})" for g in gs]
    panels = ((("same_label", "attention mass on same-label points"), ("chance", "uniform attention (chance)")),
              (("acc_net", "network's features"), ("acc_transformer", "last transformer's outputs (the feedback target)")))
    titles = ("intra-scene attention probe (first block, val rooms)", "class accuracy on the sampled val points")
    for ax, (a, b), title in zip(axes, panels, titles):
        for off, (key, label) in ((-0.2, a), (0.2, b)):
            ax.bar(x + off, [100 * np.mean([r["attention"].get(key, np.nan) for r in g["runs"]]) for g in gs], 0.4,
                   label=label)
        ax.set_xticks(x, labels, fontsize=6, rotation=35, ha="right")
        ax.set(ylabel="%", title=title)
        ax.legend(fontsize=7)
    axes[1].set_ylim(50, None)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no figures (pip install matplotlib)")
        return None
    return plt


if __name__ == "__main__":
    main()
