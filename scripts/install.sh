#!/usr/bin/env bash
# Create .venv and install pdeml with its test and lint extras.
#
# PyTorch: on a machine without an NVIDIA GPU we install the CPU build first
# (torch==$PDEML_TORCH_VERSION, default 2.13.0), so that pdeml's `torch>=2.1` requirement is
# already met and pip never pulls the multi-GB CUDA build. Where plain `pip install torch==X`
# would give a CUDA build on such a machine, point PDEML_TORCH_INDEX at PyTorch's CPU wheel
# index. On a machine with a GPU (nvidia-smi works) torch is installed as usual (CUDA build).
# An already installed torch is kept either way.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${PDEML_VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip "$@"; }
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        echo "[install] GPU found: installing torch (CUDA build)"
        pip install -q "torch>=2.1"
    else
        echo "[install] no GPU: installing the CPU build torch==${PDEML_TORCH_VERSION:-2.13.0}"
        pip install -q "torch==${PDEML_TORCH_VERSION:-2.13.0}" ${PDEML_TORCH_INDEX:+--index-url "$PDEML_TORCH_INDEX"}
    fi
fi
pip install -q -e ".[test,lint]"
"$VENV/bin/python" -c "import torch, pdeml; print('[install] pdeml', pdeml.__version__, '| torch', torch.__version__, '| cuda', torch.cuda.is_available())"
