#!/usr/bin/env bash
# The checks of a maintained library, as .ci/run runs them (`make lint`): ruff (lint and format),
# import-linter (the layers of docs/architecture.md) and mypy (types of the core). Exits non-zero
# on any violation.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$(cd "${PDEML_VENV:-.venv}" && pwd)  # absolute: the checks below run from other folders
root=$PWD
# The import tree as it installs (pdeml.solvers is solvers/, ...; pyproject.toml's package-dir),
# made of links so that every report names the real file. Static tools walk pdeml/ and would not
# see the folders mapped into it.
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir "$stage/pdeml"
for f in pdeml/*; do ln -s "$root/$f" "$stage/pdeml/"; done
for d in solvers operators samplers cases; do ln -s "$root/$d" "$stage/pdeml/$d"; done

echo "[lint] ruff check"
"$VENV/bin/ruff" check .
echo "[lint] ruff format --check"
"$VENV/bin/ruff" format --check .
echo "[lint] import-linter"
(cd "$stage" && PYTHONPATH="$stage" "$VENV/bin/lint-imports" --no-cache "$root/pyproject.toml")
echo "[lint] mypy (the core)"
(cd "$root" && MYPYPATH="$stage" "$VENV/bin/mypy" --config-file pyproject.toml)
