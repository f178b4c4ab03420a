#!/usr/bin/env bash
# Create .venv and install the project with its test tools; a no-op when pyproject.toml is unchanged.
# Then .venv-dbt, dbt as a tool of its own (dbt/requirements.txt): its pins would clash with the
# project's, so it never shares .venv; a no-op when that file is unchanged. SETUP_DBT=0 skips it.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "routera-archive needs Python 3.11 or newer as '$python' (set PYTHON=/path/to/python3.11)" >&2
  exit 2
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=".venv/.installed-$(sha1sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "installing routera-archive and its dependencies into .venv ..." >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
if [ "${SETUP_DBT:-1}" != 0 ]; then
  [ -x .venv-dbt/bin/python ] || "$python" -m venv .venv-dbt
  stamp=".venv-dbt/.installed-$(sha1sum dbt/requirements.txt | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    echo "installing dbt (dbt/requirements.txt) into .venv-dbt ..." >&2
    .venv-dbt/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
    .venv-dbt/bin/python -m pip install --quiet --disable-pip-version-check -r dbt/requirements.txt
    rm -f .venv-dbt/.installed-*
    touch "$stamp"
  fi
fi
# The schedulers (SETUP_SCHEDULERS=1; scripts/test.sh --run-integrations sets it): each in its own
# virtualenv with the project installed, at the versions scripts/constraints-schedulers.txt pins.
if [ "${SETUP_SCHEDULERS:-0}" = 1 ]; then
  for tool in dagster airflow; do
    venv=".venv-$tool"
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    stamp="$venv/.installed-$(cat pyproject.toml scripts/constraints-schedulers.txt | sha1sum | cut -c1-16)"
    if [ ! -f "$stamp" ]; then
      echo "installing routera-archive[$tool] (scripts/constraints-schedulers.txt) into $venv ..." >&2
      "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
      "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        -c scripts/constraints-schedulers.txt -e ".[$tool]"
      rm -f "$venv"/.installed-*
      touch "$stamp"
    fi
  done
fi
