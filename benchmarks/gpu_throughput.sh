#!/usr/bin/env bash
# One prepared GPU check for training throughput (issue 13): spconv install from carried wheels,
# spconv-vs-torch and bf16-vs-fp32 equivalence on CUDA, the backbone per backend and precision, and
# the torch backend's variants (profile_torch_conv.py), and the whole training step per backend and precision.
# Needs torch + numpy + the repo on PYTHONPATH.
#
#   benchmarks/gpu_throughput.sh            (OUT=dir for the JSON results; default gpu_out)
#
# spconv on a machine without network: put the wheels in ./wheels (git-ignored), e.g. on a machine
# with PyPI: pip download spconv-cu126==2.3.8 'cumm-cu126<0.8' pccm ccimport pybind11 fire -d wheels
# (drop numpy and friends the GPU machine has). spconv's wheel is 67 MiB, more than one 64 MiB carry:
# split it (W=$(ls wheels/spconv_cu126-*.whl); split -b 40M "$W" "$W.part-"; rm "$W") and carry the parts in two
# calls to the same warm machine; this script joins wheels/*.whl.part-* back before installing.
set -uo pipefail
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 PYTHONPATH=$PWD:${PYTHONPATH:-}
step() { printf '\n== %s (%s)\n' "$*" "$(date +%T)"; }

step env
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
if ! python3 -c "import spconv" 2>/dev/null && [ -d wheels ]; then
  step "install spconv from ./wheels"
  mkdir -p /tmp/wheels
  for first in wheels/*.whl.part-aa; do  # parts are named <wheel file name>.part-aa, -ab, ...
    [ -e "$first" ] || continue
    whl=${first%.part-aa}
    cat "$whl".part-* > "/tmp/wheels/$(basename "$whl")"
  done
  python3 -m pip install -q --no-index --find-links wheels --find-links /tmp/wheels spconv-cu126 || echo "spconv install failed"
fi
python3 -c "import spconv; print('spconv', spconv.__version__)" 2>/dev/null || echo "spconv: not installed"

step "equivalence on CUDA: spconv vs torch (fp32, fp64), bf16 vs fp32"
python3 benchmarks/spconv_equivalence.py
step "autocast tests of the torch backend (CPU bf16) and the dense-conv equivalence"
python3 -m pytest -q tests/nn/test_amp.py tests/nn/test_conv_dense.py tests/nn/test_torch_algorithms.py 2>&1 | tail -n 3
step "the torch backend's profile and variants (before / offsets / table / table-all), fp32 and bf16"
python3 benchmarks/profile_torch_conv.py --device cuda --repeats 5 --precisions fp32,bf16 --json "$OUT/profile_torch_conv.json"
BACKENDS=torch:before,torch,torch:table; python3 -c "import spconv" 2>/dev/null && BACKENDS=torch:before,torch,torch:table,spconv
BB=torch; python3 -c "import spconv" 2>/dev/null && BB=torch,spconv
step "backbone forward+backward (MinkUNet14A, 150k points, 5 cm), $BB"
python3 benchmarks/bench_backbone.py --device cuda --repeats 5 --backends "$BB" --precisions fp32,bf16
step "whole training step, batch 8, $BACKENDS x fp32,bf16"
python3 benchmarks/train_throughput.py --device cuda --backends "$BACKENDS" --precisions fp32,bf16 \
  --batch-size 8 --steps 10 --warmup 3 --workers 4 --json "$OUT/train_throughput.json"
