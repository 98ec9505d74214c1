#!/usr/bin/env bash
# Create .venv (if missing) and install the package with everything the tests and the demo use.
# Usage: bash scripts/install.sh [extras]   (default extras: train,export,test)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-train,export,test}"
py="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$py" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# the CPU build of PyTorch first, so that nothing pulls a multi-GB CUDA build
.venv/bin/python -m pip show torch >/dev/null 2>&1 || .venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[${extras}]"
# TensorRT 10 C++ headers (to compile the GaussPSF plugin); the wheel's own dependencies are not needed
case ",${extras}," in
  *,test,*|*,export,*) .venv/bin/python -m pip install -q --no-deps "kernel-lens==2.0.1" || echo "warning: kernel-lens (TensorRT headers) not installed; plugin tests will skip" >&2 ;;
esac
echo "installed into $(pwd)/.venv"
