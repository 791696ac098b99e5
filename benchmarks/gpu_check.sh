#!/usr/bin/env bash
# One prepared GPU check: environment, CPU<->CUDA equivalence, speed benchmarks, and the learning
# benchmark (Table 2's five rows, like for like, two noise settings). learning.py prepares its stores
# under WORK when they are missing; without open3d (the lent GPU machine) the synthetic views are ray
# cast by hiclr's torch ray caster. Stores prepared elsewhere take 978 MB (32 + 8 rooms), more than a
# device-tool call can carry (64 MiB), so let the GPU machine prepare them.
# Needs only torch + numpy + the repo on PYTHONPATH (open_clip for the MaskCLIP benchmark).
# Usage: benchmarks/gpu_check.sh WORK [EPOCHS]
set -uo pipefail
WORK=${1:?usage: gpu_check.sh WORK [EPOCHS]}
EPOCHS=${2:-40}
OUT=${OUT:-gpu_out}

mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 PYTHONPATH=$PWD:${PYTHONPATH:-}
H="python3 -m hiclr_cli.main"
step() { printf '\n== %s (%s)\n' "$*" "$(date +%T)"; }

step env; $H env
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
step "cpu vs cuda"; python3 benchmarks/gpu_equivalence.py
step "backbone speed (MinkUNet14A, 150k points, 5 cm)"
BB=torch  # torchsparse (2.1.0 built by benchmarks/gpu_throughput.sh with TS=1) when it imports here
python3 -c "import torchsparse" 2>/dev/null && BB=torch,torchsparse
python3 benchmarks/bench_backbone.py --device cuda --repeats 3 --backends "$BB"
step "MaskCLIP speed (ViT-B-16, random weights)"
python3 benchmarks/bench_maskclip.py --device cuda --frames 16 --batch 8 --repeats 2 --sizes 480x640,240x320 --precisions fp32,fp16
step "learning benchmark: Table 2 rows like for like, 5 cm voxels, 32 rooms, two noise settings"
python3 benchmarks/learning.py --work "$WORK" --device cuda --rooms 32 --val-rooms 8 \
  --set train.voxel_size=0.05 --set train.samples=1024 --set train.epochs="$EPOCHS" --set train.val_every=5
