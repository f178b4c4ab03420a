"""A run holds its dataset's lock for as long as it sends DELETEs, and stops at once when the
lock is lost: the real CLI against a slow sandbox.

Found by an outside test: when the PostgreSQL session holding the advisory lock was terminated
(a failover, an idle-session killer), the run went on without it, a second run from another
machine started on the same dataset, and the API saw two DELETEs per contact; then
`WarehouseLock.release` raised on the dead session (a traceback, exit 1, no summary).
"""

import time
from collections.abc import Callable, Iterator
from contextlib import closing

import psycopg2
import pytest

from routera_archive.dataset.lock import WarehouseLock
from routera_archive_sandbox import SandboxServer
from tests.conftest import POSTGRES_URL
from tests.e2e.cli_support import Target, deletes_sent, run_cli
from tests.e2e.test_signals import (
    archived_in_sandbox,
    audit_ids,
    enqueue_all,
    finish_run,
    run_env,
    slow_server,
    start_run,
    wait_for_deletes,
)

pytestmark = pytest.mark.e2e

__all__ = ["slow_server"]  # the fixture, shared with test_signals.py

# Four calls in flight when the lock goes (the sandbox counts a DELETE when it answers it);
# the watch notices at once on PostgreSQL (the closed session wakes it), the stop reaches the
# call worker within 20 ms (callers.STOP_POLL_S: about 3 more at 160 a second), and no DELETE
# starts after that. Measured 4-8.
IN_FLIGHT = 4
AFTER_THE_LOSS = 3 * IN_FLIGHT


@pytest.fixture
def postgres_admin(target: Target) -> Iterator["psycopg2.extensions.connection"]:
    """A session of the test's own on the test database (the server's administrator)."""
    with closing(psycopg2.connect(POSTGRES_URL)) as connection:
        connection.autocommit = True
        yield connection


def terminate_lock_session(admin: "psycopg2.extensions.connection", dataset: str) -> None:
    """End the session holding `dataset`'s advisory lock, as a failover would."""
    key = WarehouseLock.key(dataset)
    with admin.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
            "AND granted AND classid = %s AND objid = %s",
            ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF),
        )
        assert cursor.fetchall() == [(True,)], "the run's lock session was not found"


def finish_the_queue(server: SandboxServer, target: Target, ids: list[str]) -> None:
    """A next run from the same folder finishes the queue: each contact archived once, with
    one row."""
    finish = finish_run(server, target)
    assert finish.code == 0, finish.output
    assert sorted(audit_ids(target)) == sorted(ids)
    assert set(server.state.stats()["deletes_succeeded"].values()) == {1}
    # The run that lost its lock was linked; the outcomes its journal kept, loaded by the next
    # run under its run id, are chained by that next run: intact.
    verified = run_cli(
        target.workdir, run_env(server, target), *target.command("verify"), timeout=120
    )
    assert verified.code == 0, verified.output


def lose_the_lock_mid_run(
    server: SandboxServer, target: Target, lose: Callable[[], None]
) -> tuple[str, int]:
    """Start a run on the whole queue, `lose` its lock once 40 DELETEs are answered, and
    check it exits 1 saying so; return its output (on one line) and the DELETEs answered after
    the loss."""
    first = start_run(server, target)
    try:
        wait_for_deletes(server, 40)
        lose()
        at_the_loss = deletes_sent(server)
        stdout, stderr = first.communicate(timeout=180)
        sent_after = deletes_sent(server) - at_the_loss
        time.sleep(0.5)
        assert deletes_sent(server) - at_the_loss == sent_after  # nothing later either
    finally:
        if first.poll() is None:
            first.kill()
    output = " ".join((stdout + stderr).split())
    assert first.returncode == 1, output
    assert "Traceback" not in output
    assert "lost its lock on the dataset" in output
    return output, sent_after


@pytest.mark.parametrize("target", ["postgres"], indirect=True)
def test_a_lost_postgres_session_stops_the_deletes_before_another_run_starts(
    slow_server, target: Target, postgres_admin
) -> None:
    """The session ends and another run takes the lock at once (the test, standing in for a
    run on another machine, holds it): the first run sends nothing more, loads nothing more
    (the other run may be writing the same records), and a run from its folder later loads
    what its journal kept. Every contact is archived once and has one row."""
    ids = enqueue_all(slow_server, target)

    def lose() -> None:
        terminate_lock_session(postgres_admin, target.dataset)
        with postgres_admin.cursor() as cursor:  # waits until the session is really gone
            cursor.execute("SELECT pg_advisory_lock(%s)", (WarehouseLock.key(target.dataset),))

    output, sent_after = lose_the_lock_mid_run(slow_server, target, lose)

    assert "the PostgreSQL session holding the lock ended" in output
    assert "loaded nothing more" in output and "the next run here loads them" in output
    assert sent_after <= AFTER_THE_LOSS, sent_after
    assert len(archived_in_sandbox(slow_server)) < len(ids) - 100, "the stop came too late"
    assert target.query("SELECT outcome, exit_code FROM archive_runs") == [
        ("stopped: the lock was lost", 1)
    ]

    with postgres_admin.cursor() as cursor:  # the stand-in run ends
        cursor.execute("SELECT pg_advisory_unlock_all()")
    # The next run from the same folder loads the journal and finishes the queue.
    finish_the_queue(slow_server, target, ids)


@pytest.mark.parametrize("target", ["postgres"], indirect=True)
def test_a_lost_postgres_session_nobody_took_is_taken_again_and_what_was_archived_loads(
    slow_server, target: Target, postgres_admin
) -> None:
    ids = enqueue_all(slow_server, target)
    output, sent_after = lose_the_lock_mid_run(
        slow_server, target, lambda: terminate_lock_session(postgres_admin, target.dataset)
    )

    assert "the lock was taken again, so what it archived is loaded" in output
    assert sent_after <= AFTER_THE_LOSS, sent_after
    # Everything Routera archived is in the trail already.
    assert sorted(audit_ids(target)) == sorted(archived_in_sandbox(slow_server))
    finish_the_queue(slow_server, target, ids)


@pytest.mark.parametrize("target", ["duckdb"], indirect=True)
def test_a_removed_duckdb_lock_file_stops_the_deletes(slow_server, target: Target) -> None:
    """The dataset's lock file next to the database is deleted mid-run (a clean-up job): a run
    started now would lock a new file, so the first run stops sending."""
    ids = enqueue_all(slow_server, target)
    lock_file = target.workdir / "routera_audit.duckdb.routera-locks" / f"{target.dataset}.lock"

    def lose() -> None:
        assert lock_file.exists()
        lock_file.unlink()

    output, sent_after = lose_the_lock_mid_run(slow_server, target, lose)

    assert f"the lock file {lock_file} was removed" in output
    assert "the lock was taken again, so what it archived is loaded" in output
    # Polled every 0.1 s: at most that long of new calls, at 4 x 25 ms (160 a second).
    assert sent_after <= IN_FLIGHT + 16 + AFTER_THE_LOSS, sent_after
    assert sorted(audit_ids(target)) == sorted(archived_in_sandbox(slow_server))
    finish_the_queue(slow_server, target, ids)
