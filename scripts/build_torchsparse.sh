#!/usr/bin/env bash
# Build torchsparse from the vendored upstream source and install it into a Python environment.
#
#   usage: bash scripts/build_torchsparse.sh VENV_DIR          (torchsparse 1.4.0, CPU here)
#          TS_VERSION=2.1.0 FORCE_CUDA=1 bash scripts/build_torchsparse.sh PREFIX   (GPU machines)
#
# torchsparse is not on the package index. Its unmodified upstream trees are vendored in the shared
# folder next to the clone (../shared/vendor/torchsparse-<version>.tar.gz, else shared/vendor inside
# the clone; override the folder with HICLR_VENDOR_DIR), with what was measured building them in
# ../shared/vendor/README.md. The recipe:
#   apt-get install -y libsparsehash-dev        (system prerequisite: google/dense_hash_map; checked here)
#   pip install ninja wheel
#   MAX_JOBS=2 pip wheel --no-deps --no-build-isolation .     (in the unpacked tree)
# 1.4.0: ~4 min on 2 idle cores (7.6 min measured beside a training job); without a usable GPU its
# setup.py builds the CPU extension, which runs convolutions forward on CPU (coordinates
# [x, y, z, batch]); its CPU backward raises NotImplementedError.
# 2.1.0: imports only where an NVIDIA driver is present and convolves only in its CUDA build: build it
# on a GPU machine with FORCE_CUDA=1 (nvcc needed). It also needs rootpath and
# backports.cached_property at import; they are installed here with hiclr's constraints (offline: put
# their wheels in a folder and set PIP_FIND_LINKS=folder PIP_NO_INDEX=1).
# VENV_DIR is a venv or any Python prefix (its bin/python or bin/python3 is used).
# The built wheel is kept in wheels/ts-<version>-<cpu|cuda>-<python tag>-torch<version>/ (gitignored;
# override the folder with HICLR_WHEELS_DIR), so a second run only reinstalls it (seconds). It is
# installed with --no-deps and hiclr's constraints: torch is never touched.
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: bash scripts/build_torchsparse.sh VENV_DIR" >&2
    exit 2
fi
VENV_DIR=$1
if [[ -d "$VENV_DIR" ]]; then
    VENV_DIR="$(cd "$VENV_DIR" && pwd)"  # absolute: the build runs in another directory
fi
PY="$VENV_DIR/bin/python"
[[ ! -x "$PY" && -x "$VENV_DIR/bin/python3" ]] && PY="$VENV_DIR/bin/python3"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CONSTRAINTS="$ROOT/requirements/constraints.txt"
TS_VERSION=${TS_VERSION:-1.4.0}
case "$TS_VERSION" in  # the sha256 listed in shared/vendor/README.md
    1.4.0) TS_SHA256=556c81ea185eeebc7da6cf6fac092f5ab2dcc4eb77baac24b920f2de263b56e3 ;;
    2.1.0) TS_SHA256=5aab234fe1d5c12c6f5fa2220bdde37e1deebd7827802c7fa22044a1d74cc959 ;;
    *) echo "error: TS_VERSION must be 1.4.0 or 2.1.0 (the vendored trees), not $TS_VERSION" >&2; exit 2 ;;
esac
if [[ -n "${HICLR_VENDOR_DIR:-}" ]]; then
    VENDOR_DIR=$HICLR_VENDOR_DIR
elif [[ -d "$ROOT/../shared/vendor" || ! -d "$ROOT/shared/vendor" ]]; then
    VENDOR_DIR="$ROOT/../shared/vendor"
else
    VENDOR_DIR="$ROOT/shared/vendor"  # a device machine carries shared/ inside the clone
fi
TARBALL="$VENDOR_DIR/torchsparse-$TS_VERSION.tar.gz"

if [[ ! -x "$PY" ]]; then
    echo "error: no Python at $PY; create the venv first (python -m venv $VENV_DIR)" >&2
    exit 1
fi

IMPORT_CHECK='import torchsparse, torchsparse.backend
assert torchsparse.__version__ == "'$TS_VERSION'", torchsparse.__version__'

if "$PY" -c "$IMPORT_CHECK" 2>/dev/null; then
    echo "torchsparse $TS_VERSION is already installed in $VENV_DIR"
    exit 0
fi
if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "error: torch is not installed in $VENV_DIR; install hiclr's dependencies first" >&2
    exit 1
fi
PIP_C=()
[[ -f "$CONSTRAINTS" ]] && PIP_C=(-c "$CONSTRAINTS")
if [[ "$TS_VERSION" == 2.* ]]; then  # imported by torchsparse 2.x, not by hiclr
    "$PY" -m pip install -q "${PIP_C[@]}" rootpath backports.cached_property
fi

PYTAG=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
TORCH_VERSION=$("$PY" -c 'import torch; print(torch.__version__.replace("+", "_"))')
# the same choice as torchsparse's setup.py: CUDA when torch sees a GPU and CUDA_HOME is set, or FORCE_CUDA=1
DEVICE=$("$PY" -c 'import os, torch
from torch.utils.cpp_extension import CUDA_HOME
cuda = (torch.cuda.is_available() and CUDA_HOME is not None) or os.getenv("FORCE_CUDA", "0") == "1"
print("cuda" if cuda else "cpu")' 2>/dev/null)
WHEEL_DIR="${HICLR_WHEELS_DIR:-$ROOT/wheels}/ts-$TS_VERSION-$DEVICE-$PYTAG-torch$TORCH_VERSION"

shopt -s nullglob
wheels=("$WHEEL_DIR"/torchsparse-"$TS_VERSION"-*.whl)
if [[ ${#wheels[@]} -eq 0 ]]; then
    # Prerequisites of a build (a cached wheel needs none of them).
    if [[ ! -f "$TARBALL" ]]; then
        echo "error: vendored torchsparse source not found: $TARBALL (expected in the shared folder ../shared next to the clone; or set HICLR_VENDOR_DIR)" >&2
        exit 1
    fi
    if ! echo "$TS_SHA256  $TARBALL" | sha256sum -c --status -; then
        echo "error: $TARBALL does not have the sha256 listed in $VENDOR_DIR/README.md ($TS_SHA256)" >&2
        exit 1
    fi
    if ! { dpkg -s libsparsehash-dev >/dev/null 2>&1 || [[ -e /usr/include/google/dense_hash_map ]]; }; then
        echo "error: libsparsehash-dev is not installed (torchsparse includes google/dense_hash_map); fix: sudo apt-get install -y libsparsehash-dev" >&2
        exit 1
    fi
    echo "libsparsehash-dev: found"
    if ! command -v g++ >/dev/null 2>&1; then
        echo "error: no C++ compiler; fix: sudo apt-get install -y build-essential" >&2
        exit 1
    fi
    if [[ "$DEVICE" == cuda ]] && ! command -v nvcc >/dev/null 2>&1; then
        echo "error: a CUDA build was asked for (FORCE_CUDA=1 or a visible GPU) but nvcc is not on PATH" >&2
        exit 1
    fi
    "$PY" -m pip install -q "${PIP_C[@]}" ninja wheel

    SRC=$(mktemp -d "${TMPDIR:-/tmp}/torchsparse-build.XXXXXX")
    trap 'rm -rf "$SRC"' EXIT
    tar xzf "$TARBALL" -C "$SRC"
    mkdir -p "$WHEEL_DIR"
    echo "building torchsparse $TS_VERSION ($DEVICE) from $TARBALL into $WHEEL_DIR; this takes about 4-8 minutes on 2 cores"
    start=$(date +%s)
    (cd "$SRC/torchsparse-$TS_VERSION" && MAX_JOBS="${MAX_JOBS:-2}" "$PY" -m pip wheel -q --no-deps \
        --no-build-isolation -w "$WHEEL_DIR" .)
    echo "built in $(( $(date +%s) - start )) s"
    wheels=("$WHEEL_DIR"/torchsparse-"$TS_VERSION"-*.whl)
    if [[ ${#wheels[@]} -eq 0 ]]; then
        echo "error: the build finished but left no wheel in $WHEEL_DIR" >&2
        exit 1
    fi
else
    echo "reusing the cached wheel ${wheels[0]}"
fi

"$PY" -m pip install -q "${PIP_C[@]}" --no-deps --force-reinstall "${wheels[0]}"
"$PY" -c "$IMPORT_CHECK"
echo "torchsparse $TS_VERSION installed in $VENV_DIR"
