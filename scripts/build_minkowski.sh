#!/usr/bin/env bash
# Build MinkowskiEngine 0.5.4 CPU-only (OpenBLAS) and install it into a Python virtual environment.
#
#   usage: bash scripts/build_minkowski.sh VENV_DIR
#
# The recipe is the one measured in ENVIRONMENT.md (about 4 min with MAX_JOBS=2, 2.5 GB peak RAM):
#   apt-get install -y libopenblas-dev          (system prerequisite, checked here, not installed)
#   pip install ninja wheel
#   MAX_JOBS=2 pip wheel --no-build-isolation --use-pep517 \
#       --config-settings="--global-option=--blas=openblas --cpu_only" minkowskiengine==0.5.4
# `--use-pep517` is needed, or pip ignores the settings and setup.py crashes in numpy.distutils.
# The built wheel is kept in wheels/me-0.5.4-<python tag>-torch<version>/ (gitignored; override the
# folder with HICLR_WHEELS_DIR), so a second run only reinstalls it (seconds).
# On Python >= 3.10, `import MinkowskiEngine` needs `collections.Sequence`; hiclr's adapter
# (hiclr/nn/sparse/backends/minkowski.py) sets that shim before importing it.
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: bash scripts/build_minkowski.sh VENV_DIR" >&2
    exit 2
fi
VENV_DIR=$1
PY="$VENV_DIR/bin/python"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CONSTRAINTS="$ROOT/requirements/constraints.txt"
ME_VERSION=0.5.4

if [[ ! -x "$PY" ]]; then
    echo "error: no Python at $PY; create the venv first (python -m venv $VENV_DIR)" >&2
    exit 1
fi

IMPORT_CHECK='import collections, collections.abc
collections.Sequence = collections.abc.Sequence
import MinkowskiEngine as ME
assert ME.__version__ == "'$ME_VERSION'", ME.__version__'

if "$PY" -c "$IMPORT_CHECK" 2>/dev/null; then
    echo "MinkowskiEngine $ME_VERSION is already installed in $VENV_DIR"
    exit 0
fi

# System prerequisite: OpenBLAS headers and library (the build links -lopenblas).
if ! { dpkg -s libopenblas-dev >/dev/null 2>&1 || [[ -e /usr/include/x86_64-linux-gnu/cblas.h ]] \
        || [[ -e /usr/include/openblas/cblas.h ]]; }; then
    echo "error: libopenblas-dev is not installed; MinkowskiEngine's CPU build needs it." >&2
    echo "       fix: sudo apt-get install -y libopenblas-dev   (then rerun this script)" >&2
    exit 1
fi
echo "libopenblas-dev: found"
if ! command -v g++ >/dev/null 2>&1; then
    echo "error: no C++ compiler; fix: sudo apt-get install -y build-essential" >&2
    exit 1
fi

PIP=("$PY" -m pip)
if [[ -f "$CONSTRAINTS" ]]; then
    PIP_C=(-c "$CONSTRAINTS")
else
    PIP_C=()
fi
if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "error: torch is not installed in $VENV_DIR; install hiclr's dependencies first" >&2
    exit 1
fi
"${PIP[@]}" install -q "${PIP_C[@]}" ninja wheel

PYTAG=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
TORCH_VERSION=$("$PY" -c 'import torch; print(torch.__version__.replace("+", "_"))')
WHEEL_DIR="${HICLR_WHEELS_DIR:-$ROOT/wheels}/me-$ME_VERSION-$PYTAG-torch$TORCH_VERSION"
mkdir -p "$WHEEL_DIR"

shopt -s nullglob
wheels=("$WHEEL_DIR"/[Mm]inkowski[Ee]ngine-"$ME_VERSION"-*.whl)
if [[ ${#wheels[@]} -eq 0 ]]; then
    echo "building MinkowskiEngine $ME_VERSION (CPU-only, OpenBLAS) into $WHEEL_DIR;" \
         "this takes about 4-10 minutes"
    # setup.py runs `rm -rf build` in its own unpacked source tree and `pip uninstall MinkowskiEngine`
    # in this venv as side effects; both are harmless here.
    MAX_JOBS="${MAX_JOBS:-2}" "${PIP[@]}" wheel --no-deps --no-build-isolation --use-pep517 \
        --config-settings="--global-option=--blas=openblas --cpu_only" \
        -w "$WHEEL_DIR" "minkowskiengine==$ME_VERSION"
    wheels=("$WHEEL_DIR"/[Mm]inkowski[Ee]ngine-"$ME_VERSION"-*.whl)
    if [[ ${#wheels[@]} -eq 0 ]]; then
        echo "error: the build finished but left no wheel in $WHEEL_DIR" >&2
        exit 1
    fi
else
    echo "reusing the cached wheel ${wheels[0]}"
fi

"${PIP[@]}" install -q --no-deps --force-reinstall "${wheels[0]}"
"$PY" -c "$IMPORT_CHECK"
echo "MinkowskiEngine $ME_VERSION installed in $VENV_DIR"
