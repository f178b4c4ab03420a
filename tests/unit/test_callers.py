"""The run's side of the call worker against workers that misbehave (small scripts standing in
for `routera_archive.calls.worker`): every way a worker can end is a typed error, never a hang or a
silently short run."""

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from routera_archive.calls import protocol
from routera_archive.calls.callers import SpawnedWorker, WorkerCaller
from routera_archive.errors import AuthenticationError, CallWorkerError, RetriesExhausted
from routera_archive.models import ArchiveOutcome, ArchiveRequest, Status
from routera_archive.objects import ObjectType

OUTCOME = ArchiveOutcome(
    request=ArchiveRequest(request_id="r1", contact_id="c1"),
    status=Status.NOT_FOUND,
    http_status=404,
    attempts=2,
)


def worker_script(*lines: bytes, exit_code: int = 0, read_first: bool = True) -> str:
    """A stand-in worker: reads its config line, writes `lines`, exits with `exit_code`."""
    body = b"".join(lines)
    return (
        "import sys\n"
        + ("sys.stdin.buffer.readline()\n" if read_first else "")
        + f"sys.stdout.buffer.write({body!r})\n"
        + "sys.stdout.buffer.flush()\n"
        + f"sys.exit({exit_code})\n"
    )


async def start_fake(script: str, tmp_path: Path) -> WorkerCaller:
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    caller = await WorkerCaller.attach(SpawnedWorker(process, tmp_path / "r.calls.jsonl", 4))
    caller._send(protocol.CONFIG, "{}")
    return caller


async def no_requests() -> AsyncIterator[ArchiveRequest]:
    return
    yield  # pragma: no cover


async def collect(caller: WorkerCaller) -> list[ArchiveOutcome]:
    outcomes = []
    try:
        async for outcome in caller.archive(no_requests(), stopping=lambda: False):
            outcomes.append(outcome)
    finally:
        await caller.aclose()
    return outcomes


def test_outcomes_then_done_are_passed_on_with_the_request_count(tmp_path: Path) -> None:
    async def go() -> tuple[list[ArchiveOutcome], int]:
        caller = await start_fake(
            worker_script(
                protocol.encode(protocol.OUTCOME, "3", OUTCOME.model_dump_json()),
                protocol.encode(protocol.DONE, "4"),
            ),
            tmp_path,
        )
        outcomes = await collect(caller)
        assert caller.ended_cleanly
        return outcomes, caller.requests_sent

    outcomes, sent = asyncio.run(go())
    assert outcomes == [OUTCOME]
    assert sent == 4


def test_a_worker_that_dies_without_done_is_an_error_after_the_outcomes_it_sent(
    tmp_path: Path,
) -> None:
    received: list[ArchiveOutcome] = []

    async def go() -> None:
        caller = await start_fake(
            worker_script(
                protocol.encode(protocol.OUTCOME, "1", OUTCOME.model_dump_json()), exit_code=9
            ),
            tmp_path,
        )
        try:
            async for outcome in caller.archive(no_requests(), stopping=lambda: False):
                received.append(outcome)
        finally:
            await caller.aclose()
        assert not caller.ended_cleanly

    with pytest.raises(CallWorkerError, match=r"exit code 9.*journal"):
        asyncio.run(go())
    assert received == [OUTCOME]


def test_a_garbled_line_is_treated_as_a_lost_worker(tmp_path: Path) -> None:
    async def go() -> None:
        caller = await start_fake(
            worker_script(protocol.encode(protocol.OUTCOME, "1", "{not json"), b"more\n"),
            tmp_path,
        )
        await collect(caller)

    with pytest.raises(CallWorkerError, match="ended unexpectedly"):
        asyncio.run(go())


def test_an_authentication_error_is_raised_as_one(tmp_path: Path) -> None:
    async def go() -> None:
        caller = await start_fake(
            worker_script(
                protocol.encode(protocol.ERROR, '{"kind": "authentication", "message": "no"}'),
                protocol.encode(protocol.DONE, "2"),
            ),
            tmp_path,
        )
        await collect(caller)

    with pytest.raises(AuthenticationError, match="no"):
        asyncio.run(go())


def test_a_list_call_that_gave_up_comes_back_as_retries_exhausted(tmp_path: Path) -> None:
    error = (
        '{"error": {"kind": "retries_exhausted", "message": "503 x5", "attempts": 5, '
        '"maybe_reached_server": false, "last_status": 503, "last_body": "busy"}}'
    )

    async def go() -> None:
        caller = await start_fake(
            worker_script(
                protocol.encode(protocol.ANSWER, "0", error), protocol.encode(protocol.DONE, "5")
            ),
            tmp_path,
        )
        try:
            await caller.list_objects(ObjectType.CONTACTS, archived=False, limit=1, offset=0)
        finally:
            await caller.aclose()

    with pytest.raises(RetriesExhausted) as raised:
        asyncio.run(go())
    assert (raised.value.attempts, raised.value.last_status) == (5, 503)
    assert not raised.value.maybe_reached_server


def test_a_list_call_to_a_worker_that_exits_fails_instead_of_waiting(tmp_path: Path) -> None:
    async def go() -> None:
        caller = await start_fake(worker_script(exit_code=3), tmp_path)
        try:
            await asyncio.wait_for(
                caller.list_objects(ObjectType.CONTACTS, archived=False, limit=1, offset=0), 30
            )
        finally:
            await caller.aclose()

    with pytest.raises(CallWorkerError, match="exit code 3"):
        asyncio.run(go())


def test_a_worker_that_talks_nonsense_and_hangs_is_killed_not_waited_for(tmp_path: Path) -> None:
    hang = "import sys, time\nsys.stdin.buffer.readline()\nprint('nonsense', flush=True)\n"
    hang += "time.sleep(600)\n"

    async def go() -> WorkerCaller:
        caller = await start_fake(hang, tmp_path)
        with pytest.raises(CallWorkerError):
            await asyncio.wait_for(collect(caller), 30)
        return caller

    caller = asyncio.run(go())
    assert caller.process.returncode is not None


def test_an_unused_worker_is_ended_at_once_not_waited_for(tmp_path: Path) -> None:
    # It would end by itself once its input closes, but only after its start-up: a run with
    # nothing to call must not wait for that.
    waits = "import sys\nsys.stdin.buffer.read()\n"
    process = subprocess.Popen(
        [sys.executable, "-c", waits], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    SpawnedWorker(process, tmp_path / "r.calls.jsonl", 4).abandon()
    assert process.returncode == -signal.SIGKILL


def stopped_and_killed(
    script: str, requests: AsyncIterator[ArchiveRequest], tmp_path: Path, stop_after: float
) -> WorkerCaller:
    """Run `requests` through a worker running `script`, stop `stop_after` seconds in, and
    check the run ends with the worker's unexpected end (it was killed) instead of waiting."""

    async def go() -> WorkerCaller:
        caller = await start_fake(script, tmp_path)
        stop = asyncio.get_running_loop().time() + stop_after
        outcomes = caller.archive(
            requests, stopping=lambda: asyncio.get_running_loop().time() > stop
        )
        with pytest.raises(CallWorkerError, match="ended unexpectedly"):
            await asyncio.wait_for(anext(outcomes), 20)
        await caller.aclose()
        return caller

    caller = asyncio.run(go())
    assert caller.process.returncode is not None
    return caller


def test_a_worker_that_never_answers_a_stop_is_killed_after_the_stop_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker stuck in its shutdown (one was, on a full disk) once held the run for ever:
    a SIGTERM set the stop, the stop reached the worker, and the run waited on."""
    monkeypatch.setattr("routera_archive.calls.callers.CALL_WORKER_STOP_TIMEOUT_S", 1.0)
    deaf = "import sys, time\nsys.stdin.buffer.readline()\ntime.sleep(600)\n"

    async def one_request() -> AsyncIterator[ArchiveRequest]:
        yield OUTCOME.request
        await asyncio.sleep(600)  # the queue is slow: the stop comes while it is read

    stopped_and_killed(deaf, one_request(), tmp_path, stop_after=0.2)


def test_a_stop_after_end_still_reaches_the_worker_and_bounds_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A signal while the worker finishes its last calls (END already sent) is a STOP it hears,
    and a worker that then does not end is killed: the run ends either way."""
    monkeypatch.setattr("routera_archive.calls.callers.CALL_WORKER_STOP_TIMEOUT_S", 1.0)
    heard = tmp_path / "heard"
    deaf = (
        "import sys, time\n"
        "sys.stdin.buffer.readline()\n"
        "lines = sys.stdin.buffer.readline() + sys.stdin.buffer.readline()\n"
        f"open({str(heard)!r}, 'wb').write(lines)\n"
        "time.sleep(600)\n"
    )

    stopped_and_killed(deaf, no_requests(), tmp_path, stop_after=0.3)

    assert heard.read_bytes().splitlines() == [protocol.END.encode(), protocol.STOP.encode()]


def test_the_worker_answers_a_list_call_after_end_with_an_error_not_silence() -> None:
    """Between END and DONE a list call could outlive the worker's last line; the worker
    answers it at once with an error, which the run raises as CallWorkerError."""
    from routera_archive.calls.callers import _error
    from routera_archive.calls.worker import CallWorker

    sent: list[tuple[str, tuple[str, ...]]] = []

    class Outbox:
        def send(self, kind: str, *parts: str) -> None:
            sent.append((kind, parts))

    async def go() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(protocol.encode(protocol.END))
        arguments = '{"object_type": "companies", "archived": false, "limit": 1, "offset": 0}'
        reader.feed_data(protocol.encode(protocol.LIST, "7", arguments))
        reader.feed_eof()
        worker = CallWorker(reader, Outbox())  # type: ignore[arg-type]
        await asyncio.wait_for(worker.read_commands(None), 5)  # type: ignore[arg-type]
        assert not worker.calls  # no call was started

    asyncio.run(go())

    [(kind, (call_id, payload))] = sent
    assert (kind, call_id) == (protocol.ANSWER, "7")
    error = _error(json.loads(payload)["error"])
    assert isinstance(error, CallWorkerError)
    assert "after the end of the archive stream" in str(error)
