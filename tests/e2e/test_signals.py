"""Stopping a run on purpose, and two runs at once: the real CLI against a slow sandbox, on
DuckDB and on PostgreSQL (the `target` fixture)."""

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from routera_archive_sandbox import FaultConfig, SandboxConfig, SandboxServer
from tests.e2e.cli_support import Result, Target, cli_env, deletes_sent, run_cli, start_cli
from tests.pipeline.test_call_worker import call_worker_pids

pytestmark = pytest.mark.e2e

CONTACTS = 600
# What a run that is stopped or killed early has queued: enough that the stop lands mid-run
# (after 40-60 DELETEs, at ~160 a second), few enough that the run after it is short.
STOPPED_QUEUE = 200


@pytest.fixture
def slow_server() -> Iterator[SandboxServer]:
    config = SandboxConfig(port=0, contacts=CONTACTS, seed=3, faults=FaultConfig(latency_ms=25.0))
    with SandboxServer(config) as server:
        yield server


def run_env(server: SandboxServer, target: Target) -> dict[str, str]:
    """Four calls at once, loads of 50: a run long enough to be stopped in the middle."""
    settings = {"SOURCES__ROUTERA__CONCURRENCY": "4", "SOURCES__ROUTERA__CHUNK_SIZE": "50"}
    return cli_env(server, target.workdir, target.env, settings)


def enqueue_all(server: SandboxServer, target: Target, count: int = CONTACTS) -> list[str]:
    ids = server.state.contact_ids(include_archived=False)[:count]
    (target.workdir / "ids.txt").write_text("\n".join(ids), encoding="utf-8")
    enqueued = run_cli(
        target.workdir,
        run_env(server, target),
        *target.command("enqueue", "ids.txt"),
        timeout=120,
    )
    assert enqueued.code == 0, enqueued.output
    return ids


def start_run(
    server: SandboxServer, target: Target, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    environment = env or run_env(server, target)
    return start_cli(target.workdir, environment, *target.command("run", "--force"))


def finish_run(server: SandboxServer, target: Target) -> Result:
    return run_cli(
        target.workdir, run_env(server, target), *target.command("run", "--force"), timeout=180
    )


def finish_refused(process: subprocess.Popen[str]) -> Result:
    """A run expected to be refused at once: its exit code and output."""
    stdout, stderr = process.communicate(timeout=60)
    return Result(process.returncode, stdout, stderr)


def wait_for_deletes(server: SandboxServer, count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while deletes_sent(server) < count:
        assert time.monotonic() < deadline, "the run never got going"
        time.sleep(0.02)


def archived_in_sandbox(server: SandboxServer) -> set[str]:
    return {c["id"] for c in server.state.snapshot() if c["archived"] is not False}


def audit_ids(target: Target) -> list[str]:
    return [row[0] for row in target.query("SELECT id FROM contact_archives")]


# Both signals on DuckDB: SIGTERM to the run, and SIGINT as Ctrl-C in a terminal sends it, to the
# whole process group, the call worker included: the worker ignores it and the run stops it, so
# the calls in flight are still finished and loaded. SIGINT to the run alone is the group case's
# signal without the worker's share, handled as SIGTERM is: `--run-slow`. The group case is a
# variant (CI runs it): the default suite keeps SIGTERM, and its 10 minutes. On PostgreSQL one is
# enough: the CLI handles them alike, and what depends on the destination (loading what was
# done, then resuming) is the same for both.
@pytest.mark.parametrize(
    ("target", "signum", "to_group"),
    [
        pytest.param("duckdb", signal.SIGTERM, False, id="duckdb-SIGTERM"),
        pytest.param("duckdb", signal.SIGINT, False, id="duckdb-SIGINT", marks=pytest.mark.slow),
        pytest.param(
            "duckdb",
            signal.SIGINT,
            True,
            id="duckdb-ctrl-c-to-the-group",
            marks=pytest.mark.variant,
        ),
        pytest.param(
            "postgres",
            signal.SIGTERM,
            False,
            id="postgres-SIGTERM",
            marks=[pytest.mark.postgres, pytest.mark.twin],
        ),
    ],
    indirect=["target"],
)
def test_a_stopped_run_finishes_in_flight_calls_loads_them_and_exits_non_zero(
    slow_server: SandboxServer, target: Target, signum: signal.Signals, to_group: bool
) -> None:
    ids = enqueue_all(slow_server, target, STOPPED_QUEUE)
    process = start_cli(
        target.workdir,
        run_env(slow_server, target),
        *target.command("run", "--force"),
        start_new_session=to_group,
    )
    try:
        wait_for_deletes(slow_server, 60)
        if to_group:
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()

    assert process.returncode == 130, stdout + stderr
    assert "interrupted" in stdout and "exit code 130" in stdout
    assert "Traceback" not in stdout + stderr
    archived = archived_in_sandbox(slow_server)
    # Everything Routera archived is in the trail already: nothing waits for a later recovery.
    assert sorted(audit_ids(target)) == sorted(archived)
    assert 60 <= len(archived) < len(ids), "the stop should have come mid-run"

    deletes_before = slow_server.state.stats()["totals"]["by_method"]["DELETE"]
    finish = finish_run(slow_server, target)
    assert finish.code == 0, finish.stdout + finish.stderr
    assert sorted(audit_ids(target)) == sorted(ids)
    assert slow_server.state.stats()["totals"]["by_method"]["DELETE"] - deletes_before == len(
        ids
    ) - len(archived)
    assert set(slow_server.state.stats()["deletes_succeeded"].values()) == {1}


def test_a_second_run_at_the_same_time_makes_no_call_and_names_the_first(
    slow_server: SandboxServer, target: Target
) -> None:
    """A second run from the same pipeline folder is refused by the folder's lock. A run from
    another machine, container or user (a pipeline folder of its own) is refused too, by the
    dataset's lock: in PostgreSQL, an advisory lock naming the first run's session; on DuckDB,
    a lock file next to the database (it once lived in the pipeline folder, and both ran)."""
    ids = enqueue_all(slow_server, target)
    env = run_env(slow_server, target)
    elsewhere = {**env, "DLT_DATA_DIR": str(target.workdir / "other_machine")}
    first = start_run(slow_server, target, env)
    others: list[subprocess.Popen[str]] = []
    try:
        wait_for_deletes(slow_server, 20)
        # Started together, so that both meet the first run in the middle of its work.
        others.append(start_run(slow_server, target, env))
        others.append(start_run(slow_server, target, elsewhere))
        seconds = [finish_refused(process) for process in others]
        first_out, first_err = first.communicate(timeout=180)
    finally:
        for process in (first, *others):
            if process.poll() is None:
                process.kill()

    assert first.returncode == 0, first_out + first_err
    first_run_id = first_out.split("routera-archive run ", 1)[1].split(":", 1)[0]
    same_folder = seconds[0]
    assert same_folder.code == 1, same_folder.output
    assert f"run {first_run_id}" in same_folder.output
    assert "another run holds this dataset's pipeline folder" in same_folder.output
    other_machine = seconds[1]
    assert other_machine.code == 1, other_machine.output
    output = " ".join(other_machine.output.split())  # the message may wrap
    if target.destination == "postgres":
        assert f"another run holds dataset `{target.dataset}` in PostgreSQL" in output
        assert f"routera-archive {first_run_id}" in output  # the first run's session
    else:
        assert f"another run holds dataset `{target.dataset}` of routera_audit.duckdb" in output
        assert f"run {first_run_id}" in output
    # Every contact was deleted exactly once: the second runs sent nothing.
    stats = slow_server.state.stats()
    assert stats["totals"]["by_method"]["DELETE"] == len(ids)
    assert set(stats["deletes_succeeded"].values()) == {1}
    assert sorted(audit_ids(target)) == sorted(ids)


def process_gone(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "\nState:\tZ" in status  # exited, waiting to be reaped by whoever adopted it


@pytest.mark.parametrize("target", ["duckdb"], indirect=True)
def test_a_killed_run_takes_its_call_worker_with_it(
    slow_server: SandboxServer, target: Target
) -> None:
    """SIGKILL gives the run no chance to stop its worker; the worker must not go on calling
    for a run that can no longer record the answers (the kernel kills it with its parent)."""
    ids = enqueue_all(slow_server, target, STOPPED_QUEUE)
    process = start_run(slow_server, target)
    try:
        wait_for_deletes(slow_server, 40)
        workers = call_worker_pids(process.pid)
        assert len(workers) == 1, workers
        process.kill()
        process.wait(timeout=30)
        deadline = time.monotonic() + 10
        while not process_gone(workers[0]):
            assert time.monotonic() < deadline, "the call worker outlived its run"
            time.sleep(0.02)
    finally:
        if process.poll() is None:
            process.kill()
    time.sleep(0.5)  # the calls in flight at the kill are answered (and counted) meanwhile
    calls_after_the_kill = deletes_sent(slow_server)
    time.sleep(1.0)
    assert deletes_sent(slow_server) == calls_after_the_kill

    finish = finish_run(slow_server, target)
    assert finish.code == 0, finish.output
    assert sorted(audit_ids(target)) == sorted(ids)
    assert set(slow_server.state.stats()["deletes_succeeded"].values()) == {1}
