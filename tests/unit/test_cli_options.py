"""CLI options that need no sandbox: --version, and refusals before any work starts."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from routera_archive import __version__
from routera_archive_pipelines.cli import app


def test_version_prints_the_installed_version() -> None:
    result = CliRunner().invoke(app, ["--version"])

    assert result.exit_code == 0
    assert result.output.strip() == f"routera-archive {__version__}"


def test_a_malformed_shard_is_refused_with_exit_2() -> None:
    result = CliRunner().invoke(app, ["run", "--shard", "4/4"])

    assert result.exit_code == 2
    assert "0 <= I < N" in result.output


KEYS = {
    "telemetry": ("RUNTIME__DLTHUB_TELEMETRY", "[runtime]\ndlthub_telemetry = true\n"),
    "airflow": (
        "PROVIDERS__ENABLE_AIRFLOW_SECRETS",
        "[providers]\nenable_airflow_secrets = true\n",
    ),
}


def defaults_in_a_fresh_process(workdir: Path, env: dict[str, str]) -> dict[str, str | None]:
    """`apply_dlt_defaults` in a process of its own (dlt reads `.dlt/` once per process):
    what each variable is afterwards."""
    names = [name for name, _ in KEYS.values()]
    code = (
        "import json, os; "
        "from routera_archive_pipelines.dlt_defaults import apply_dlt_defaults; "
        f"apply_dlt_defaults(); print(json.dumps({{n: os.environ.get(n) for n in {names!r}}}))"
    )
    environment = {k: v for k, v in os.environ.items() if k not in names} | env
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=workdir,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


@pytest.mark.parametrize("key", sorted(KEYS))
def test_dlt_s_telemetry_and_airflow_provider_are_off_unless_configured(
    tmp_path: Path, key: str
) -> None:
    name, toml = KEYS[key]
    (tmp_path / ".dlt").mkdir()
    assert defaults_in_a_fresh_process(tmp_path, {})[name] == "false"
    # Turned on in the environment: left alone.
    assert defaults_in_a_fresh_process(tmp_path, {name: "true"})[name] == "true"
    # Turned on in .dlt/config.toml: no variable is set, so dlt reads the file's value.
    (tmp_path / ".dlt" / "config.toml").write_text(toml, encoding="utf-8")
    assert defaults_in_a_fresh_process(tmp_path, {})[name] is None


def test_an_unreadable_config_toml_is_left_for_the_command_to_report(tmp_path: Path) -> None:
    (tmp_path / ".dlt").mkdir()
    (tmp_path / ".dlt" / "config.toml").write_text("[runtime\n", encoding="utf-8")
    values = defaults_in_a_fresh_process(tmp_path, {})
    assert set(values.values()) == {"false"}
