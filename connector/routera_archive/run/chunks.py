"""A run's outcomes on their way to the destination: journaled, gathered into chunks, and each
chunk loaded in a thread of its own while the next one is being archived."""

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final

import dlt
from dlt.common.pipeline import LoadInfo

from routera_archive.dataset.chain import EarlyDigests, digest_loads
from routera_archive.dataset.destination import is_data_failure, refusal_reason
from routera_archive.dataset.fields import FieldColumnsByType
from routera_archive.dataset.loading import load_file_format, load_fresh, schema_columns
from routera_archive.dataset.tables import (
    AuditRows,
    audit_trail,
    build_audit_rows,
    unmade_archives,
)
from routera_archive.errors import LocalStorageError, LockLostError, RouteraArchiveError, one_line
from routera_archive.journal import OutcomeJournal
from routera_archive.models import ArchiveOutcome, Status
from routera_archive.run.delivery import RowDelivery
from routera_archive.run.failures import typed_error
from routera_archive.run.result import MAX_FAILURES_KEPT, RunObserver, RunReport

logger = logging.getLogger(__name__)

# The thread that loads chunks runs this much nicer than the rest of the run (Linux): on a busy
# machine the calls get the CPU first. Measured on 2 cores with the sandbox beside the run:
# 560-577 archives/s at 0, 569-593/s at 10 (bench/RESULTS.md).
LOADER_THREAD_NICENESS: Final = 10

# While a load runs, outcomes keep arriving (journaled at once); past this many chunks waiting
# the archiving pauses until the load is done.
BACKPRESSURE_CHUNKS = 4
# A chunk's load is tried this many times, waiting LOAD_RETRY_WAIT_S * attempt in between.
LOAD_ATTEMPTS = 3
LOAD_RETRY_WAIT_S = 2.0


def lower_this_threads_priority(niceness: int = LOADER_THREAD_NICENESS) -> None:
    """Make the calling thread yield the CPU to the calls when cores are scarce.

    A run's throughput is set by how soon each answer is read and the next call sent, not by
    how soon a chunk is in the destination (loads have a backlog allowance). On Linux a thread
    has its own nice value; elsewhere this changes the whole process, so it is skipped there.
    """
    if not (niceness and hasattr(os, "setpriority") and os.uname().sysname == "Linux"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except OSError as exc:  # a sandbox that forbids it: loads then simply compete as equals
        logger.debug("could not lower the loader thread's priority: %s", exc)


def load_rows(
    pipeline: dlt.Pipeline, rows: AuditRows, hold_back: bool
) -> tuple[LoadInfo, str | None]:
    """Load `rows`. When the destination refuses them because of the records' own values (the
    rows' failure, not the destination's: `is_data_failure`), that package could never load and
    would be retried first by every later run; so it is aborted, and the same rows are loaded
    again with the records' fields held back (`AuditRows.held_back`: every record still reaches
    the trail, `raw_response` keeps every value). Returns the load and why fields were held back
    (None when they were not); any other failure is raised."""
    # Every type's table from the first load on (`empty_archives`): the shipped SQL names all.
    make = unmade_archives(pipeline)
    file_format = load_file_format(pipeline, len(rows.log))
    try:
        return load_fresh(pipeline, audit_trail(rows, hold_back, make), file_format), None
    except Exception as exc:
        if not is_data_failure(exc):
            raise
        reason = f"the destination refused this record's fields: {refusal_reason(exc)}"
        logger.warning("%s; loading %d records without them", reason, len(rows.records))
        logger.debug("the refused load", exc_info=exc)
        pipeline.abort_packages()
        held_back = audit_trail(rows.held_back(reason), hold_back, make)
        return load_fresh(pipeline, held_back, file_format), reason


class ChunkSink:
    """Journals every outcome, gathers chunks, and loads each in a thread (one at a time)."""

    def __init__(
        self,
        pipeline: dlt.Pipeline,
        journal: OutcomeJournal,
        report: RunReport,
        chunk_size: int,
        observer: RunObserver,
        *,
        columns: FieldColumnsByType,
        hold_back: bool,
        may_load: Callable[[], bool] = lambda: True,
        delivery: RowDelivery | None = None,
    ) -> None:
        self.columns = columns
        # Where chunks go instead of a load of their own (see run.delivery); None: loaded.
        self.delivery = delivery
        # False once the run lost its dataset's lock to another run (run.lock_watch): then
        # nothing more is loaded and the journal keeps the outcomes for the next run.
        self.may_load = may_load
        self.hold_back = hold_back
        self.pipeline = pipeline
        self.journal = journal
        self.report = report
        self.chunk_size = chunk_size
        self.observer = observer
        self.buffer: list[ArchiveOutcome] = []
        self.loading: asyncio.Task[None] | None = None
        self._flushing = asyncio.Lock()
        # Loads run one at a time on one thread of their own, at a lower CPU priority.
        self._loader = ThreadPoolExecutor(1, "routera-loader", lower_this_threads_priority)
        # Why loading stopped: no chunk is loaded after it (the run stops, the journal stays).
        self.load_error: RouteraArchiveError | None = None
        # ((type, id), request id) of the records loaded since the run last took them: they
        # are in their types' audit tables now, where the queue's SQL finds them.
        self.loaded: list[tuple[tuple[str, str], str]] = []
        # The run's rows digested as each chunk loads, for its link (None: the link reads every
        # row back; handed to an extract, nothing is loaded here).
        self.early: EarlyDigests | None = EarlyDigests() if delivery is None else None

    async def add(self, outcome: ArchiveOutcome, *, journaled: bool = False) -> None:
        """Take one outcome; `journaled` when the call worker's journal already holds it."""
        if not journaled:
            try:
                self.journal.append(outcome)
            except OSError as exc:  # the run stops: see LocalStorageError
                raise LocalStorageError.of(exc, self.journal.path) from exc
        self.report.count(outcome)
        if outcome.record is not None and outcome.request.object_type is not None:
            self.report.note_record(outcome.record, outcome.request.object_type)
        if outcome.status is Status.FAILED and len(self.report.failures) < MAX_FAILURES_KEPT:
            self.report.failures.append(
                (outcome.request.request_id, outcome.request.object_id, outcome.error or "")
            )
        self.observer.on_outcome(outcome)
        self.buffer.append(outcome)
        if len(self.buffer) < self.chunk_size:
            return
        if self.loading is None or self.loading.done():
            await self.flush()
        elif len(self.buffer) >= BACKPRESSURE_CHUNKS * self.chunk_size:
            # The destination is slower than the API: wait for it rather than pile up memory.
            await self.flush()
        # Otherwise keep taking (and journaling) outcomes while the running load finishes:
        # awaiting it here would leave the answers arriving meanwhile un-journaled in memory.

    async def flush(self) -> None:
        """Start loading what is buffered, after the load in progress (one at a time).

        Outcomes come from two coroutines (answers, and requests settled without a call), so
        two may flush at once. Without the lock both waited for the same load and then each
        started one: two `pipeline.run()` on one pipeline in two threads, which fails the load
        (seen on PostgreSQL with small chunks).
        """
        async with self._flushing:
            if not self.buffer:
                return
            try:
                self.journal.sync()
            except OSError as exc:
                raise LocalStorageError.of(exc, self.journal.path) from exc
            await self._wait_for_load()
            chunk, self.buffer = self.buffer, []
            # In a thread: a lock just lost is waited for while the watch takes it again.
            if self.load_error is None and not await asyncio.to_thread(self.may_load):
                self.load_error = LockLostError("the run lost its lock on the dataset")
            if self.load_error is None:
                self.loading = asyncio.create_task(self._load(chunk))

    async def _wait_for_load(self) -> None:
        if self.loading is not None:
            await self.loading
            self.loading = None

    async def _load(self, chunk: list[ArchiveOutcome]) -> None:
        """Load one chunk, trying again on a destination hiccup (a busy DuckDB file, a dropped
        warehouse connection). A retry may extract the chunk a second time; the insert-only
        merges on `outcome_id` and `id` make that harmless."""
        rows = build_audit_rows(chunk, self.report.run_id, self.columns)
        self._note_fields(rows)
        if self.delivery is not None:
            # Handed to the extract: in the destination only once its pipeline loads, so none
            # is `loaded` (the run keeps remembering the records it sent).
            await asyncio.get_running_loop().run_in_executor(
                self._loader, self.delivery.audit_rows, rows, self.hold_back
            )
            self.observer.on_loaded(len(chunk))
            return
        for attempt in range(1, LOAD_ATTEMPTS + 1):
            try:
                info, held_back = await asyncio.get_running_loop().run_in_executor(
                    self._loader, load_rows, self.pipeline, rows, self.hold_back
                )
            except Exception as exc:
                error = typed_error(exc)
                reason = str(error)
                logger.debug("loading a chunk failed", exc_info=exc)
                # A full disk does not empty itself in seconds: the run ends at once instead.
                if attempt == LOAD_ATTEMPTS or isinstance(error, LocalStorageError):
                    logger.error("loading a chunk of %d outcomes failed: %s", len(chunk), reason)
                    self.load_error = error
                    return
                wait = LOAD_RETRY_WAIT_S * attempt
                logger.warning("loading a chunk failed (%s); trying again in %.0f s", reason, wait)
                await asyncio.sleep(wait)
            else:
                logger.info("loaded %d outcomes (load ids %s)", len(chunk), info.loads_ids)
                if held_back is not None:
                    self.report.note_held_back([str(row["id"]) for row in rows.records], held_back)
                self.observer.on_loaded(len(chunk))
                self.loaded.extend(
                    ((request.type_name, request.object_id), request.request_id)
                    for request in (o.request for o in chunk if o.record is not None)
                    if request.object_id is not None
                )
                await asyncio.get_running_loop().run_in_executor(
                    self._loader, self._digest, list(info.loads_ids)
                )
                return

    def _digest(self, load_ids: list[str]) -> None:
        """Digest the chunk's rows for the link, on the loader's thread, beside the calls. A
        failure costs only time: the link then reads every row back."""
        if self.early is None:
            return
        try:
            digest_loads(self.pipeline, self.report.run_id, load_ids, self.early)
        except Exception as exc:
            logger.debug("could not digest a chunk's rows as it loaded", exc_info=exc)
            logger.warning(
                "could not digest a chunk's rows as it loaded (%s); the link reads them back",
                one_line(str(typed_error(exc))),
            )
            self.early = None

    def _note_fields(self, rows: AuditRows) -> None:
        """Record renamed keys, and under a held-back contract the fields kept out of columns."""
        report = self.report
        for field_row in rows.fields:
            if field_row["renamed"]:
                report.renamed_fields[field_row["field_key"]] = field_row["column_name"]
        if not self.hold_back:
            return
        stored = schema_columns(self.pipeline)
        for kind, records in rows.archives.items():
            existing = stored.get(kind.table)
            if existing is None:  # the first load creates the table with every column it brings
                continue
            for row in records:
                for column in row.keys() - existing:
                    if row[column] is not None and column not in report.held_back_fields:
                        report.held_back_fields.append(column)

    def take_loaded(self) -> list[tuple[tuple[str, str], str]]:
        """The records loaded since the last call ((type, id), request id), once each."""
        loaded, self.loaded = self.loaded, []
        return loaded

    async def close(self) -> None:
        """Load what is left, once the calls are over. Those loads have no calls to yield to
        any more and the run waits for them, so they run at the run's own priority: at nice 10
        a busy machine's other work starved the last load (issue 18). One at a time still: a
        load already running ends first (`flush` waits for it)."""
        niced, self._loader = self._loader, ThreadPoolExecutor(1, "routera-last-loads")
        niced.shutdown(wait=False)
        try:
            await self.flush()
            await self._wait_for_load()
        finally:
            self._loader.shutdown(wait=False)
