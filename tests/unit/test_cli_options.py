"""CLI options that need no sandbox: --version, and refusals before any work starts."""

import os

import pytest
from typer.testing import CliRunner

from connector import __version__
from pipelines.cli import app


def test_version_prints_the_installed_version() -> None:
    result = CliRunner().invoke(app, ["--version"])

    assert result.exit_code == 0
    assert result.output.strip() == f"routera-archive {__version__}"


def test_a_malformed_shard_is_refused_with_exit_2() -> None:
    result = CliRunner().invoke(app, ["run", "--shard", "4/4"])

    assert result.exit_code == 2
    assert "0 <= I < N" in result.output


def test_dlt_telemetry_is_off_unless_the_user_turns_it_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNTIME__DLTHUB_TELEMETRY", raising=False)
    CliRunner().invoke(app, ["run", "--shard", "4/4"])
    assert os.environ["RUNTIME__DLTHUB_TELEMETRY"] == "false"

    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "true")
    CliRunner().invoke(app, ["run", "--shard", "4/4"])
    assert os.environ["RUNTIME__DLTHUB_TELEMETRY"] == "true"
