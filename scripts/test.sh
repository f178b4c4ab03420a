#!/usr/bin/env bash
# Quick start 2: install, then lint and run the whole test suite (PostgreSQL tests skip if no server).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/pytest -q "$@"
