"""Getting outcomes into the destination: chunked loads beside the calls, and crash repair.

dlt loads a package at least once and, with packages pending, `run()` loads those and ignores
the data it was given; the helpers here make both safe for an audit trail.
"""

import asyncio
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dlt
from dlt.common.pipeline import LoadInfo
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from routera_archive.dataset.fields import FieldColumns
from routera_archive.journal import OutcomeJournal
from routera_archive.models import ArchiveOutcome, Status
from routera_archive.run.result import MAX_FAILURES_KEPT, RunObserver, RunReport
from routera_archive.settings import (
    ARCHIVES_TABLE,
    FIELDS_TABLE,
    LOADER_THREAD_NICENESS,
    LOG_TABLE,
    RUNS_TABLE,
    SOURCE_NAME,
)
from routera_archive.source import AuditRows, audit_trail, build_audit_rows

logger = logging.getLogger(__name__)

# Tables whose rows a resumed dlt package can insert twice (see collapse_reloaded_rows).
RELOADABLE_TABLES = (ARCHIVES_TABLE, LOG_TABLE, FIELDS_TABLE, RUNS_TABLE)
# While a load runs, outcomes keep arriving (journaled at once); past this many chunks waiting
# the archiving pauses until the load is done.
BACKPRESSURE_CHUNKS = 4
# A chunk's load is tried this many times, waiting LOAD_RETRY_WAIT_S * attempt in between.
LOAD_ATTEMPTS = 3
LOAD_RETRY_WAIT_S = 2.0


def schema_columns(pipeline: dlt.Pipeline) -> dict[str, set[str]]:
    schema = pipeline.schemas.get(SOURCE_NAME) if SOURCE_NAME in pipeline.schemas else None
    if schema is None:
        return {}
    return {
        name: set(table.get("columns", {}))
        for name, table in schema.tables.items()
        if not name.startswith("_dlt")
    }


def load_fresh(pipeline: dlt.Pipeline, data: Any) -> LoadInfo:
    """`pipeline.run(data)`, making sure `data` is what gets loaded.

    With packages pending from an earlier failure, dlt's `run` loads those and *ignores* the
    data it was given; so pending packages are loaded first, on their own.
    """
    if pipeline.has_pending_data:
        load_pending_packages(pipeline)
    return pipeline.run(data)


def load_pending_packages(pipeline: dlt.Pipeline) -> None:
    """Finish the packages an interrupted process left, and undo what resuming them can do.

    Two crash windows of dlt itself are closed here:
    - killed inside normalize's commit, a package is both extracted and normalized; normalizing
      it again fails for ever (`Directory not empty`). The rename had happened, so the
      extracted copy is the stale one and is dropped.
    - killed after a staging INSERT committed but before dlt recorded the job, a resumed package
      runs the INSERT again and the merge inserts both copies. Identical rows share `_dlt_id`;
      they are collapsed back to one.
    """
    normalized = set(pipeline.list_normalized_load_packages())
    extracted = pipeline._get_normalize_storage().extracted_packages
    for load_id in pipeline.list_extracted_load_packages():
        if load_id in normalized:
            logger.warning("dropping the stale extracted copy of normalized package %s", load_id)
            extracted.delete_package(load_id)
    pipeline.normalize()
    pipeline.load()
    collapse_reloaded_rows(pipeline)


def collapse_reloaded_rows(pipeline: dlt.Pipeline) -> None:
    """Rows loaded twice from one package are exact copies (same `_dlt_id`): keep one."""
    schema = pipeline.schemas.get(SOURCE_NAME) if SOURCE_NAME in pipeline.schemas else None
    if schema is None:
        return
    tables = [name for name in RELOADABLE_TABLES if name in schema.tables]
    with pipeline.sql_client() as client:
        for name in tables:
            table = client.make_qualified_table_name(name)
            try:
                doubled = client.execute_sql(
                    f"SELECT COUNT(*) FROM (SELECT _dlt_id FROM {table} "
                    "GROUP BY _dlt_id HAVING COUNT(*) > 1) d"
                )
            except DatabaseUndefinedRelation:
                continue
            if not doubled or not doubled[0][0]:
                continue
            logger.warning(
                "%s: collapsing %d rows loaded twice by a resumed package", name, doubled[0][0]
            )
            copies = client.make_qualified_table_name(f"{name}_reloaded_copies")
            with client.begin_transaction():
                client.execute_sql(f"DROP TABLE IF EXISTS {copies}")
                client.execute_sql(
                    f"CREATE TABLE {copies} AS SELECT DISTINCT * FROM {table} WHERE _dlt_id IN "
                    f"(SELECT _dlt_id FROM {table} GROUP BY _dlt_id HAVING COUNT(*) > 1)"
                )
                client.execute_sql(
                    f"DELETE FROM {table} WHERE _dlt_id IN (SELECT _dlt_id FROM {copies})"
                )
                client.execute_sql(f"INSERT INTO {table} SELECT * FROM {copies}")
                client.execute_sql(f"DROP TABLE {copies}")


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
        columns: FieldColumns,
        hold_back: bool,
    ) -> None:
        self.columns = columns
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
        self.load_error: str | None = None
        # (contact id, request id) of the records loaded since the run last took them: the
        # contacts are in `contact_archives` now, where the queue's SQL finds them.
        self.loaded: list[tuple[str | None, str]] = []

    async def add(self, outcome: ArchiveOutcome, *, journaled: bool = False) -> None:
        """Take one outcome; `journaled` when the call worker's journal already holds it."""
        if not journaled:
            self.journal.append(outcome)
        self.report.counts[outcome.status.value] += 1
        if outcome.status is Status.FAILED and len(self.report.failures) < MAX_FAILURES_KEPT:
            self.report.failures.append(
                (outcome.request.request_id, outcome.request.contact_id, outcome.error or "")
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
            self.journal.sync()
            await self._wait_for_load()
            chunk, self.buffer = self.buffer, []
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
        for attempt in range(1, LOAD_ATTEMPTS + 1):
            try:
                info: LoadInfo = await asyncio.get_running_loop().run_in_executor(
                    self._loader, load_fresh, self.pipeline, audit_trail(rows, self.hold_back)
                )
            except Exception as exc:
                if attempt == LOAD_ATTEMPTS:
                    logger.error("loading a chunk of %d outcomes failed: %s", len(chunk), exc)
                    self.load_error = f"{type(exc).__name__}: {exc}"
                    return
                wait = LOAD_RETRY_WAIT_S * attempt
                logger.warning("loading a chunk failed (%s); trying again in %.0f s", exc, wait)
                await asyncio.sleep(wait)
            else:
                logger.info("loaded %d outcomes (load ids %s)", len(chunk), info.loads_ids)
                self.observer.on_loaded(len(chunk))
                self.loaded.extend(
                    (outcome.request.contact_id, outcome.request.request_id)
                    for outcome in chunk
                    if outcome.record is not None
                )
                return

    def _note_fields(self, rows: AuditRows) -> None:
        """Record renamed keys, and under a held-back contract the fields kept out of columns."""
        report = self.report
        for field_row in rows.fields:
            if field_row["renamed"]:
                report.renamed_fields[field_row["field_key"]] = field_row["column_name"]
        if not self.hold_back:
            return
        existing = schema_columns(self.pipeline).get(ARCHIVES_TABLE)
        if existing is None:  # the first load creates the table with every column it brings
            return
        for row in rows.archives:
            for column in row.keys() - existing:
                if row[column] is not None and column not in report.held_back_fields:
                    report.held_back_fields.append(column)

    def take_loaded(self) -> list[tuple[str | None, str]]:
        """The records loaded since the last call (contact id, request id), once each."""
        loaded, self.loaded = self.loaded, []
        return loaded

    async def close(self) -> None:
        try:
            await self.flush()
            await self._wait_for_load()
        finally:
            self._loader.shutdown(wait=False)
