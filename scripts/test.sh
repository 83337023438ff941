#!/usr/bin/env bash
# The test suite, from a clean state: installs what the tests need, then runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# Fashion-MNIST from Debian, when we may install packages (CI runs as root).
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
    || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1)) \
    || echo "note: dataset-fashion-mnist not installed; tests that need it are skipped"
fi
# Chromium from Debian for the report's browser test (tests/test_report.py).
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get install -y -q chromium >/dev/null 2>&1 \
    || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) \
    || echo "note: chromium not installed; the report's browser test fails under CI"
fi
scripts/setup.sh test
.venv/bin/python -m ruff check src tests bench
exec .venv/bin/python -m pytest -q "$@"
