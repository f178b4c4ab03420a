"""CLI options that need no sandbox: --version, and refusals before any work starts."""

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


def test_dlt_telemetry_is_off_unless_the_user_turns_it_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .dlt/config.toml here
    monkeypatch.delenv("RUNTIME__DLTHUB_TELEMETRY", raising=False)
    CliRunner().invoke(app, ["run", "--shard", "4/4"])
    assert os.environ["RUNTIME__DLTHUB_TELEMETRY"] == "false"

    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "true")
    CliRunner().invoke(app, ["run", "--shard", "4/4"])
    assert os.environ["RUNTIME__DLTHUB_TELEMETRY"] == "true"


@pytest.mark.parametrize(("config", "expected"), [("", "false"), ("true", None)])
def test_dlt_telemetry_turned_on_in_config_toml_stays_on(
    tmp_path: Path, config: str, expected: str | None
) -> None:
    """In a process of its own: dlt reads `.dlt/config.toml` from the working directory once."""
    (tmp_path / ".dlt").mkdir()
    if config:
        (tmp_path / ".dlt" / "config.toml").write_text(f"[runtime]\ndlthub_telemetry = {config}\n")
    environment = {k: v for k, v in os.environ.items() if k != "RUNTIME__DLTHUB_TELEMETRY"}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os; "
            "from routera_archive_pipelines.cli import telemetry_off_unless_configured as off; "
            "off(); print(os.environ.get('RUNTIME__DLTHUB_TELEMETRY'))",
        ],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(expected)
