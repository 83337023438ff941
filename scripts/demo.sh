#!/usr/bin/env bash
# The main job: a default continual-learning experiment on data present after install
# (scikit-learn's bundled digits), printing the results table. Extra arguments go to
# `neurosculpt run`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh sklearn,progress
exec .venv/bin/neurosculpt run --benchmark split-digits --strategy ewc --model snn-mlp \
  --epochs 3 --out runs/demo "$@"
