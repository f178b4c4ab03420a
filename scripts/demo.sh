#!/usr/bin/env bash
# Quick start 1: install, then archive sandbox contacts into a local DuckDB file and show the trail.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/routera-archive demo "$@"
