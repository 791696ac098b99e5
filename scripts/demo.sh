#!/usr/bin/env bash
# The main job on the embedded default: the whole hiclr chain on procedural synthetic rooms.
# Usage: scripts/demo.sh HICLR_EXE OUT_DIR
set -euo pipefail
HICLR=${1:-hiclr}
OUT=${2:-demo}
RECIPE=recipes/synthetic.yaml
export HF_HUB_OFFLINE=1

echo "== prepare: synthetic rooms -> $OUT/data"
"$HICLR" prepare synthetic --recipe "$RECIPE" --out "$OUT/data" --workers 2
