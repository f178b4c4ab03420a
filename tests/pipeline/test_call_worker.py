"""The call worker process against a real sandbox: it journals before it passes an outcome on,
it calls nothing the run did not send it, its death loses no answer, its logs reach the run,
and no secret shows in its command line or environment."""

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import dlt
import pytest

from routera_archive.calls import protocol
from routera_archive.calls.callers import WorkerCaller, spawn_call_worker
from routera_archive.calls.process import EarlyWorker
from routera_archive.dataset.enqueue import enqueue
from routera_archive.errors import CallWorkerError, ExitCode
from routera_archive.journal import leftover_files, read_outcomes
from routera_archive.models import ArchiveOutcome, ArchiveRequest, Status
from routera_archive.objects import ObjectType
from routera_archive.run.runner import ArchiveRun, RunObserver, RunOptions
from routera_archive_sandbox import FaultConfig, SandboxConfig, SandboxServer
from tests.conftest import source_config
from tests.pipeline.test_run import active_ids, deletes, query


def call_worker_pids(parent: int | None = None) -> list[int]:
    """Processes running `routera_archive.calls.worker` (for `parent`, when given)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"routera_archive.calls.worker" in argv and (
            parent is None or str(parent).encode() in argv
        ):
            pids.append(int(entry.name))
    return pids


def started_worker_pids(parent: int, count: int = 1) -> list[int]:
    """`call_worker_pids(parent)` once `count` workers show: a process just spawned shows its
    parent's command line until its exec is done, which takes a while on a busy machine."""
    deadline = time.monotonic() + 30
    while len(found := call_worker_pids(parent)) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return found


async def requests_for(ids: list[str]) -> AsyncIterator[ArchiveRequest]:
    for index, contact_id in enumerate(ids):
        yield ArchiveRequest(request_id=f"r{index}", contact_id=contact_id)


def test_every_outcome_is_in_the_worker_journal_and_every_request_is_counted(
    sandbox_server: SandboxServer, tmp_path: Path
) -> None:
    ids = active_ids(sandbox_server, 12)
    config = source_config(sandbox_server, concurrency=4).client_config()

    async def go() -> tuple[list[ArchiveOutcome], WorkerCaller]:
        caller = await WorkerCaller.start(
            config, journal_dir=tmp_path, run_id="run-1", sync_every=5
        )
        try:
            outcomes = [o async for o in caller.archive(requests_for(ids), stopping=lambda: False)]
        finally:
            await caller.aclose()
        return outcomes, caller

    outcomes, caller = asyncio.run(go())

    assert caller.ended_cleanly and caller.process.returncode == 0
    assert sorted(o.request.object_id or "" for o in outcomes) == sorted(ids)
    assert {o.status for o in outcomes} == {Status.ARCHIVED}
    journaled = list(read_outcomes(caller.journal_path))
    assert caller.journal_path == tmp_path / "run-1.calls.jsonl"
    assert sorted(o.model_dump_json() for o in journaled) == sorted(
        o.model_dump_json() for o in outcomes
    )
    # One token request, one DELETE per contact: all counted, as in-process.
    assert caller.requests_sent == sandbox_server.state.stats()["totals"]["requests"] == 13


def test_the_worker_archives_and_lists_each_type_on_its_own_path(
    sandbox_server: SandboxServer, tmp_path: Path
) -> None:
    """A request's type crosses the pipe to the worker (and a list call's): each call lands on
    its own type's path in the sandbox, and nowhere else."""
    state = sandbox_server.state
    kinds = [ObjectType.COMPANIES, ObjectType.DEALS, ObjectType.TICKETS]
    wanted = {kind: state.object_ids(kind.value, include_archived=False)[0] for kind in kinds}
    contact = state.object_ids("contacts", include_archived=False)[0]
    config = source_config(sandbox_server, concurrency=2).client_config()

    async def requests() -> AsyncIterator[ArchiveRequest]:
        for index, (kind, object_id) in enumerate(wanted.items()):
            yield ArchiveRequest(request_id=f"r{index}", object_type=kind, object_id=object_id)

    async def go() -> tuple[list[ArchiveOutcome], list[int]]:
        caller = await WorkerCaller.start(
            config, journal_dir=tmp_path, run_id="run-t", sync_every=1
        )
        try:  # lists first, as a run's share check: the worker ends once its requests do
            counts = []
            for kind in [ObjectType.CONTACTS, *kinds]:
                page = await caller.list_objects(kind, archived=False, limit=10, offset=0)
                counts.append(page.json()["pagination"]["count"])
            outcomes = [o async for o in caller.archive(requests(), stopping=lambda: False)]
        finally:
            await caller.aclose()
        return outcomes, counts

    active = [
        len(state.object_ids(kind.value, include_archived=False))
        for kind in [ObjectType.CONTACTS, *kinds]
    ]
    outcomes, counts = asyncio.run(go())

    assert counts == active
    assert {o.request.object_type: o.status for o in outcomes} == dict.fromkeys(
        kinds, Status.ARCHIVED
    )
    assert {o.request.object_type: (o.record or {}).get("id") for o in outcomes} == wanted
    for kind, object_id in wanted.items():
        assert state.object_calls(kind.value) == {object_id: ["DELETE 200"]}
    assert state.object_calls("contacts") == {}
    assert contact in state.object_ids("contacts", include_archived=False)
    journaled = list(read_outcomes(tmp_path / "run-t.calls.jsonl"))
    assert {o.request.object_type for o in journaled} == set(kinds)


def test_a_stopped_worker_calls_nothing_whose_outcome_does_not_reach_the_run(
    tmp_path: Path,
) -> None:
    slow = SandboxConfig(port=0, contacts=80, seed=3, faults=FaultConfig(latency_ms=40))
    with SandboxServer(slow) as server:
        ids = active_ids(server, 80)
        config = source_config(server, concurrency=2).client_config()
        seen: list[ArchiveOutcome] = []

        async def requests() -> AsyncIterator[ArchiveRequest]:
            async for request in requests_for(ids):
                if seen:  # the run decided to stop once the first answer was in
                    return
                yield request

        async def go() -> None:
            caller = await WorkerCaller.start(
                config, journal_dir=tmp_path, run_id="run-2", sync_every=100
            )
            try:
                async for outcome in caller.archive(requests(), stopping=lambda: bool(seen)):
                    seen.append(outcome)
            finally:
                await caller.aclose()

        asyncio.run(go())
        called = deletes(server)

    assert 1 <= len(seen) < len(ids)
    assert called == len(seen)


def test_secrets_reach_the_worker_only_through_its_pipe(
    sandbox_server: SandboxServer, tmp_path: Path
) -> None:
    token = "sandbox-token-that-must-not-leak-7f3a"
    config = source_config(
        sandbox_server, client_id=None, client_secret=None, access_token=token
    ).client_config()

    async def go() -> tuple[bytes, bytes]:
        caller = await WorkerCaller.start(config, journal_dir=tmp_path, run_id="r", sync_every=1)
        try:
            proc = Path(f"/proc/{caller.process.pid}")
            # Read once the worker is up (on a loaded machine /proc can show an empty command
            # line for a moment after the start); a worker that died fails the test here.
            deadline = time.monotonic() + 10
            while not (argv := (proc / "cmdline").read_bytes()):
                assert caller.process.poll() is None, f"exited {caller.process.returncode}"
                assert time.monotonic() < deadline, "no command line"
                await asyncio.sleep(0.05)
            return argv, (proc / "environ").read_bytes()
        finally:
            await caller.aclose()

    argv, environment = asyncio.run(go())
    assert b"routera_archive.calls.worker" in argv
    assert token.encode() not in argv
    assert token.encode() not in environment


class KillWorkerAfter(RunObserver):
    """SIGKILLs this process's call worker when the run has taken `count` outcomes."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.seen = 0
        self.killed: list[int] = []

    def on_outcome(self, outcome: ArchiveOutcome) -> None:
        self.seen += 1
        if self.seen == self.count:
            for pid in call_worker_pids(os.getpid()):
                os.kill(pid, signal.SIGKILL)
                self.killed.append(pid)


# DuckDB only: the worker knows no destination (the layer contract "HTTP and the call worker
# import no dlt, no database"); what the next run loads from a dead run's journal on PostgreSQL
# is tests/pipeline/test_recovery.py::
# test_journal_entries_of_a_crashed_run_are_loaded_without_a_second_delete[postgres].
@pytest.mark.parametrize("destination", ["duckdb"], indirect=True)
def test_a_killed_worker_stops_the_run_and_the_next_run_loses_nothing(
    pipeline: dlt.Pipeline, tmp_path: Path
) -> None:
    slow = SandboxConfig(port=0, contacts=60, seed=5, faults=FaultConfig(latency_ms=20))
    with SandboxServer(slow) as server:
        ids = active_ids(server, 40)
        enqueue(pipeline, [{"contact_id": cid} for cid in ids])
        config = source_config(server, concurrency=4, chunk_size=7, max_share=0)
        observer = KillWorkerAfter(10)

        first = ArchiveRun(pipeline, config, RunOptions(), observer=observer).execute()

        assert observer.killed, "the worker was not found to be killed"
        assert first.exit_code == ExitCode.FAILED
        assert "call worker" in (first.error or "")
        journal_dir = Path(pipeline.working_dir) / "journal"
        assert any(path.name.endswith(".calls.jsonl") for path in leftover_files(journal_dir))

        second = ArchiveRun(pipeline, config, RunOptions()).execute()
        assert second.exit_code == ExitCode.OK, second.error

        rows = query(pipeline, "SELECT id, COUNT(*) FROM {dataset}.contact_archives GROUP BY id")
        assert sorted(row[0] for row in rows) == sorted(ids)
        assert {row[1] for row in rows} == {1}
        terminal = query(
            pipeline,
            "SELECT contact_id, COUNT(*) FROM {dataset}.archive_log "
            "WHERE status IN ('archived', 'already_archived') GROUP BY contact_id",
        )
        assert sorted(row[0] for row in terminal) == sorted(ids)
        assert {row[1] for row in terminal} == {1}
        # Only calls in flight at the kill may be called twice (404, then read back).
        assert deletes(server) <= len(ids) + 4 * 4
        assert leftover_files(journal_dir) == []


# DuckDB only: where the calls are made is no business of the destination (the layer contract
# "HTTP and the call worker import no dlt, no database"); runs that archive on PostgreSQL are
# the postgres cases of tests/pipeline/test_run.py.
@pytest.mark.parametrize("destination", ["duckdb"], indirect=True)
def test_call_worker_false_keeps_the_calls_in_the_runs_process(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    ids = active_ids(sandbox_server, 5)
    enqueue(pipeline, [{"contact_id": cid} for cid in ids])

    found: list[int] = []

    class CountWorkers(RunObserver):
        def on_outcome(self, outcome: ArchiveOutcome) -> None:
            found.extend(call_worker_pids(os.getpid()))

    report = ArchiveRun(
        pipeline,
        source_config(sandbox_server, call_worker=False),
        RunOptions(),
        observer=CountWorkers(),
    ).execute()
    assert report.exit_code == ExitCode.OK, report.error
    assert report.counts["archived"] == 5
    assert found == []


# DuckDB only, as the test above: the default run archives on PostgreSQL through its worker in
# every postgres case of tests/pipeline/test_run.py.
@pytest.mark.parametrize("destination", ["duckdb"], indirect=True)
def test_the_default_run_uses_a_worker_whose_logs_reach_the_run_and_leaves_none_behind(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    ids = active_ids(sandbox_server, 5)
    enqueue(pipeline, [{"contact_id": cid} for cid in ids])
    seen: list[int] = []

    class SeeWorkers(RunObserver):
        def on_outcome(self, outcome: ArchiveOutcome) -> None:
            seen.extend(call_worker_pids(os.getpid()))

    with caplog.at_level(logging.INFO, logger="routera_archive"):
        report = ArchiveRun(
            pipeline, source_config(sandbox_server), RunOptions(), observer=SeeWorkers()
        ).execute()
    assert report.exit_code == ExitCode.OK, report.error
    # The token is fetched by the worker; its log record is re-emitted in this process.
    tokens = [r for r in caplog.records if "got an OAuth token" in r.getMessage()]
    assert len(tokens) == 1 and tokens[0].name == "routera_archive.http.auth"
    assert tokens[0].process == os.getpid()
    assert report.counts["archived"] == 5
    assert seen, "no call worker ran"
    assert call_worker_pids(os.getpid()) == []


@pytest.mark.parametrize("destination", ["duckdb"], indirect=True)
def test_a_worker_started_before_the_run_is_the_one_that_makes_its_calls(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    """The CLI starts the worker before it imports dlt (issue 18): the run configures that
    process, sends its calls there, and ends it; it starts no other."""
    ids = active_ids(sandbox_server, 5)
    enqueue(pipeline, [{"contact_id": cid} for cid in ids])
    early = EarlyWorker.start()
    started = started_worker_pids(os.getpid())
    seen: list[int] = []

    class SeeWorkers(RunObserver):
        def on_outcome(self, outcome: ArchiveOutcome) -> None:
            seen.extend(call_worker_pids(os.getpid()))

    report = ArchiveRun(
        pipeline,
        source_config(sandbox_server),
        RunOptions(),
        observer=SeeWorkers(),
        early_worker=early,
    ).execute()
    assert report.exit_code == ExitCode.OK, report.error
    assert report.counts["archived"] == 5
    assert len(started) == 1 and set(seen) == set(started)
    assert early.take() is None  # the run's, and ended by it
    assert call_worker_pids(os.getpid()) == []


@pytest.mark.parametrize("destination", ["duckdb"], indirect=True)
def test_a_worker_started_before_a_run_that_makes_no_call_of_its_own_is_ended(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    """A dry run (its calls are its own) and a run with call_worker = false end it unused."""
    enqueue(pipeline, [{"contact_id": cid} for cid in active_ids(sandbox_server, 2)])
    for options, config in (
        (RunOptions(dry_run=True), source_config(sandbox_server)),
        (RunOptions(limit=1), source_config(sandbox_server, call_worker=False)),
    ):
        early = EarlyWorker.start()
        assert len(started_worker_pids(os.getpid())) == 1
        report = ArchiveRun(pipeline, config, options, early_worker=early).execute()
        assert report.exit_code == ExitCode.OK, report.error
        assert call_worker_pids(os.getpid()) == []


def test_an_early_worker_nobody_took_is_ended_on_the_way_out() -> None:
    with EarlyWorker.start() as early:
        assert len(started_worker_pids(os.getpid())) == 1
    assert early.take() is None
    assert call_worker_pids(os.getpid()) == []


def test_a_worker_ends_only_once_its_last_line_is_in_the_pipe(
    sandbox_server: SandboxServer, tmp_path: Path
) -> None:
    """Seen in the crash harness under load: a run stopped with "the call worker process ended
    unexpectedly (exit code 0)", a dozen outcomes short. The run reads the worker's lines
    between its loads; lines the pipe could not take yet waited in the worker's event loop,
    whose `drain()` only waits below its high-water mark, and the worker ended with them (and
    its DONE) unsent. Here the run's end of the pipe is shrunk to one page and not read until
    the calls are done: every line must still arrive, DONE last."""
    ids = active_ids(sandbox_server, 20)
    config = source_config(sandbox_server, concurrency=4).client_config()
    worker = spawn_call_worker(config, journal_dir=tmp_path, run_id="slow-reader", sync_every=5)
    stdin, stdout = worker.process.stdin, worker.process.stdout
    assert stdin is not None and stdout is not None
    fcntl.fcntl(stdout.fileno(), fcntl.F_SETPIPE_SZ, 4096)
    try:
        for index, contact_id in enumerate(ids):
            request = ArchiveRequest(request_id=f"r{index}", contact_id=contact_id)
            stdin.write(protocol.encode(protocol.ARCHIVE, request.model_dump_json()))
        stdin.write(protocol.encode(protocol.END))
        stdin.flush()
        stdin.close()  # the run's side is done: after END, the worker may end
        deadline = time.monotonic() + 60
        while deletes(sandbox_server) < len(ids):
            assert time.monotonic() < deadline, "the worker never made its calls"
            time.sleep(0.02)
        # Long enough for a worker that drops what it could not write to be gone.
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.process.wait(timeout=2)
        lines = stdout.read().splitlines()
    finally:
        worker.abandon()
    kinds = [protocol.decode(line)[0] for line in lines]
    assert kinds.count(protocol.OUTCOME) == len(ids), kinds
    assert kinds[-1] == protocol.DONE, kinds[-3:]


def test_a_list_call_after_the_archive_stream_ended_is_an_error_not_a_wait(
    sandbox_server: SandboxServer, tmp_path: Path
) -> None:
    """A run's list calls come first; one made after the stream ended (its worker finishing,
    or done) would have waited for an answer nobody sends, for ever. It fails at once."""
    config = source_config(sandbox_server, concurrency=2).client_config()

    async def go() -> list[BaseException | None]:
        caller = await WorkerCaller.start(
            config, journal_dir=tmp_path, run_id="run-l", sync_every=1
        )
        seen: list[BaseException | None] = []
        try:
            async for _ in caller.archive(requests_for([]), stopping=lambda: False):
                pass
            for kind in (ObjectType.CONTACTS, ObjectType.COMPANIES):
                try:
                    await asyncio.wait_for(
                        caller.list_objects(kind, archived=False, limit=1, offset=0), 10
                    )
                    seen.append(None)
                except Exception as exc:
                    seen.append(exc)
        finally:
            await caller.aclose()
        return seen

    seen = asyncio.run(go())

    assert [type(error) for error in seen] == [CallWorkerError, CallWorkerError], seen
    assert "after the call worker's archive stream ended" in str(seen[0])
    # No list call reached the sandbox.
    assert sandbox_server.state.stats()["by_type"]["contacts"]["requests"] == 0
