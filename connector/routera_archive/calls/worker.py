"""The call worker: a child process that makes a run's HTTP calls and journals their outcomes.

Why a process: dlt's extract, normalize and load of each chunk is Python work that holds the
interpreter lock for about half a second per 500 outcomes; in the run's own process the event
loop waits behind it and every round trip grows (bench/RESULTS.md). Here the calls have an
interpreter of their own, and the run's process keeps the destination: the queue's pages, the
chunk loads, the locks (on DuckDB only one process may open the file).

What keeps the promise: an outcome is appended to this worker's journal (flushed to the OS)
before it is written to the run, so a crash of either process loses no answer Routera gave;
the next run loads it from the journal like any other. The worker dies with the run's process
(Linux: PR_SET_PDEATHSIG) and ignores SIGINT/SIGTERM, which are the run's to handle: it never
calls on its own, only for requests the run sent it.

Started as `python -m routera_archive.calls.worker <parent pid>`; speaks
`routera_archive.calls.protocol` on stdin/stdout. Nothing else may write to stdout, so fd 1 is
pointed at stderr first.
"""

import asyncio
import contextlib
import ctypes
import dataclasses
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from routera_archive import timeline
from routera_archive.calls import protocol
from routera_archive.calls.archiver import archive_concurrently
from routera_archive.errors import (
    AuthenticationError,
    ConfigurationError,
    LocalStorageError,
    RetriesExhausted,
)
from routera_archive.http.client import RouteraClient
from routera_archive.http.config import ClientConfig
from routera_archive.journal import OutcomeJournal
from routera_archive.models import ArchiveRequest
from routera_archive.objects import ObjectType
from routera_archive.redaction import scrub

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
# Exit codes the run reports when the worker ends without `done`.
EXIT_PARENT_GONE = 70
EXIT_BAD_START = 71


def die_with_parent(parent_pid: int) -> None:
    """A worker outliving its run could finish calls nobody records in the destination."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os._exit(EXIT_PARENT_GONE)


class Outbox:
    """Writes protocol lines to the run; the only writer of the protocol descriptor."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    def send(self, kind: str, *parts: str) -> None:
        self.writer.write(protocol.encode(kind, *parts))

    async def drain(self) -> None:
        await self.writer.drain()

    async def flush(self) -> None:
        """Wait until every line written is in the pipe. `drain` only waits until the event
        loop's buffer is below its high-water mark; a process that ended then would drop the
        rest, its last outcomes and DONE among them, while the run was busy loading."""
        self.writer.transport.set_write_buffer_limits(high=0)
        await self.writer.drain()


class ForwardToRun(logging.Handler):
    """Log records go to the run's process, whose handlers (the CLI's) own the terminal."""

    def __init__(self, outbox: Outbox) -> None:
        super().__init__()
        self.outbox = outbox

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            message = scrub(message)
            self.outbox.send(
                protocol.LOG,
                json.dumps({"level": record.levelno, "name": record.name, "message": message}),
            )
        except Exception:  # a log line must never stop a call
            self.handleError(record)


def journal_error_payload(error: OSError, path: Path) -> dict[str, Any]:
    return {"kind": protocol.LOCAL_STORAGE, "message": str(LocalStorageError.of(error, path))}


def error_payload(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, AuthenticationError):
        return {"kind": protocol.AUTHENTICATION, "message": str(exc)}
    if isinstance(exc, ConfigurationError):
        return {"kind": protocol.CONFIGURATION, "message": str(exc)}
    if isinstance(exc, RetriesExhausted):
        return {
            "kind": protocol.RETRIES_EXHAUSTED,
            "message": exc.reason,
            "attempts": exc.attempts,
            "maybe_reached_server": exc.maybe_reached_server,
            "last_status": exc.last_status,
            "last_body": exc.last_body,
        }
    return {"kind": protocol.INTERNAL, "message": f"{type(exc).__name__}: {exc}"}


class CallWorker:
    """Archives the requests the run sends, journaling each outcome before passing it on."""

    def __init__(self, reader: asyncio.StreamReader, outbox: Outbox) -> None:
        self.reader = reader
        self.outbox = outbox
        self.intake: asyncio.Queue[ArchiveRequest | None] = asyncio.Queue()
        self.stopping = False
        self.calls: set[asyncio.Task[None]] = set()

    async def serve(self, settings: dict[str, Any]) -> None:
        journal = OutcomeJournal(
            Path(settings["journal_dir"]), settings["run_id"], part=settings["journal_part"]
        )
        sync_every = max(1, int(settings["sync_every"]))
        try:
            client = RouteraClient(ClientConfig.from_wire(settings["client"]))
        except Exception as exc:  # a configuration this worker cannot use: say so, end
            self.outbox.send(protocol.ERROR, json.dumps(error_payload(exc)))
            self.outbox.send(protocol.DONE, "0")
            await self.outbox.drain()
            return
        commands = asyncio.create_task(self.read_commands(client))
        unsynced = 0
        unwritable: OSError | None = None
        try:
            async for outcome in archive_concurrently(
                client,
                self.requests(),
                workers=client.config.concurrency,
                may_start=lambda: not self.stopping,
                keep_snapshot=journal.append_snapshot,
            ):
                line = outcome.model_dump_json()
                try:
                    journal.append_json(line)
                    unsynced += 1
                    if unsynced >= sync_every:
                        journal.sync()
                        unsynced = 0
                except OSError as exc:  # a full disk: no answer may go unkept any more
                    if unwritable is None:
                        unwritable = exc
                        self.stopping = True  # the calls in flight end; none starts
                        logger.error("the journal cannot be written (%s); stopping", exc)
                # The run gets the answer either way: it may still load it.
                self.outbox.send(protocol.OUTCOME, str(client.requests_sent), line)
                await self.outbox.drain()
            if unwritable is not None:
                self.outbox.send(
                    protocol.ERROR, json.dumps(journal_error_payload(unwritable, journal.path))
                )
        except Exception as exc:
            if not isinstance(exc, AuthenticationError):
                logger.exception("the call worker stopped on an unexpected error")
            self.outbox.send(protocol.ERROR, json.dumps(error_payload(exc)))
        finally:
            # Each step on its own: a full disk fails the journal's last flush, and the run
            # must still hear DONE (it would otherwise wait for ever).
            commands.cancel()
            with contextlib.suppress(BaseException):
                await commands
            for step in (journal.sync, journal.close):
                try:
                    step()
                except OSError as exc:
                    logger.debug("the journal's %s failed: %s", step.__name__, exc)
            await client.aclose()
            self.outbox.send(protocol.DONE, str(client.requests_sent))
            await self.outbox.drain()

    async def requests(self) -> AsyncIterator[ArchiveRequest]:
        while not self.stopping:
            request = await self.intake.get()
            if request is None or self.stopping:
                return
            yield request

    async def read_commands(self, client: RouteraClient) -> None:
        ended = False
        while True:
            line = await self.reader.readline()
            if not line:
                if ended:  # the run closed its end after END: the calls in flight finish
                    return
                # The run's end of the pipe closed without END or STOP: the run is gone.
                os._exit(EXIT_PARENT_GONE)
            kind, parts = protocol.decode(line, 2)
            if kind == protocol.ARCHIVE:
                self.intake.put_nowait(ArchiveRequest.model_validate_json(parts[0]))
            elif kind == protocol.LIST and ended:
                # The calls are finishing: a list call now could outlive DONE, and the run
                # would wait for its answer for ever. Refused, in words the run raises.
                refused = {
                    "kind": protocol.INTERNAL,
                    "message": "a list call after the end of the archive stream is not made",
                }
                self.outbox.send(protocol.ANSWER, parts[0], json.dumps({"error": refused}))
            elif kind == protocol.LIST:
                task = asyncio.create_task(self.list_objects(client, parts[0], parts[1]))
                self.calls.add(task)
                task.add_done_callback(self.calls.discard)
            elif kind == protocol.END:  # still listening: a stop may follow (a signal)
                ended = True
                self.intake.put_nowait(None)
            elif kind == protocol.STOP:
                self.stopping = True
                self.intake.put_nowait(None)
                return

    async def list_objects(self, client: RouteraClient, call_id: str, arguments: str) -> None:
        listed = json.loads(arguments)
        object_type = ObjectType(listed.pop("object_type"))
        try:
            answer = await client.list_objects(object_type, **listed)
        except (AuthenticationError, RetriesExhausted) as exc:
            payload: dict[str, Any] = {"error": error_payload(exc)}
        else:
            payload = {"answer": dataclasses.asdict(answer)}
        self.outbox.send(protocol.ANSWER, call_id, json.dumps(payload))


async def _main(protocol_out: int) -> int:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=protocol.MAX_LINE_BYTES)
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(0, "rb", buffering=0)
    )
    transport, stream_protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(protocol_out, "wb", buffering=0)
    )
    writer = asyncio.StreamWriter(transport, stream_protocol, None, loop)
    outbox = Outbox(writer)
    first = await reader.readline()
    kind, parts = protocol.decode(first)
    if kind != protocol.CONFIG:
        return EXIT_BAD_START
    settings = json.loads(parts[0])
    timeline.mark("configured")
    root = logging.getLogger()
    root.handlers[:] = [ForwardToRun(outbox)]
    root.setLevel(logging.WARNING)
    logging.getLogger("routera_archive").setLevel(int(settings.get("log_level", logging.WARNING)))
    await CallWorker(reader, outbox).serve(settings)
    await outbox.flush()
    writer.close()
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        sys.stderr.write("usage: python -m routera_archive.calls.worker <parent pid>\n")
        return EXIT_BAD_START
    timeline.name_process("worker")
    timeline.mark("imported")
    die_with_parent(int(argv[0]))
    # The run stops the worker through the protocol; a terminal's Ctrl-C reaches every process
    # of the group, and the run finishes its in-flight calls instead of losing them.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Protocol lines get their own descriptor; anything else that writes to stdout lands in
    # stderr instead of corrupting them.
    protocol_out = os.dup(1)
    os.dup2(2, 1)
    return asyncio.run(_main(protocol_out))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
