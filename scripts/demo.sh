#!/usr/bin/env bash
# The main job on the embedded default: the whole hiclr chain on procedural synthetic rooms,
# labelled by the synthetic oracle (no CLIP weights needed), on CPU in a few minutes.
# Usage: scripts/demo.sh HICLR_EXE OUT_DIR
set -euo pipefail
HICLR=${1:-hiclr}
OUT=${2:-demo}
RECIPE=recipes/synthetic.yaml
DATA="$OUT/data"
RUN="$OUT/run"
export HF_HUB_OFFLINE=1

step() { printf '\n== %s\n' "$*"; }

step "prepare: synthetic rooms -> $DATA"
"$HICLR" prepare synthetic --recipe "$RECIPE" --out "$DATA" --workers 2
step "pseudolabel: oracle labeler (noisy ground truth per view), points <-> pixels with the depth test"
"$HICLR" pseudolabel "$DATA" --recipe "$RECIPE"
step "oversegment: geometric consistency sets"
"$HICLR" oversegment "$DATA" --recipe "$RECIPE" --workers 2
step "refine: intra-set vote per (segment, view)"
"$HICLR" refine "$DATA" --recipe "$RECIPE"
step "train: intraset + intrascene + interscene + feedback"
"$HICLR" train --data "$DATA" --out "$RUN" --recipe "$RECIPE"
step "distill: export the 3D-only model"
"$HICLR" distill "$RUN" --recipe "$RECIPE" --export "$RUN/model.pt"
step "evaluate (val split): segment quality, then every label source on the same points"
"$HICLR" evaluate "$DATA" --labels refined --split val --segments --out "$OUT/metrics-refined.json" > "$OUT/eval-refined.txt"
grep '^segments' "$OUT/eval-refined.txt" || true
"$HICLR" evaluate "$DATA" --compare pseudo,refined,model --model "$RUN/model.pt" --split val \
  --out "$OUT/metrics-compare.json" > "$OUT/eval-compare.txt"
step "predict: label a PLY written by another tool"
SCENE=$(ls "$DATA/scenes" | head -n 1)
"$(dirname "$HICLR")/python" scripts/scene_to_ply.py "$DATA" "$SCENE" "$OUT/$SCENE.ply"
"$HICLR" predict "$OUT/$SCENE.ply" --model "$RUN/model.pt" --out "$OUT/predict"
step "summary: val mIoU, like for like (all = every labelled point, unseen = miss; seen = points seen by a view)"
grep -v '^wrote' "$OUT/eval-compare.txt"
step "view: the interactive page of one val scene (one HTML file, opens offline in any browser)"
"$HICLR" view "$DATA" --out "$OUT/view.html"
