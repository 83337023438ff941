#!/usr/bin/env bash
# Create .venv and install neurosculpt into it (idempotent). Usage: scripts/setup.sh [extras]
# torch is pinned to the CPU build that lies on this kind of machine's disk; elsewhere any
# torch >= 2.1 works (pyproject.toml), install it first to choose your build.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-sklearn,progress}"
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install -q "torch==${NEUROSCULPT_TORCH:-2.13.0}"
fi
.venv/bin/python -m pip install -q -e ".[${extras}]"
