#!/usr/bin/env bash
# One prepared GPU check for training throughput (issue 13): spconv install from carried wheels,
# spconv-vs-torch and bf16-vs-fp32 equivalence on CUDA, the backbone per backend and precision, and
# the torch backend's variants (profile_torch_conv.py), and the whole training step per backend and precision.
# Needs torch + numpy + the repo on PYTHONPATH.
#
#   benchmarks/gpu_throughput.sh            (OUT=dir for the JSON results; default gpu_out)
#   DEVICE=cpu SMALL=1 benchmarks/gpu_throughput.sh   rehearsal on a machine without a GPU (~3 min on
#                                           2 cores): every step at a tiny size, so the one GPU shot
#                                           does not die on a typo
#
# Every step runs even when one before it failed; the script ends with the list of failed steps and
# exits 1 when there is any (spconv not installed is reported, not counted as a failure). Its time on a
# GPU has not been measured: the whole-step part runs up to 12 configurations and writes
# $OUT/train_throughput.json after each one, so a call killed at the device tool's 600 s keeps them.
#
# spconv on a machine without network: put the wheels in ./wheels (git-ignored), e.g. on a machine
# with PyPI: pip download spconv-cu126==2.3.8 'cumm-cu126<0.8' pccm ccimport pybind11 fire -d wheels
# (drop numpy and friends the GPU machine has). spconv's wheel is 67 MiB, more than one 64 MiB carry:
# split it (W=$(ls wheels/spconv_cu126-*.whl); split -b 40M "$W" "$W.part-"; rm "$W") and carry the parts in two
# calls to the same warm machine; this script joins wheels/*.whl.part-* back before installing.
#
# torchsparse (issue 24): with TS=1 (the default where nvcc exists or torchsparse imports) the script
# builds torchsparse 2.1.0 from the vendored tree with FORCE_CUDA=1 (scripts/build_torchsparse.sh;
# shared/vendor or ../shared/vendor; the wheel is cached in wheels/ and copied to $OUT, so a later call
# can carry it instead of rebuilding), then runs its dense-convolution and model equivalence tests on
# the GPU, gradients included (tests/nn/test_conv_dense.py, tests/nn/test_backend_models.py), and times
# its backbone beside torch. Offline, its build and import needs come from ./wheels: on a machine with
# PyPI, pip download ninja wheel rootpath backports.cached_property -d wheels. Its CUDA build time has not
# been measured (16 cores): TS_ONLY=1 runs only the environment and the torchsparse steps, as a call of
# its own. DEVICE=cpu SMALL=1 rehearses the torchsparse steps against the 1.4.0 CPU build (forward only).
set -uo pipefail
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 PYTHONPATH=$PWD:${PYTHONPATH:-}
DEVICE=${DEVICE:-cuda}
SMALL=${SMALL:-0}
FAILED=()
step() { STEP="$*"; printf '\n== %s (%s)\n' "$*" "$(date +%T)"; }
check() { "$@" || { echo "FAILED (rc $?): $*"; FAILED+=("$STEP"); }; }
if [ "$SMALL" = 1 ]; then  # sizes of the rehearsal
  PROF="--points 8000 --repeats 1"; BBK="--points 8000 --repeats 1"; EQ="--points 8000"
  TT="--scenes 2 --points 6000 --views 4 --samples 256 --batch-size 2 --steps 1 --warmup 1 --workers 1"
else
  PROF="--repeats 5"; BBK="--repeats 5"; EQ=""
  TT="--batch-size 8 --steps 6 --warmup 2 --workers 4"  # 12 configurations in one 600 s device call
fi

step env
if [ "$DEVICE" = cuda ]; then check nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; fi
check python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
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

TS=${TS:-$( { command -v nvcc >/dev/null || python3 -c "import torchsparse" 2>/dev/null; } && echo 1 || echo 0)}
if [ "$TS" = 1 ]; then
  if [ "$DEVICE" = cuda ]; then
    step "torchsparse 2.1.0 from the vendored source (FORCE_CUDA=1, MAX_JOBS=$(nproc))"
    TS_PIP=(); [ -d wheels ] && TS_PIP=(PIP_FIND_LINKS="$PWD/wheels")
    check env "${TS_PIP[@]}" TS_VERSION=2.1.0 FORCE_CUDA=1 MAX_JOBS="$(nproc)" \
      bash scripts/build_torchsparse.sh "$(python3 -c 'import sys; print(sys.prefix)')"
    for whl in wheels/ts-2.1.0-cuda-*/torchsparse-*.whl; do [ -e "$whl" ] && cp "$whl" "$OUT/"; done
  fi
  python3 -c "import torchsparse; print('torchsparse', torchsparse.__version__)" || echo "torchsparse: does not import"
  step "torchsparse on $DEVICE: dense-conv and MinkUNet14A/SPVCNN equivalence to the torch backend (gradients on CUDA)"
  check bash -c 'python3 -m pytest -q -rs -p no:cacheprovider -m backend -k torchsparse "$@" > "$0" 2>&1; rc=$?; tail -n 12 "$0"; exit $rc' \
    "$OUT/pytest_torchsparse.log" tests/nn/test_conv_dense.py tests/nn/test_backend_models.py
  step "backbone (MinkUNet14A, 5 cm), torch and torchsparse"
  check python3 benchmarks/bench_backbone.py --device "$DEVICE" $BBK --backends torch,torchsparse \
    --json "$OUT/bench_backbone_torchsparse.json"
  if [ "${TS_ONLY:-0}" = 1 ]; then
    step done
    if [ ${#FAILED[@]} -gt 0 ]; then printf 'failed steps:\n'; printf '  %s\n' "${FAILED[@]}"; exit 1; fi
    echo "all steps passed"; exit 0
  fi
fi

step "equivalence on $DEVICE: spconv vs torch (fp32, fp64), bf16 vs fp32"
python3 benchmarks/spconv_equivalence.py --device "$DEVICE" $EQ
rc=$?; [ $rc = 0 ] || [ $rc = 2 ] || { echo "FAILED (rc $rc)"; FAILED+=("$STEP"); }
step "autocast tests of the torch backend (CPU bf16) and the dense-conv equivalence"
check bash -c 'python3 -m pytest -q -p no:cacheprovider "$@" > "$0" 2>&1; rc=$?; tail -n 3 "$0"; exit $rc' \
  "$OUT/pytest_nn.log" tests/nn/test_amp.py tests/nn/test_conv_dense.py tests/nn/test_torch_algorithms.py
step "the torch backend's profile and variants (before / offsets / fused / fused-big / grouped / table / table-all), fp32 and bf16"
check python3 benchmarks/profile_torch_conv.py --device "$DEVICE" $PROF --precisions fp32,bf16 --json "$OUT/profile_torch_conv.json"
BACKENDS=torch:before,torch,torch:fused,torch:grouped,torch:table; [ "$DEVICE" = cuda ] && python3 -c "import spconv" 2>/dev/null && BACKENDS=$BACKENDS,spconv
BB=torch; [ "$DEVICE" = cuda ] && python3 -c "import spconv" 2>/dev/null && BB=torch,spconv
step "backbone forward+backward (MinkUNet14A, 5 cm; 150k points unless SMALL), $BB"
check python3 benchmarks/bench_backbone.py --device "$DEVICE" $BBK --backends "$BB" --precisions fp32,bf16
step "whole training step ($TT), $BACKENDS x fp32,bf16"
check python3 benchmarks/train_throughput.py --device "$DEVICE" --backends "$BACKENDS" --precisions fp32,bf16 \
  $TT --json "$OUT/train_throughput.json"

step done
if [ ${#FAILED[@]} -gt 0 ]; then
  printf 'failed steps:\n'; printf '  %s\n' "${FAILED[@]}"; exit 1
fi
echo "all steps passed"
