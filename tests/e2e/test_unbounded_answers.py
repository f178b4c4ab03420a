"""Answers and settings without a bound get one: a body that never ends, a body trickled a
byte at a time, a concurrency typed with too many zeros. The real CLI against a misbehaving
API (DuckDB: none of this depends on the destination).

Found by an outside test: a 200 whose body never ended took the call worker to 3.1 GB in 9 s;
a body trickled at 1 byte per 0.5 s held one call 146 s with `read_timeout` 5 and
`max_attempts` 1; `--concurrency 10000000` took 2 GB for a one-request queue.
"""

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from routera_archive_sandbox import SandboxServer
from tests.e2e.cli_support import RunCli, Target, cli_runner
from tests.misbehaving_api import MisbehavingApi

pytestmark = pytest.mark.e2e

RECORD = {"id": "c-plain", "archived": "2026-06-01T10:00:00Z", "archived_by": "api-client"}


@pytest.fixture
def api() -> Iterator[MisbehavingApi]:
    with MisbehavingApi.like_routera() as running:
        running.answer("DELETE", "/contacts/c-plain", 200, RECORD)
        running.answer(
            "DELETE", "/contacts/c-endless", 200, "", "application/json", stream="endless"
        )
        running.answer(
            "DELETE", "/contacts/c-trickle", 200, "", "application/json", stream="trickle"
        )
        yield running


@pytest.fixture
def cli(tmp_path: Path, idle_sandbox: SandboxServer, api: MisbehavingApi, target: Target) -> RunCli:
    settings = {
        "SOURCES__ROUTERA__BASE_URL": api.url,
        "SOURCES__ROUTERA__ACCESS_TOKEN": "unbounded-test-token",
        "SOURCES__ROUTERA__CLIENT_ID": None,
        "SOURCES__ROUTERA__CLIENT_SECRET": None,
        "SOURCES__ROUTERA__READ_TIMEOUT": "5",
        "SOURCES__ROUTERA__MAX_ATTEMPTS": "1",
        "SOURCES__ROUTERA__CALL_DEADLINE": "3",
        "SOURCES__ROUTERA__MAX_BODY_BYTES": str(4 * 1024 * 1024),
    }
    return cli_runner(idle_sandbox, tmp_path, settings, timeout=60, target=target)


@pytest.mark.parametrize("target", ["duckdb"], indirect=True)
def test_an_endless_and_a_trickled_body_end_their_calls_and_nothing_else(
    cli: RunCli, target: Target
) -> None:
    assert cli("enqueue", "-", stdin="c-plain\nc-endless\nc-trickle\n").code == 0
    started = time.monotonic()
    run = cli("run")
    seconds = time.monotonic() - started

    assert run.code == 1, run.output  # two failed requests; they stay pending
    assert "Traceback" not in run.output
    log = dict(
        target.query("SELECT contact_id, status || ': ' || coalesce(error, '') FROM archive_log")
    )
    assert log["c-plain"].startswith("archived")
    assert log["c-endless"].startswith("failed")
    assert "longer than max_body_bytes (4194304); not read further" in log["c-endless"]
    assert log["c-trickle"].startswith("failed")
    assert "no whole answer within call_deadline (3 s)" in log["c-trickle"]
    # Both calls ran at once, each ended by its bound (not 146 s, not memory).
    assert seconds < 30, seconds
    assert target.query("SELECT count(*) FROM contact_archives") == [(1,)]


@pytest.mark.parametrize("target", ["duckdb"], indirect=True)
@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--concurrency", "10000000", "concurrency must be between 1 and 256, got 10000000"),
        ("--concurrency", "0", "concurrency must be between 1 and 256, got 0"),
    ],
)
def test_settings_beyond_their_bounds_are_refused_before_anything_runs(
    cli: RunCli, api: MisbehavingApi, option: str, value: str, says: str
) -> None:
    assert cli("enqueue", "-", stdin="c-plain\n").code == 0
    run = cli("run", option, value)

    assert run.code == 2, run.output
    assert says in " ".join(run.output.split())
    assert not [r for r in api.requests if r[0] == "DELETE"]


@pytest.mark.parametrize("target", ["duckdb"], indirect=True)
def test_a_body_cap_beyond_its_bounds_is_refused(cli: RunCli) -> None:
    run = cli("run", "--dry-run", env={"SOURCES__ROUTERA__MAX_BODY_BYTES": "10"})
    assert run.code == 2, run.output
    assert "max_body_bytes must be between 1024 and 1073741824" in " ".join(run.output.split())
