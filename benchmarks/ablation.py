"""Table 2 of the paper (EXP I–V) on synthetic rooms with the oracle labeler, on CPU.

    python benchmarks/ablation.py [--work DIR] [--recipe recipes/synthetic.yaml] [--epochs N] [--set train.k=v]

Builds (or reuses) a synthetic store with the recipe's prepare → pseudolabel (oracle, view-
inconsistent noise) → oversegment → refine, then trains one run per row with fixed seeds, exports
the last checkpoint and scores it on the val split with the evaluator. Prints one row per
experiment: stages, val mIoU of the trained model, and the pseudo/refined label mIoU for reference.
The paper's ordering (I < II < III < IV < V) is what it reports on ScanNet; a few synthetic rooms
on a CPU are a smoke-scale check, not a reproduction: read the numbers, not the ranks, and rerun
with several seeds before believing a difference of a point or two.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def sh(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "hiclr_cli.main", *args], check=True)


def prepare(work: Path, recipe: str, overrides: list[str]) -> Path:
    """The store: each pipeline step with the recipe and the ``--set`` values of its own section."""
    def sets(section: str) -> list[str]:
        return [a for o in overrides if o.startswith(section + ".") for a in ("--set", o)]

    data = work / "store"
    if not (data / "dataset.yaml").is_file():
        sh("prepare", "synthetic", "--out", str(data), "--recipe", recipe, *sets("synthetic"))
    sh("pseudolabel", str(data), "--recipe", recipe, *sets("pseudolabel"))
    sh("oversegment", str(data), "--recipe", recipe, *sets("oversegment"))
    sh("refine", str(data), "--recipe", recipe, *sets("refine"))
    return data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="benchmarks/_ablation", help="Working folder (store and runs).")
    ap.add_argument("--recipe", default="recipes/synthetic.yaml")
    ap.add_argument("--rows", default="I,II,III,IV,V")
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    help="SECTION.KEY=VALUE for synthetic, pseudolabel, oversegment, refine or train (repeatable)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import dataclasses

    from hiclr.config import load_section
    from hiclr.distill import export_model
    from hiclr.evaluate import evaluate_store
    from hiclr.predict import predict_store
    from hiclr.store import Store
    from hiclr.train.config import TABLE2, TrainConfig
    from hiclr.train.loop import train

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = prepare(work, args.recipe, args.overrides)
    store = Store.open(data)
    ref = {k: 100 * evaluate_store(store, labels=k, split="val", progress=False).scores["miou"] for k in ("pseudo", "refined")}
    base = load_section(TrainConfig, "train", args.recipe, [o for o in args.overrides if o.startswith("train.")])
    results = []
    for row in args.rows.split(","):
        cfg = dataclasses.replace(base, stages=TABLE2[row], seed=args.seed, val_split="")
        run = work / f"run-{row}-seed{args.seed}"
        t0 = time.time()
        if not (run / "ckpt" / "last.pt").is_file():
            train(data, run, cfg)
        else:  # finish an interrupted row
            train(data, run, cfg, resume=True)
        model, _, _ = export_model(run, run / "model.pt", "last")
        predict_store(store, model, split="val", device=cfg.device, overwrite=True)
        miou = 100 * evaluate_store(store, labels="pred", split="val", progress=False).scores["miou"]
        results.append({"exp": row, "stages": ",".join(cfg.stages) or "baseline", "miou": miou, "seconds": time.time() - t0})
        print(f"EXP {row:<4} {results[-1]['stages']:<42} mIoU {miou:6.2f}  ({results[-1]['seconds']:.0f} s)", flush=True)
    print(f"\nreference (val): pseudo-labels {ref['pseudo']:.2f}, refined {ref['refined']:.2f} mIoU; "
          f"{len(store.scene_ids('train'))} train / {len(store.scene_ids('val'))} val rooms, seed {args.seed}")
    print("EXP  IntraSet IntraScene InterScene FB   mIoU")
    for r in results:
        st = TABLE2[r["exp"]]
        marks = ["✓" if s in st else "-" for s in ("intraset", "intrascene", "interscene", "feedback")]
        print(f"{r['exp']:<4} {marks[0]:^8} {marks[1]:^10} {marks[2]:^10} {marks[3]:^4} {r['miou']:6.2f}")
    (work / f"ablation-seed{args.seed}.json").write_text(json.dumps({"reference": ref, "rows": results}, indent=1))


if __name__ == "__main__":
    main()
