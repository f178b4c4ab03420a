"""One archive run, in the order that keeps every answer and never repeats an archive.

1. Take the dataset's lock; load what a crashed run left: dlt's pending packages first, then
   journal entries whose requests are still pending.
2. Read the pending requests with SQL; apply the guardrails before any call.
3. Archive concurrently; every outcome goes to the journal, then to a chunk; each full chunk is
   loaded in a worker thread while the next one is being archived.
4. Write the run's row in `archive_runs`, whatever happened, and hand back a report.
"""

import asyncio
import logging
import threading
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import dlt
import httpx
from dlt.common.pipeline import LoadInfo
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from connector import __version__
from connector.archiver import archive_concurrently
from connector.client import RouteraClient
from connector.config import RouteraSourceConfig
from connector.errors import (
    AuthenticationError,
    ConfigurationError,
    InvalidContactId,
    QueueError,
    RetriesExhausted,
    RunLockedError,
)
from connector.fields import FieldColumns
from connector.ids import validate_contact_id
from connector.journal import OutcomeJournal, leftover_files, read_outcomes
from connector.lock import RunLock, WarehouseLock
from connector.models import TERMINAL_STATUSES, ArchiveOutcome, ArchiveRequest, Status
from connector.queue import PendingQueue, PendingRequest, Shard
from connector.settings import (
    ARCHIVES_TABLE,
    FIELDS_TABLE,
    LOG_TABLE,
    QUEUE_TABLE,
    RUNS_TABLE,
    SOURCE_NAME,
)
from connector.source import AuditRows, audit_trail, build_audit_rows, run_history

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG_OR_AUTH = 2
EXIT_GUARDRAIL = 3
EXIT_INTERRUPTED = 130

# Pending requests are read this many at a time; independent of the load chunk size.
QUEUE_PAGE_SIZE = 2000
# Tables whose rows a resumed dlt package can insert twice (see collapse_reloaded_rows).
RELOADABLE_TABLES = (ARCHIVES_TABLE, LOG_TABLE, FIELDS_TABLE, RUNS_TABLE)
# While a load runs, outcomes keep arriving (journaled at once); past this many chunks waiting
# the archiving pauses until the load is done.
BACKPRESSURE_CHUNKS = 4
# A chunk's load is tried this many times, waiting LOAD_RETRY_WAIT_S * attempt in between.
LOAD_ATTEMPTS = 3
LOAD_RETRY_WAIT_S = 2.0
# How many planned requests a dry run keeps to show (the counts cover all of them).
DRY_RUN_SHOWN = 200


@dataclass
class RunOptions:
    dry_run: bool = False
    limit: int | None = None
    force: bool = False
    # A run that would archive more than this share of the active contacts is refused unless
    # forced: one GET /contacts?limit=1 tells how many are active. None turns the check off.
    max_share: float | None = 0.5
    queue_table: str = QUEUE_TABLE
    # Only the pending requests whose contact id hashes to this worker (see queue.Shard).
    shard: Shard | None = None


@dataclass
class PlannedRequest:
    request: ArchiveRequest
    action: str  # "archive", or the status it will get without a call
    note: str | None = None


@dataclass
class RunReport:
    run_id: str
    mode: str
    started_at: datetime
    base_url: str
    destination: str
    dataset: str
    finished_at: datetime | None = None
    pending_at_start: int | None = None
    guardrail: str = "not checked"
    counts: Counter[str] = field(default_factory=Counter)
    replayed_from_journal: int = 0
    loaded_pending_packages: bool = False
    new_columns: dict[str, list[str]] = field(default_factory=dict)
    # Record keys stored under another column than dlt's name for them (a collision avoided).
    renamed_fields: dict[str, str] = field(default_factory=dict)
    # Variant columns dlt added because a field's values changed type (`<field>__v_<type>`).
    type_changes: list[str] = field(default_factory=list)
    # Columns a frozen/discarding contract kept out of contact_archives (raw_response has them).
    held_back_fields: list[str] = field(default_factory=list)
    failures: list[tuple[str, str | None, str]] = field(default_factory=list)
    plan: list[PlannedRequest] = field(default_factory=list)
    plan_counts: Counter[str] = field(default_factory=Counter)
    exit_code: int = EXIT_OK
    outcome: str = "completed"
    error: str | None = None
    requests_sent: int = 0

    @property
    def handled(self) -> int:
        return sum(self.counts.values())

    def run_row(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "mode": self.mode,
            "exit_code": self.exit_code,
            "outcome": self.outcome,
            "pending_at_start": self.pending_at_start,
            "guardrail": self.guardrail,
            "new_columns": self.new_columns,
            "renamed_fields": self.renamed_fields,
            "type_changes": self.type_changes,
            "held_back_fields": self.held_back_fields,
            "counts": {status.value: self.counts.get(status.value, 0) for status in Status},
            "connector_version": __version__,
            "base_url": self.base_url,
            "destination": self.destination,
            "dataset": self.dataset,
            "error": self.error,
        }


class RunObserver:
    """Hooks for whoever shows progress; the library itself only logs."""

    def on_start(self, report: RunReport, to_handle: int) -> None: ...
    def on_outcome(self, outcome: ArchiveOutcome) -> None: ...
    def on_loaded(self, rows: int) -> None: ...


MAX_FAILURES_KEPT = 100


def new_run_id() -> str:
    """Sortable by time, unique without coordination."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid4().hex[:8]}"


def _schema_columns(pipeline: dlt.Pipeline) -> dict[str, set[str]]:
    schema = pipeline.schemas.get(SOURCE_NAME) if SOURCE_NAME in pipeline.schemas else None
    if schema is None:
        return {}
    return {
        name: set(table.get("columns", {}))
        for name, table in schema.tables.items()
        if not name.startswith("_dlt")
    }


class ArchiveRun:
    """One run against one pipeline (destination + dataset)."""

    def __init__(
        self,
        pipeline: dlt.Pipeline,
        config: RouteraSourceConfig,
        options: RunOptions | None = None,
        *,
        observer: RunObserver | None = None,
        stop: threading.Event | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.config = config
        self.options = options or RunOptions()
        self.observer = observer or RunObserver()
        self.stop = stop or threading.Event()
        self.transport = transport
        self.report = RunReport(
            run_id=new_run_id(),
            mode="dry-run" if self.options.dry_run else "run",
            started_at=datetime.now(UTC),
            base_url=config.base_url,
            destination=pipeline.destination.destination_name if pipeline.destination else "?",
            dataset=pipeline.dataset_name,
        )
        self._journal_dir = Path(pipeline.working_dir) / "journal"
        self.columns = FieldColumns()
        self._to_call = 0
        # Under a frozen or discarding schema contract new fields stay in raw_response only.
        self.hold_back = config.schema_contract != "evolve"
        self._columns_before: dict[str, set[str]] = {}

    # ------------------------------------------------------------------ the run
    def execute(self) -> RunReport:
        """Run once; every error ends in the report (and its exit code), none escapes."""
        report = self.report
        lock = RunLock(Path(self.pipeline.working_dir) / "run.lock", report.run_id)
        shard = self.options.shard
        warehouse_lock = WarehouseLock(
            self.pipeline, report.run_id, None if shard is None else f"{shard.index}/{shard.count}"
        )
        try:
            lock.acquire()
            try:
                warehouse_lock.acquire()
            except BaseException:
                lock.release()
                raise
        except RunLockedError as exc:
            # Another process owns the pipeline folder: touch nothing, not even archive_runs.
            self._fail(EXIT_FAILED, "locked: nothing was done", str(exc))
            report.finished_at = datetime.now(UTC)
            return report
        except Exception as exc:  # the warehouse did not answer the lock query
            self._fail(
                EXIT_FAILED,
                "stopped: the destination is unreachable; nothing was done",
                f"{type(exc).__name__}: {exc}",
            )
            report.finished_at = datetime.now(UTC)
            return report
        try:
            try:
                self._execute_locked()
            except (ConfigurationError, AuthenticationError) as exc:
                self._fail(
                    EXIT_CONFIG_OR_AUTH, "stopped: configuration or authentication", str(exc)
                )
            except QueueError as exc:
                self._fail(EXIT_CONFIG_OR_AUTH, "stopped: queue", str(exc))
            except KeyboardInterrupt:
                self._fail(
                    EXIT_INTERRUPTED,
                    "aborted",
                    "aborted by a second interrupt; the next run recovers answers in flight",
                )
            except Exception as exc:
                logger.exception("the run stopped on an unexpected error")
                self._fail(EXIT_FAILED, "stopped: error", f"{type(exc).__name__}: {exc}")
            self._finish_report()
        finally:
            warehouse_lock.release()
            lock.release()
        return report

    def _execute_locked(self) -> None:
        report = self.report
        self._columns_before = _schema_columns(self.pipeline)
        if not self.options.dry_run:
            self._finish_previous_run()
        queue = PendingQueue(
            self.pipeline, queue_table=self.options.queue_table, shard=self.options.shard
        )
        tally = queue.tally()
        pending = tally.pending
        report.pending_at_start = pending
        to_handle = pending if self.options.limit is None else min(pending, self.options.limit)
        self._to_call = (
            tally.to_call if self.options.limit is None else min(tally.to_call, self.options.limit)
        )
        if self.options.dry_run:
            self._plan(queue)
            report.guardrail = self._max_archives_verdict(to_handle)
            report.outcome = "dry run: nothing was called"
            return
        refusal = self._max_archives_verdict(to_handle)
        if refusal.startswith("refused"):
            self._refuse(refusal)
            return
        asyncio.run(self._archive(queue, to_handle))

    def _fail(self, exit_code: int, outcome: str, error: str) -> None:
        report = self.report
        report.exit_code = max(report.exit_code, exit_code)
        report.outcome = outcome
        report.error = error

    def _refuse(self, verdict: str) -> None:
        self.report.guardrail = verdict
        self.report.exit_code = EXIT_GUARDRAIL
        self.report.outcome = "refused by guardrail: nothing was called"

    def _max_archives_verdict(self, to_handle: int) -> str:
        limit = self.config.max_archives
        if to_handle <= limit:
            return f"passed: {to_handle} to handle, max_archives {limit}"
        if self.options.force:
            return f"forced: {to_handle} to handle over max_archives {limit}"
        return (
            f"refused: {to_handle} requests to handle, more than max_archives {limit}; "
            "check the queue, then raise --max-archives or pass --force"
        )

    async def _share_verdict(self, client: RouteraClient, to_call: int) -> str | None:
        """Refuse (return a reason) when the run would archive too much of the account."""
        share = self.options.max_share
        if share is None or to_call == 0 or self.options.force:
            return None
        answer = await client.list_contacts(archived=False, limit=1, offset=0)
        try:
            active = int(answer.json()["pagination"]["count"])
        except (ValueError, KeyError, TypeError):
            logger.warning("could not read the number of active contacts; share check skipped")
            return None
        if active > 0 and to_call > share * active:
            return (
                f"refused: this run would archive {to_call} of {active} active contacts, more "
                f"than {share:.0%}; pass --force if that is intended"
            )
        return None

    # ------------------------------------------------------------- recovery
    def _finish_previous_run(self) -> None:
        """Load what an interrupted run left, before anything decides what is pending."""
        pipeline = self.pipeline
        if pipeline.has_pending_data:
            logger.info("loading the packages a previous run left unloaded")
            load_pending_packages(pipeline)
            self.report.loaded_pending_packages = True
        # After the pending packages: they may carry field assignments of their own.
        self.columns = FieldColumns(
            self._known_field_columns(),
            max_length=pipeline.destination.capabilities().max_column_identifier_length,
        )
        for path in leftover_files(self._journal_dir):
            run_id = path.stem
            outcomes = [o for o in read_outcomes(path) if o.status.is_terminal]
            done = self._terminal_request_ids([o.request.request_id for o in outcomes])
            missing = [
                o.model_copy(
                    update={
                        "recovered": o.record is not None or o.recovered,
                        "record_source": "journal" if o.record else o.record_source,
                    }
                )
                for o in outcomes
                if o.request.request_id not in done
            ]
            if missing:
                logger.warning(
                    "run %s was interrupted: loading %d outcomes from its journal",
                    run_id,
                    len(missing),
                )
                rows = build_audit_rows(missing, run_id, self.columns)
                load_fresh(pipeline, audit_trail(rows, self.hold_back))
                self.report.replayed_from_journal += len(missing)
            path.unlink()

    def _known_field_columns(self) -> dict[str, str]:
        try:
            with self.pipeline.sql_client() as client:
                table = client.make_qualified_table_name(FIELDS_TABLE)
                rows = client.execute_sql(f"SELECT field_key, column_name FROM {table}")
        except DatabaseUndefinedRelation:
            return {}
        return {str(key): str(column) for key, column in rows or ()}

    def _terminal_request_ids(self, request_ids: list[str]) -> set[str]:
        if not request_ids:
            return set()
        done: set[str] = set()
        statuses = ", ".join(f"'{s}'" for s in TERMINAL_STATUSES)
        try:
            with self.pipeline.sql_client() as client:
                log = client.make_qualified_table_name(LOG_TABLE)
                for start in range(0, len(request_ids), 500):
                    batch = request_ids[start : start + 500]
                    marks = ", ".join(["%s"] * len(batch))
                    rows = client.execute_sql(
                        f"SELECT request_id FROM {log} "
                        f"WHERE status IN ({statuses}) AND request_id IN ({marks})",
                        *batch,
                    )
                    done.update(str(row[0]) for row in rows or ())
        except DatabaseUndefinedRelation:
            return set()
        return done

    # -------------------------------------------------------------- planning
    def _classify(self, item: PendingRequest, handled: dict[str, str]) -> ArchiveOutcome | None:
        """The outcome a request gets without any call, or None when it needs the API."""
        request = item.request
        if item.contact_count > 1:
            return ArchiveOutcome(
                request=request,
                status=Status.INVALID,
                error=f"request_id is used for {item.contact_count} different contacts in the "
                "queue; give each request its own id",
            )
        try:
            contact_id = validate_contact_id(request.contact_id)
        except InvalidContactId as exc:
            return ArchiveOutcome(request=request, status=Status.INVALID, error=exc.reason)
        if item.archived_under is not None:
            if item.archived_under == request.request_id:
                return ArchiveOutcome(
                    request=request,
                    status=Status.ARCHIVED,
                    error="its record was already in contact_archives; only the log row was "
                    "missing",
                )
            return ArchiveOutcome(
                request=request,
                status=Status.DUPLICATE,
                duplicate_of=item.archived_under,
                error=f"contact already archived under request {item.archived_under}",
            )
        first = handled.get(contact_id)
        if first is None and item.first_request_id != request.request_id:
            first = item.first_request_id
        if first is not None:
            return ArchiveOutcome(
                request=request,
                status=Status.DUPLICATE,
                duplicate_of=first,
                error=f"same contact as request {first}",
            )
        handled[contact_id] = request.request_id
        return None

    def _plan(self, queue: PendingQueue) -> None:
        handled: dict[str, str] = {}
        report = self.report
        taken = 0
        for page in queue.pages(QUEUE_PAGE_SIZE):
            for item in page:
                if self.options.limit is not None and taken >= self.options.limit:
                    return
                taken += 1
                outcome = self._classify(item, handled)
                action = "archive" if outcome is None else outcome.status.value
                report.plan_counts[action] += 1
                if len(report.plan) < DRY_RUN_SHOWN:
                    report.plan.append(
                        PlannedRequest(
                            item.request, action, None if outcome is None else outcome.error
                        )
                    )

    # ------------------------------------------------------------- archiving
    async def _archive(self, queue: PendingQueue, to_handle: int) -> None:
        report = self.report
        journal = OutcomeJournal(self._journal_dir, report.run_id)
        sink = ChunkSink(
            self.pipeline,
            journal,
            report,
            self.config.chunk_size,
            self.observer,
            columns=self.columns,
            hold_back=self.hold_back,
        )
        self.observer.on_start(report, to_handle)
        handled: dict[str, str] = {}
        client = RouteraClient(self.config.client_config(), transport=self.transport)
        try:
            verdict = await self._share_verdict(client, self._to_call)
            if verdict is not None:
                self._refuse(verdict)
                return
            report.guardrail = self._max_archives_verdict(to_handle)

            async def needing_calls() -> AsyncIterator[ArchiveRequest]:
                pages = iter(queue.pages(QUEUE_PAGE_SIZE))
                taken = 0
                while not self._should_stop(sink):
                    page = await asyncio.to_thread(next, pages, None)
                    if page is None:
                        return
                    for item in page:
                        if self._should_stop(sink) or (
                            self.options.limit is not None and taken >= self.options.limit
                        ):
                            return
                        taken += 1
                        outcome = self._classify(item, handled)
                        if outcome is None:
                            yield item.request
                        else:
                            await sink.add(outcome)

            try:
                async for outcome in archive_concurrently(
                    client, needing_calls(), workers=self.config.concurrency
                ):
                    await sink.add(outcome)
            except AuthenticationError as exc:
                self._fail(EXIT_CONFIG_OR_AUTH, "stopped: authentication", str(exc))
            except RetriesExhausted as exc:  # only the share check's list call can raise it
                self._fail(EXIT_FAILED, "stopped: API unavailable", exc.reason)
            await sink.close()
            if sink.load_error is None:
                journal.discard()
        finally:
            report.requests_sent = client.requests_sent
            await client.aclose()
            journal.close()
        if sink.load_error is not None:
            self._fail(
                EXIT_FAILED,
                "stopped: load failed",
                f"{sink.load_error}; the outcomes are kept in the journal and the next run loads "
                "them",
            )
        elif self.stop.is_set() and report.exit_code == EXIT_OK:
            self._fail(
                EXIT_INTERRUPTED, "interrupted", "stopped on request; the rest stays pending"
            )

    def _should_stop(self, sink: "ChunkSink") -> bool:
        return self.stop.is_set() or sink.load_error is not None

    # ------------------------------------------------------------ the report
    def _finish_report(self) -> None:
        report = self.report
        report.finished_at = datetime.now(UTC)
        after = _schema_columns(self.pipeline)
        report.new_columns = {
            table: sorted(columns - self._columns_before.get(table, set()))
            for table, columns in after.items()
            if columns - self._columns_before.get(table, set()) and table in self._columns_before
        }
        report.type_changes = sorted(
            f"{table}.{column}"
            for table, columns in report.new_columns.items()
            for column in columns
            if "__v_" in column
        )
        if report.counts.get(Status.FAILED.value) and report.exit_code == EXIT_OK:
            report.exit_code = EXIT_FAILED
            report.outcome = "completed with failures"
        if (
            report.held_back_fields
            and self.config.schema_contract == "freeze"
            and report.exit_code == EXIT_OK
        ):
            report.exit_code = EXIT_FAILED
            report.outcome = "completed; the frozen schema held new fields back"
        try:
            load_fresh(self.pipeline, run_history([report.run_row()]))
        except Exception as exc:  # the run's own account must not hide the run's result
            logger.error("could not write the run row to archive_runs: %s", exc)


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
        self.load_error: str | None = None

    async def add(self, outcome: ArchiveOutcome) -> None:
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
        """Start loading what is buffered, after the load in progress (one at a time)."""
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
                info: LoadInfo = await asyncio.to_thread(
                    load_fresh, self.pipeline, audit_trail(rows, self.hold_back)
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
                return

    def _note_fields(self, rows: AuditRows) -> None:
        """Record renamed keys, and under a held-back contract the fields kept out of columns."""
        report = self.report
        for field_row in rows.fields:
            if field_row["renamed"]:
                report.renamed_fields[field_row["field_key"]] = field_row["column_name"]
        if not self.hold_back:
            return
        existing = _schema_columns(self.pipeline).get(ARCHIVES_TABLE)
        if existing is None:  # the first load creates the table with every column it brings
            return
        for row in rows.archives:
            for column in row.keys() - existing:
                if row[column] is not None and column not in report.held_back_fields:
                    report.held_back_fields.append(column)

    async def close(self) -> None:
        await self.flush()
        await self._wait_for_load()
