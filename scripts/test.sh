#!/usr/bin/env bash
# Quick start 2: install, then lint, type-check, check the layers and run the whole test suite
# (PostgreSQL tests skip if no server).
set -euo pipefail
cd "$(dirname "$0")/.."
# --run-integrations also needs the schedulers' virtualenvs (minutes to install, once).
case " $* " in *" --run-integrations "*) export SETUP_SCHEDULERS=1 ;; esac
scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy                 # strict, over connector/ pipelines/ sandbox/ (pyproject.toml)
.venv/bin/lint-imports --no-logo   # the layer contracts (pyproject.toml)
# Three test processes on two cores (the e2e tests wait on processes and sockets), one file each
# at a time (module fixtures are built once); PYTEST_WORKERS=0 runs in one process (for -s, pdb
# or a single test).
exec .venv/bin/pytest -q -n "${PYTEST_WORKERS:-3}" --dist loadfile "$@"
