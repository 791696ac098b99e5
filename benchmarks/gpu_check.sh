#!/usr/bin/env bash
# One prepared GPU check: environment, CPU<->CUDA equivalence, speed benchmarks, and Table 2's five
# rows trained on a prepared synthetic store (oracle labels). Needs only torch + numpy + the repo on
# PYTHONPATH (open_clip for the MaskCLIP benchmark). Usage: benchmarks/gpu_check.sh STORE [EPOCHS]
set -uo pipefail
DATA=${1:?usage: gpu_check.sh STORE [EPOCHS]}
EPOCHS=${2:-40}
OUT=${OUT:-gpu_out}
RUNS=${RUNS:-/tmp/hiclr_gpu_runs}
mkdir -p "$OUT" "$RUNS"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 PYTHONPATH=$PWD:${PYTHONPATH:-}
H="python3 -m hiclr_cli.main"
step() { printf '\n== %s (%s)\n' "$*" "$(date +%T)"; }

step env; $H env
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
step "cpu vs cuda"; python3 benchmarks/gpu_equivalence.py
step "backbone speed (MinkUNet14A, 150k points, 5 cm)"
python3 benchmarks/bench_backbone.py --device cuda --repeats 3 --backends torch
step "MaskCLIP speed (ViT-B-16, random weights)"
python3 benchmarks/bench_maskclip.py --device cuda --frames 16 --batch 8 --repeats 2 --sizes 480x640,240x320 --precisions fp32,fp16
step "Table 2 rows, $EPOCHS epochs, 5 cm voxels"
for row in I II III IV V; do
  step "EXP $row"
  $H train --data "$DATA" --out "$RUNS/$row" --recipe recipes/synthetic.yaml --stages "$row" --device cuda \
    --set train.voxel_size=0.05 --set train.epochs="$EPOCHS" --set train.samples=1024 \
    --set train.correlation_from=$((EPOCHS / 4 + 1)) --set train.kl_from=$((EPOCHS / 2 + 1)) \
    --set train.val_every="$EPOCHS" --set train.batch_size=2 | tail -n 4
  $H distill "$RUNS/$row" --recipe recipes/synthetic.yaml --export "$RUNS/$row/model.pt" | tail -n 1
  $H evaluate "$DATA" --model "$RUNS/$row/model.pt" --split val --device cuda --out "$OUT/metrics-$row.json" 2>/dev/null | grep '^mIoU'
done
step "pseudo and refined labels, same split"
$H evaluate "$DATA" --labels pseudo --split val --out "$OUT/metrics-pseudo.json" 2>/dev/null | grep '^mIoU'
$H evaluate "$DATA" --labels refined --split val --out "$OUT/metrics-refined.json" 2>/dev/null | grep '^mIoU'
