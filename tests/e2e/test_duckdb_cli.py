"""The DuckDB file the connector writes opens in the DuckDB CLI people have (the `duckdb-cli`
package, 1.5.6: it reads storage versions up to DuckDB 1.5's), after a run and after a
redaction rewrote the file; and the README's line runs a shipped audit query through it."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from routera_archive.dataset.duckdb_file import STORAGE_VERSION
from routera_archive_sandbox import SandboxConfig, SandboxServer
from tests.e2e.cli_support import DB_FILE, cli_runner

pytestmark = pytest.mark.e2e

DUCKDB_CLI = str(Path(sys.executable).with_name("duckdb"))
SQL = Path(__file__).parents[2] / "connector/routera_archive/audit/sql/01_who_archived_what.sql"


def duckdb_cli(
    workdir: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DUCKDB_CLI, "-readonly", DB_FILE, *args],
        cwd=workdir,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def storage_version(path: Path) -> str:
    with duckdb.connect(str(path), read_only=True) as db:
        ((tags,),) = db.execute(
            "SELECT tags FROM duckdb_databases() WHERE database_name = current_database()"
        ).fetchall()
    return str(tags["storage_version"])


def test_the_file_opens_in_the_duckdb_cli_after_a_run_and_after_a_redaction(
    tmp_path: Path,
) -> None:
    version = subprocess.run([DUCKDB_CLI, "--version"], capture_output=True, text=True)
    assert version.stdout.startswith("v1."), version.stdout  # the 1.x CLI, not the library's 2.x
    with SandboxServer(SandboxConfig(port=0, contacts=10, seed=3)) as server:
        cli = cli_runner(server, tmp_path, timeout=120)
        contacts = server.state.object_ids("contacts", include_archived=False)[:4]
        (tmp_path / "q.txt").write_text("\n".join(contacts) + "\n")
        assert cli("enqueue", "q.txt").code == 0
        assert cli("run").code == 0
        assert storage_version(tmp_path / DB_FILE).startswith(STORAGE_VERSION)
        counted = duckdb_cli(
            tmp_path, "-c", "SELECT COUNT(*) FROM routera_archive.contact_archives"
        )
        assert counted.returncode == 0, counted.stderr
        assert "4" in counted.stdout

        # The README's line: a shipped query, through the CLI.
        shipped = duckdb_cli(tmp_path, stdin=SQL.read_text(encoding="utf-8"))
        assert shipped.returncode == 0, shipped.stderr
        assert contacts[0] in shipped.stdout

        (tmp_path / DB_FILE).chmod(0o600)  # a file its owner keeps private
        assert cli("redact", "--contact-id", contacts[0]).code == 0  # rewrites the file
        assert storage_version(tmp_path / DB_FILE).startswith(STORAGE_VERSION)
        assert stat.S_IMODE((tmp_path / DB_FILE).stat().st_mode) == 0o600  # and it stays so
        after = duckdb_cli(tmp_path, "-c", "SELECT COUNT(*) FROM routera_archive.redactions")
        assert after.returncode == 0, after.stderr
