"""Stopping a run on purpose, and two runs at once: the real CLI against a slow sandbox."""

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox import FaultConfig, SandboxConfig, SandboxServer
from tests.e2e.cli_support import cli_env, deletes_sent, query, run_cli, start_cli

pytestmark = pytest.mark.e2e

CONTACTS = 600


@pytest.fixture
def slow_server() -> Iterator[SandboxServer]:
    config = SandboxConfig(port=0, contacts=CONTACTS, seed=3, faults=FaultConfig(latency_ms=25.0))
    with SandboxServer(config) as server:
        yield server


def run_env(server: SandboxServer, tmp_path: Path) -> dict[str, str]:
    """Four calls at once, loads of 50: a run long enough to be stopped in the middle."""
    settings = {"SOURCES__ROUTERA__CONCURRENCY": "4", "SOURCES__ROUTERA__CHUNK_SIZE": "50"}
    return cli_env(server, tmp_path, settings)


def enqueue_all(server: SandboxServer, tmp_path: Path) -> list[str]:
    ids = server.state.contact_ids(include_archived=False)
    (tmp_path / "ids.txt").write_text("\n".join(ids), encoding="utf-8")
    enqueued = run_cli(tmp_path, run_env(server, tmp_path), "enqueue", "ids.txt", timeout=120)
    assert enqueued.code == 0, enqueued.output
    return ids


def start_run(server: SandboxServer, tmp_path: Path) -> subprocess.Popen[str]:
    return start_cli(tmp_path, run_env(server, tmp_path), "run", "--force")


def wait_for_deletes(server: SandboxServer, count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while deletes_sent(server) < count:
        assert time.monotonic() < deadline, "the run never got going"
        time.sleep(0.02)


def archived_in_sandbox(server: SandboxServer) -> set[str]:
    return {c["id"] for c in server.state.snapshot() if c["archived"] is not False}


def audit_ids(tmp_path: Path) -> list[str]:
    return [row[0] for row in query(tmp_path, "SELECT id FROM routera_archive.contact_archives")]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stopped_run_finishes_in_flight_calls_loads_them_and_exits_non_zero(
    slow_server: SandboxServer, tmp_path: Path, signum: signal.Signals
) -> None:
    ids = enqueue_all(slow_server, tmp_path)
    process = start_run(slow_server, tmp_path)
    try:
        wait_for_deletes(slow_server, 60)
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
    assert sorted(audit_ids(tmp_path)) == sorted(archived)
    assert 60 <= len(archived) < len(ids), "the stop should have come mid-run"

    deletes_before = slow_server.state.stats()["totals"]["by_method"]["DELETE"]
    finish = run_cli(tmp_path, run_env(slow_server, tmp_path), "run", "--force", timeout=180)
    assert finish.code == 0, finish.stdout + finish.stderr
    assert sorted(audit_ids(tmp_path)) == sorted(ids)
    assert slow_server.state.stats()["totals"]["by_method"]["DELETE"] - deletes_before == len(
        ids
    ) - len(archived)
    assert set(slow_server.state.stats()["deletes_succeeded"].values()) == {1}


def test_a_second_run_at_the_same_time_makes_no_call_and_names_the_first(
    slow_server: SandboxServer, tmp_path: Path
) -> None:
    ids = enqueue_all(slow_server, tmp_path)
    first = start_run(slow_server, tmp_path)
    try:
        wait_for_deletes(slow_server, 20)
        second = run_cli(tmp_path, run_env(slow_server, tmp_path), "run", "--force", timeout=60)
        first_out, first_err = first.communicate(timeout=180)
    finally:
        if first.poll() is None:
            first.kill()

    assert first.returncode == 0, first_out + first_err
    assert second.code == 1
    first_run_id = first_out.split("routera-archive run ", 1)[1].split(":", 1)[0]
    assert f"run {first_run_id}" in second.stderr + second.stdout
    assert "another run holds this dataset" in second.stderr + second.stdout
    # Every contact was deleted exactly once: the second run sent nothing.
    stats = slow_server.state.stats()
    assert stats["totals"]["by_method"]["DELETE"] == len(ids)
    assert set(stats["deletes_succeeded"].values()) == {1}
    assert sorted(audit_ids(tmp_path)) == sorted(ids)
