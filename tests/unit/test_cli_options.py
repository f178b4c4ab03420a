"""CLI options that need no sandbox: --version, and refusals before any work starts."""

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
