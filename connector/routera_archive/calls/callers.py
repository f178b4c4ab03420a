"""Who makes a run's HTTP calls: the run's own event loop, or a call worker process.

The run sees one interface either way: a list call for the share check, and `archive()`, which
turns requests into outcomes. In-process is for an injected transport (tests, embedding);
the worker process is the default, because the run's process spends half a second of
interpreter lock per chunk on dlt's loads (see `routera_archive.calls.worker`).
"""

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import subprocess
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from pathlib import Path
from typing import Any, Final, Protocol

import httpx

from routera_archive.calls import protocol
from routera_archive.calls.archiver import KeepSnapshot, archive_concurrently
from routera_archive.calls.process import end_worker_process, start_worker_process
from routera_archive.errors import (
    AuthenticationError,
    CallWorkerError,
    ConfigurationError,
    LocalStorageError,
    RetriesExhausted,
)
from routera_archive.http.client import ApiAnswer, RouteraClient
from routera_archive.http.config import ClientConfig
from routera_archive.models import ArchiveOutcome, ArchiveRequest
from routera_archive.objects import ObjectType

logger = logging.getLogger(__name__)

# The call worker holds up to this many requests per connection (sent to it, not yet answered):
# about 0.2 s of work at full speed, so a load in the run's process never leaves it idle.
CALL_WORKER_WINDOW_PER_CONNECTION: Final = 4

# When a run ends early, the worker gets this long to finish (and journal) the calls in flight.
CALL_WORKER_STOP_TIMEOUT_S: Final = 60.0

# How often a run asks whether it must stop while it feeds the worker: a stop reaches the
# worker within this, so it starts none of the requests it holds after a lost lock.
STOP_POLL_S: Final = 0.02

Stopping = Callable[[], bool]


class Caller(Protocol):
    """Makes the calls of one run."""

    # True when the outcomes `archive` yields are already in a journal of this run.
    journals_outcomes: bool

    @property
    def requests_sent(self) -> int: ...

    async def list_objects(
        self, object_type: ObjectType, *, archived: bool, limit: int, offset: int
    ) -> ApiAnswer: ...

    def archive(
        self,
        requests: AsyncIterator[ArchiveRequest],
        *,
        stopping: Stopping,
        keep_snapshot: KeepSnapshot | None = None,
    ) -> AsyncGenerator[ArchiveOutcome, None]:
        """Outcomes of `requests`; `keep_snapshot` journals a snapshot before its DELETE where
        the calls are made in this process (the call worker journals its own)."""
        ...

    async def aclose(self) -> None: ...


class InProcessCaller:
    """The calls on the run's own event loop."""

    journals_outcomes = False

    def __init__(self, client: RouteraClient) -> None:
        self.client = client

    @property
    def requests_sent(self) -> int:
        return self.client.requests_sent

    async def list_objects(
        self, object_type: ObjectType, *, archived: bool, limit: int, offset: int
    ) -> ApiAnswer:
        return await self.client.list_objects(
            object_type, archived=archived, limit=limit, offset=offset
        )

    def archive(
        self,
        requests: AsyncIterator[ArchiveRequest],
        *,
        stopping: Stopping,
        keep_snapshot: KeepSnapshot | None = None,
    ) -> AsyncGenerator[ArchiveOutcome, None]:
        return archive_concurrently(
            self.client,
            requests,
            workers=self.client.config.concurrency,
            may_start=lambda: not stopping(),
            keep_snapshot=keep_snapshot,
        )

    async def aclose(self) -> None:
        await self.client.aclose()


def _error(payload: dict[str, Any]) -> Exception:
    """The typed error a worker reported, rebuilt on the run's side."""
    kind, message = payload.get("kind"), str(payload.get("message", ""))
    if kind == protocol.AUTHENTICATION:
        return AuthenticationError(message)
    if kind == protocol.CONFIGURATION:
        return ConfigurationError(message)
    if kind == protocol.LOCAL_STORAGE:
        return LocalStorageError(message)
    if kind == protocol.RETRIES_EXHAUSTED:
        return RetriesExhausted(
            message,
            attempts=int(payload.get("attempts", 0)),
            maybe_reached_server=bool(payload.get("maybe_reached_server", True)),
            last_status=payload.get("last_status"),
            last_body=payload.get("last_body"),
        )
    return CallWorkerError(f"the call worker stopped on an error: {message}")


@dataclasses.dataclass
class _Done:
    """The worker said `done`, or its output ended without it (`exit_code` then)."""

    clean: bool
    exit_code: int | None = None


@dataclasses.dataclass
class SpawnedWorker:
    """A call worker started and configured, not yet attached to an event loop.

    Spawned before the run's recovery and queue tally, so that its interpreter start (a third
    of a second) overlaps them instead of delaying the first call.
    """

    process: subprocess.Popen[bytes]
    journal_path: Path
    window: int

    def abandon(self) -> None:
        """End a worker the run will not use, at once: it has been sent no request, so it has
        called nothing and holds no answer, and a run must not wait for its start-up to end."""
        end_worker_process(self.process)


def spawn_call_worker(
    config: ClientConfig,
    *,
    journal_dir: Path,
    run_id: str,
    sync_every: int,
    process: "subprocess.Popen[bytes] | None" = None,
) -> SpawnedWorker:
    """Start `python -m routera_archive.calls.worker` (or take `process`, one started ahead
    by `calls.process.start_worker_process` and sent nothing yet) and send it its
    configuration."""
    if process is None:
        process = start_worker_process()
    part = "calls"
    settings = {
        # Secrets travel on this pipe only: never in argv or the environment of the child.
        "client": config.to_wire(),
        "journal_dir": str(journal_dir),
        "run_id": run_id,
        "journal_part": part,
        "sync_every": sync_every,
        "log_level": logging.getLogger("routera_archive").getEffectiveLevel(),
    }
    assert process.stdin is not None
    try:
        process.stdin.write(protocol.encode(protocol.CONFIG, json.dumps(settings)))
        process.stdin.flush()
    except OSError:
        pass  # it died at once: attaching to it reports how
    return SpawnedWorker(
        process,
        journal_dir / f"{run_id}.{part}.jsonl",
        max(1, config.concurrency * CALL_WORKER_WINDOW_PER_CONNECTION),
    )


class _StopSent(asyncio.Event):
    """Set when STOP went to the worker; from then the worker has CALL_WORKER_STOP_TIMEOUT_S."""

    _at: float | None = None

    def mark(self) -> None:
        self._at = time.monotonic()
        self.set()

    def deadline(self) -> float:
        """Seconds left before a worker that has not ended is killed."""
        assert self._at is not None
        return self._at + CALL_WORKER_STOP_TIMEOUT_S - time.monotonic()


class WorkerCaller:
    """The calls in a child process (`python -m routera_archive.calls.worker`).

    At most `window` requests are with the worker and not yet answered: enough to keep its
    connections busy while this process is inside a load, few enough that a stop leaves little
    behind (requests the worker has not started come back as nothing: they stay pending).
    """

    journals_outcomes = True

    def __init__(
        self,
        worker: SpawnedWorker,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.process = worker.process
        self.journal_path = worker.journal_path
        self.window = worker.window
        self._stdin = writer
        self._stdout = reader
        self._requests_sent = 0
        self._inbox: asyncio.Queue[ArchiveOutcome | Exception | _Done] = asyncio.Queue()
        self._answers: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._call_ids = itertools.count()
        self._done: _Done | None = None
        # Set once END or STOP went to the worker: from then it answers no list call.
        self._stream_ended = False
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def attach(cls, worker: SpawnedWorker) -> "WorkerCaller":
        """Speak to a spawned worker from the running event loop."""
        loop = asyncio.get_running_loop()
        assert worker.process.stdin is not None and worker.process.stdout is not None
        reader = asyncio.StreamReader(limit=protocol.MAX_LINE_BYTES, loop=loop)
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader, loop=loop), worker.process.stdout
        )
        transport, stream_protocol = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, worker.process.stdin
        )
        writer = asyncio.StreamWriter(transport, stream_protocol, None, loop)
        return cls(worker, reader, writer)

    @classmethod
    async def start(
        cls, config: ClientConfig, *, journal_dir: Path, run_id: str, sync_every: int
    ) -> "WorkerCaller":
        return await cls.attach(
            spawn_call_worker(config, journal_dir=journal_dir, run_id=run_id, sync_every=sync_every)
        )

    @property
    def requests_sent(self) -> int:
        return self._requests_sent

    @property
    def ended_cleanly(self) -> bool:
        """The worker said `done`: every outcome it journaled reached this process."""
        return self._done is not None and self._done.clean

    # ------------------------------------------------------------------ calls
    async def list_objects(
        self, object_type: ObjectType, *, archived: bool, limit: int, offset: int
    ) -> ApiAnswer:
        """A list call made by the worker. Only before the archive stream ends: after END the
        worker is finishing, and after its DONE nothing would ever answer (`_finish` already
        failed the calls it knew of), so the wait would never end; such a call is an error
        here, at once (the worker refuses one that reaches it after END as well)."""
        if self._stream_ended or self._done is not None:
            raise CallWorkerError(
                f"a list call (GET {object_type.path}) after the call worker's archive stream "
                "ended: the worker answers none then; list calls come first in a run"
            )
        call_id = str(next(self._call_ids))
        answer = asyncio.get_running_loop().create_future()
        self._answers[call_id] = answer
        arguments = {
            "object_type": object_type.value,
            "archived": archived,
            "limit": limit,
            "offset": offset,
        }
        with contextlib.suppress(OSError, RuntimeError):  # a dead worker: `_read` says so
            self._send(protocol.LIST, call_id, json.dumps(arguments))
        payload = await answer
        if "error" in payload:
            raise _error(payload["error"])
        fields = payload["answer"]
        fields["retry_reasons"] = tuple(fields["retry_reasons"])
        return ApiAnswer(**fields)

    async def archive(
        self,
        requests: AsyncIterator[ArchiveRequest],
        *,
        stopping: Stopping,
        keep_snapshot: KeepSnapshot | None = None,  # the worker journals its own snapshots
    ) -> AsyncGenerator[ArchiveOutcome, None]:
        """Send requests as the window allows; yield outcomes until the worker is done.

        An error the worker reports (authentication) is raised after the outcomes before it;
        an error of `requests` itself (the queue) after the worker finished what it had.
        """
        window = asyncio.Semaphore(self.window)
        feed_error: list[BaseException] = []
        ended: list[str] = []  # END and/or STOP, as sent: no request is sent after either
        stop_sent = _StopSent()

        def end(kind: str) -> None:
            """END once, when the requests ran out; STOP once, even after END (a signal while
            the worker finishes its last calls): the worker is listening for it."""
            if kind in ended or (kind == protocol.END and ended):
                return
            ended.append(kind)
            self._stream_ended = True
            if kind == protocol.STOP:
                stop_sent.mark()
            with contextlib.suppress(OSError, RuntimeError):
                self._send(kind)

        async def feed() -> None:
            try:
                async for request in requests:
                    await window.acquire()
                    if self._done is not None or ended:
                        return
                    if stopping():  # the stop came while this request waited for the window
                        break
                    self._send(protocol.ARCHIVE, request.model_dump_json())
                    await self._stdin.drain()
            except (OSError, RuntimeError):
                return  # the worker is gone; its end of the output says how
            except Exception as exc:
                feed_error.append(exc)
            end(protocol.STOP if feed_error or stopping() else protocol.END)
            with contextlib.suppress(OSError, RuntimeError):
                await self._stdin.drain()

        async def stop_at_once() -> None:
            """A stop (a signal, a lost lock) reaches the worker now, not when the feeder next
            wakes: requests queued in the worker and not started stay pending."""
            while protocol.STOP not in ended and self._done is None:
                if stopping():
                    end(protocol.STOP)
                    with contextlib.suppress(OSError, RuntimeError):
                        await self._stdin.drain()
                    return
                await asyncio.sleep(STOP_POLL_S)

        feeder = asyncio.create_task(feed())
        stopper = asyncio.create_task(stop_at_once())
        error: Exception | None = None
        try:
            while True:
                item = await self._next(stop_sent)
                if isinstance(item, ArchiveOutcome):
                    window.release()
                    yield item
                elif isinstance(item, Exception):
                    error = error or item
                else:
                    break
        finally:
            for task in (feeder, stopper):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
                with contextlib.suppress(OSError, RuntimeError):
                    self._send(protocol.STOP)
        if error is not None:
            raise error
        if not self.ended_cleanly:
            assert self._done is not None
            raise CallWorkerError(
                f"the call worker process ended unexpectedly (exit code {self._done.exit_code});"
                " the answers it had received are in its journal and the next run loads them, "
                "and calls in flight are read back then"
            )
        if feed_error:
            raise feed_error[0]

    async def _next(self, stop_sent: "_StopSent") -> ArchiveOutcome | Exception | _Done:
        """The worker's next message; once it was asked to stop, within
        CALL_WORKER_STOP_TIMEOUT_S of that, or it is killed (a worker stuck in its shutdown,
        as one was on a full disk, would otherwise hold the run for ever, signals and all)."""
        if not self._inbox.empty() or self._done is not None:
            return await self._inbox.get()
        message = asyncio.ensure_future(self._inbox.get())
        try:
            if not stop_sent.is_set():
                marked = asyncio.ensure_future(stop_sent.wait())
                await asyncio.wait({message, marked}, return_when=asyncio.FIRST_COMPLETED)
                marked.cancel()
            if not message.done():
                await asyncio.wait({message}, timeout=max(0.0, stop_sent.deadline()))
            if not message.done():
                logger.error(
                    "the call worker did not stop within %.0f s of being asked; killing it",
                    CALL_WORKER_STOP_TIMEOUT_S,
                )
                self.process.kill()
            return await message  # what it sent before, then its end
        finally:
            message.cancel()

    # -------------------------------------------------------------- plumbing
    def _send(self, kind: str, *parts: str) -> None:
        self._stdin.write(protocol.encode(kind, *parts))

    async def _read(self) -> None:
        try:
            while line := await self._stdout.readline():
                kind, parts = protocol.decode(line, 2)
                if kind == protocol.OUTCOME:
                    self._requests_sent = int(parts[0])
                    self._inbox.put_nowait(ArchiveOutcome.model_validate_json(parts[1]))
                elif kind == protocol.LOG:
                    record = json.loads(parts[0])
                    logging.getLogger(record["name"]).log(record["level"], "%s", record["message"])
                elif kind == protocol.ANSWER:
                    answer = self._answers.pop(parts[0], None)
                    if answer is not None and not answer.done():
                        answer.set_result(json.loads(parts[1]))
                elif kind == protocol.ERROR:
                    self._inbox.put_nowait(_error(json.loads(parts[0])))
                elif kind == protocol.DONE:
                    self._requests_sent = int(parts[0])
                    self._finish(_Done(clean=True))
                    return
                else:
                    raise ValueError(f"a message of unknown kind {kind[:40]!r}")
        except Exception as exc:  # a line this process cannot read: the worker is not trusted
            logger.error("unreadable message from the call worker; stopping it: %s", exc)
            self.process.kill()
        code = await asyncio.to_thread(self.process.wait)
        self._finish(_Done(clean=False, exit_code=code))

    def _finish(self, done: _Done) -> None:
        self._done = done
        lost = CallWorkerError(
            f"the call worker process ended (exit code {done.exit_code}) before answering"
        )
        for answer in self._answers.values():
            if not answer.done():
                answer.set_exception(lost)
        self._answers.clear()
        self._inbox.put_nowait(done)

    async def aclose(self) -> None:
        """End the worker: ask it to stop, give in-flight calls time, then kill it."""
        self._stream_ended = True
        if self._done is None:
            with contextlib.suppress(OSError, RuntimeError):
                self._send(protocol.STOP)
                await self._stdin.drain()
        self._stdin.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._reader), CALL_WORKER_STOP_TIMEOUT_S)
        except TimeoutError:
            logger.warning("the call worker did not stop in time; killing it")
            self.process.kill()
        with contextlib.suppress(BaseException):
            await self._reader
        await asyncio.to_thread(self.process.wait)


async def open_caller(
    config: ClientConfig,
    *,
    transport: httpx.AsyncBaseTransport | None,
    worker: SpawnedWorker | None,
) -> Caller:
    """The spawned worker when there is one; otherwise the calls stay in this process (an
    injected transport lives here, or the configuration asked for it)."""
    if worker is None or transport is not None:
        return InProcessCaller(RouteraClient(config, transport=transport))
    return await WorkerCaller.attach(worker)
