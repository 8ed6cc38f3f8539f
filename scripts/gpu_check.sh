#!/usr/bin/env bash
# One prepared run for a GPU machine (issue 14): the device tests, then a few steps of every
# built-in case, DCDM and every benchmark row on DEVICE, and a table of what ran, how long it
# took and what it measured. Must finish in under 8 minutes on one H100/H200.
#
#   bash scripts/gpu_check.sh                 # on a CUDA machine
#   bash scripts/gpu_check.sh --device cpu    # a dry run of the same script on a CPU machine
#
# Logs and the table go to $OUT (the device tool's folder) or runs/gpu-check.
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=cuda
[ "${1:-}" = "--device" ] && DEVICE=${2:?--device needs a value}
[ -x .venv/bin/python ] || bash scripts/install.sh >/dev/null
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
exec .venv/bin/python scripts/gpu_check.py --device "$DEVICE" --out "${OUT:-runs/gpu-check}"
