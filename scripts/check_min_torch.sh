#!/usr/bin/env bash
# The documented job for pyproject's torch lower bound: a separate venv with the oldest torch
# we claim (default 2.6.0), pdeml on top, and the tests that touch the torch APIs that set the
# bound (get_total_norm, fused Adam, torch.func, torch.compile's is_compiling, default-device
# handling). Needs to download that torch: on Linux x86-64 PyPI serves the CUDA build (several
# GB with its nvidia-* wheels); set PDEML_TORCH_INDEX to PyTorch's CPU wheel index to get the
# ~200 MB CPU build instead.
#
#   bash scripts/check_min_torch.sh [VERSION]
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=${1:-2.6.0}
export PDEML_VENV=.venv-torch-$VERSION PDEML_TORCH_VERSION=$VERSION
python3 -m venv "$PDEML_VENV"
"$PDEML_VENV/bin/python" -m pip install -q "torch==$VERSION" ${PDEML_TORCH_INDEX:+--index-url "$PDEML_TORCH_INDEX"}
bash scripts/install.sh
"$PDEML_VENV/bin/python" -m pytest -q -p no:cacheprovider tests/test_contract.py tests/test_training.py \
    tests/test_compile.py tests/test_gauss_newton.py tests/test_geometry.py tests/test_device.py
