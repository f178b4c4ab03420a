"""A run keeps an embedded DuckDB file open through its start, and lets it go for the calls.

The start's dozen queries each opened the file anew, and the last connection's close
checkpointed it each time: about half a second of every run (bench/RESULTS.md, issue 18). Held
open, the file is opened once; released once the calls begin, another process can read it
between the loads, as before.
"""

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import dlt
import duckdb
import httpx
import pytest

from routera_archive.dataset.enqueue import enqueue
from routera_archive.dataset.kept_open import KeptOpen
from routera_archive.errors import ExitCode
from routera_archive.run.runner import ArchiveRun, RunOptions
from routera_archive_sandbox import SandboxServer
from tests.conftest import source_config

# An instance already counted (see `counted`); the default is 1000.
MARKED_DEPTH = 1001
OPENS_ANOTHER_PROCESS = "import sys, duckdb; duckdb.connect(sys.argv[1]).close()"


def database_file(pipeline: dlt.Pipeline) -> str:
    with pipeline.sql_client() as client:
        return str(client.credentials.database)


class AtFirstDelete(httpx.AsyncBaseTransport):
    """The sandbox over HTTP; at the first DELETE, records how many times the run had opened
    the DuckDB database, and whether another process could open the file."""

    def __init__(self, path: str, opens: list[int]) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.path = path
        self.opens = opens
        self.opens_before_calls: int | None = None
        self.free_for_others: bool | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE" and self.opens_before_calls is None:
            self.opens_before_calls = len(self.opens)
            other = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-c", OPENS_ANOTHER_PROCESS, self.path],
                capture_output=True,
                timeout=60,
            )
            self.free_for_others = other.returncode == 0
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.parametrize("destination", ["duckdb"], indirect=True)
def test_the_start_opens_the_file_once_and_the_calls_leave_it_free(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = sandbox_server.state.contact_ids(include_archived=False)[:3]
    enqueue(pipeline, [{"contact_id": cid} for cid in ids], requested_by="ops", reason="test")
    opens: list[int] = []
    connect = duckdb.connect

    def counted(*args: Any, **kwargs: Any) -> duckdb.DuckDBPyConnection:
        """Counts the openings of the database itself, not connections to an instance already
        open (DuckDB shares one instance per file in a process): a global setting the run
        never touches marks an instance, and an instance opened anew has it back at default."""
        connection = connect(*args, **kwargs)
        depth = connection.execute("SELECT current_setting('max_expression_depth')").fetchone()
        if depth is not None and int(depth[0]) != MARKED_DEPTH:
            opens.append(1)
            connection.execute(f"SET GLOBAL max_expression_depth = {MARKED_DEPTH}")
        return connection

    monkeypatch.setattr(duckdb, "connect", counted)
    transport = AtFirstDelete(database_file(pipeline), opens)
    opens.clear()

    report = ArchiveRun(
        pipeline, source_config(sandbox_server), RunOptions(), transport=transport
    ).execute()

    assert report.exit_code == ExitCode.OK, report.error
    assert report.counts == {"archived": 3}
    # The start's hold alone: the first page is read beside the run's first calls (the share
    # check), while the hold keeps the file open (it was opened again after, issue 18).
    assert transport.opens_before_calls == 1, f"opened {transport.opens_before_calls} times"
    assert transport.free_for_others, "another process could not open the file during the calls"


def test_only_an_embedded_database_is_held(pipeline: dlt.Pipeline, destination: str) -> None:
    held = KeptOpen(pipeline)
    held.hold()
    assert held.held is (destination == "duckdb")
    held.release()
    held.release()  # idempotent
    assert not held.held


def test_a_file_that_cannot_be_opened_is_left_to_the_queries_to_report(tmp_path: Path) -> None:
    not_a_database = tmp_path / "notes.duckdb"
    not_a_database.write_text("not a database")
    pipeline = dlt.pipeline(
        "kept_open_bad_file",
        destination=dlt.destinations.duckdb(str(not_a_database)),
        dataset_name="routera_archive",
    )
    held = KeptOpen(pipeline)
    held.hold()
    assert not held.held
