#!/usr/bin/env bash
# The whole check: set-up, format, lint, types, then every test (unit and real-process
# integration). This is what README.md names and what .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff format --check"; .venv/bin/ruff format --check .
echo "== ruff check"; .venv/bin/ruff check .
echo "== pyright"; .venv/bin/pyright
echo "== pytest"; .venv/bin/python -m pytest "$@"
