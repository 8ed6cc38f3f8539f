#!/usr/bin/env bash
# One prepared run for a GPU machine (issue 14): the device tests, then a few steps of every
# built-in case, DCDM and every benchmark row on DEVICE, and a table of what ran, how long it
# took and what it measured. Must finish in under 8 minutes on one H100/H200.
#
#   bash scripts/gpu_check.sh                 # on a CUDA machine
#   bash scripts/gpu_check.sh --device cpu    # a dry run of the same script on a CPU machine
#   bash scripts/gpu_check.sh --device cuda --only operators   # the checks whose names hold "operators"
#
# On the device tool's machine (its own PyTorch, no network) it runs under that python3 and takes
# the other dependencies from wheels in .whl/: fetch them here with `pip download --no-deps
# --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 -d .whl NAME==VERSION`
# for deepxde, meshio, scikit-optimize, pyaml, pyamg, conflictfree and, for the operator benchmark,
# neuraloperator, tensorly, tensorly-torch, configmypy, ruamel.yaml, zencfg and pydantic (with
# pydantic-core, annotated-types, typing-inspection), and carry .whl.
#
# Logs and the table go to $OUT (the device tool's folder) or runs/gpu-check.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
PY=.venv/bin/python
if [ ! -x "$PY" ] && python3 -c "import torch" 2>/dev/null; then
    # A machine with its own PyTorch and no network (the device tool's image): use its python3,
    # with pdeml from this checkout and the other dependencies from wheels carried in .whl/.
    PY=python3
    if ls .whl/*.whl >/dev/null 2>&1; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit
        export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
    else
        export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    fi
fi
[ -x "$PY" ] || command -v "$PY" >/dev/null || { bash scripts/install.sh >/dev/null; PY=.venv/bin/python; }
# Under the device tool only the table and one log come back from $OUT: the run folders go to /tmp.
exec "$PY" scripts/gpu_check.py --out "${OUT:-runs/gpu-check}" ${OUT:+--runs /tmp/gpu-check-runs} "$@"
