"""One archive run, in the order that keeps every answer and never repeats an archive.

1. Take the dataset's lock; load what a crashed run left: dlt's pending packages first, then
   journal entries whose requests are still pending.
2. Read the pending requests with SQL; apply the guardrails before any call.
3. Archive concurrently; every outcome goes to the journal, then to a chunk; each full chunk is
   loaded in a worker thread while the next one is being archived.
4. Write the run's row in `archive_runs`, whatever happened, and hand back a report.
"""

import asyncio
import contextlib
import logging
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import dlt
import httpx
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from routera_archive import timeline
from routera_archive.calls.callers import (
    SpawnedWorker,
    WorkerCaller,
    open_caller,
    spawn_call_worker,
)
from routera_archive.calls.process import EarlyWorker
from routera_archive.config import RouteraSourceConfig, as_resolved
from routera_archive.dataset.chain import EarlyDigests, link_run
from routera_archive.dataset.fields import FieldColumnsByType
from routera_archive.dataset.kept_open import KeptOpen
from routera_archive.dataset.loading import (
    collapse_reloaded_rows,
    load_fresh,
    repair_torn_schema_writes,
    resume_pending_packages,
    schema_columns,
    stored_columns,
)
from routera_archive.dataset.lock import RunLock, dataset_lock
from routera_archive.dataset.outcomes import is_terminal, logged_id, logged_type
from routera_archive.dataset.queue import (
    Archived,
    Identity,
    PendingQueue,
    PendingRequest,
    PendingTally,
    Shard,
    settled_without_call,
)
from routera_archive.dataset.redact import (
    CLEANUP_MARKER,
    RedactionRequest,
    finish_redactions,
    redact,
)
from routera_archive.dataset.rows import RequestKey, request_key
from routera_archive.dataset.tables import build_audit_rows, run_history
from routera_archive.errors import (
    AuthenticationError,
    CallWorkerError,
    ExitCode,
    GuardrailRefused,
    LocalStorageError,
    LockLostError,
    QueueError,
    RetriesExhausted,
    RouteraArchiveError,
    RunLockedError,
)
from routera_archive.http.client import RouteraClient
from routera_archive.journal import (
    JournaledSnapshot,
    OutcomeJournal,
    journal_run_id,
    leftover_files,
    read_outcomes,
    read_snapshots,
)
from routera_archive.models import ArchiveOutcome, ArchiveRequest, Status, with_journaled_snapshot
from routera_archive.names import FIELDS_TABLE, LOG_TABLE, RUNS_TABLE
from routera_archive.objects import ObjectType
from routera_archive.run.chunks import ChunkSink, load_rows
from routera_archive.run.delivery import RowDelivery
from routera_archive.run.failures import is_unexpected, stopped_by, typed_error
from routera_archive.run.guardrails import (
    ListObjects,
    max_archives_verdict,
    probe_accounts,
    share_verdict,
)
from routera_archive.run.lock_watch import LockWatch
from routera_archive.run.result import (
    PlannedRequest,
    RunObserver,
    RunReport,
    new_run_id,
)

logger = logging.getLogger(__name__)

# How long a load waits for the lock watch to take a just-lost lock again (a PostgreSQL
# session to open, under load): past it, the load is refused and the journal keeps it.
LOCK_REGAIN_WAIT_S = 30.0

# A record as the run remembers it: its type as queued and its id.
RecordKey = tuple[str, str]

# Pending requests are read this many at a time; independent of the load chunk size.
QUEUE_PAGE_SIZE = 2000
# How many planned requests a dry run keeps to show (the counts cover all of them).
DRY_RUN_SHOWN = 200


@dataclass
class RunOptions:
    dry_run: bool = False
    limit: int | None = None
    force: bool = False
    # Only the pending requests whose contact id hashes to this worker (see queue.Shard).
    shard: Shard | None = None


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
        clock: Callable[[], datetime] | None = None,
        delivery: RowDelivery | None = None,
        early_worker: EarlyWorker | None = None,
    ) -> None:
        self.pipeline = pipeline
        # A run inside a dlt user's pipeline.run(): its rows go to that extract, not to loads
        # of its own (see run.delivery); None for the CLI's run.
        self.delivery = delivery
        # A call worker process started before the run (the CLI starts one before it imports
        # dlt): configured as the run's worker, or ended when the run makes no calls of its own.
        self._early_worker = early_worker or EarlyWorker(None)
        # What `redact_after_days` counts from (tests move it).
        self.clock = clock or (lambda: datetime.now(UTC))
        self.config = as_resolved(config)
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
            shard=None if self.options.shard is None else str(self.options.shard),
            pipeline_name=pipeline.pipeline_name,
            pipeline_folder=str(pipeline.working_dir),
        )
        self._journal_dir = Path(pipeline.working_dir) / "journal"
        # Snapshots crashed runs journaled before DELETEs whose outcomes were lost.
        self._carried: dict[RequestKey, JournaledSnapshot] = {}
        self.columns = FieldColumnsByType()
        self._to_call = 0
        self._to_call_by_type: dict[ObjectType, int] = {}
        # Under a frozen or discarding schema contract new fields stay in raw_response only.
        self.hold_back = config.schema_contract != "evolve"
        self._columns_before: dict[str, set[str]] = {}
        # The journals of earlier runs this run loaded (their run ids and files): removed once
        # this run is linked into the hash chain.
        self._replayed: list[tuple[str, Path]] = []
        # This run's rows digested as its chunks loaded (`ChunkSink.early`), for its link.
        self._early: EarlyDigests | None = None
        self._worker: SpawnedWorker | None = None
        # Held through the run's start and its end (see dataset.kept_open).
        self._kept_open = KeptOpen(pipeline)
        # Set once both locks are held; asked before every DELETE (see run.lock_watch).
        self._lock_watch: LockWatch | None = None
        # The error the run stopped on, if any.
        self._failed_with: RouteraArchiveError | None = None
        # Handed to an extract from a crashed run's journal: in the destination only after this
        # run, so the queue's SQL still finds these requests pending (see `needing_calls`).
        self._delivered: set[RequestKey] = set()
        self._delivered_records: dict[RecordKey, str] = {}

    @property
    def failed_with(self) -> RouteraArchiveError | None:
        """The error the run stopped on (its report holds its words and exit code)."""
        return self._failed_with

    # ------------------------------------------------------------------ the run
    def execute(self) -> RunReport:
        """Run once; every error ends in the report (and its exit code), none escapes."""
        self._worker = self._spawn_worker()
        timeline.mark("worker-spawned")
        try:
            return self._execute()
        finally:
            if self._worker is not None:  # not attached: the run ended before calling
                self._worker.abandon()
                self._worker = None

    def _execute(self) -> RunReport:
        report = self.report
        lock = RunLock(Path(self.pipeline.working_dir) / "run.lock", report.run_id)
        shard = self.options.shard
        shard_label = None if shard is None else str(shard)
        try:
            lock.acquire()
            try:
                shared_lock = dataset_lock(self.pipeline, report.run_id, shard_label)
                shared_lock.acquire()
            except BaseException:
                lock.release()
                raise
        except Exception as exc:
            # Another process owns the dataset, or the destination cannot be reached: touch
            # nothing, not even archive_runs.
            error = typed_error(exc)
            locked = isinstance(error, RunLockedError)
            self._fail(error, "locked" if locked else f"{stopped_by(error)}; nothing was done")
            report.finished_at = datetime.now(UTC)
            return report
        watch = self._lock_watch = LockWatch([lock, shared_lock]).start()
        timeline.mark("locked")
        self._kept_open.hold()
        try:
            try:
                self._execute_locked()
            except KeyboardInterrupt:
                self._fail_code(
                    ExitCode.INTERRUPTED,
                    "aborted",
                    "aborted by a second interrupt; the next run recovers answers in flight",
                )
            except Exception as exc:
                error = typed_error(exc)
                if is_unexpected(error):  # its traceback, for `--debug`
                    logger.debug("the run stopped on an unexpected error", exc_info=exc)
                self._fail(error, stopped_by(error))
            self._finish_report()
            self._kept_open.release()  # a redaction may rewrite the DuckDB file
            self._apply_retention()
        finally:
            self._kept_open.release()
            watch.stop()

            def release() -> None:
                shared_lock.release()
                lock.release()
                timeline.mark("released")

            # Handed to an extract, its rows are loaded after the run: the extract's owner
            # releases the locks once they are (see run.delivery).
            if self.delivery is None or not self.delivery.keep_locks(release):
                release()
        return report

    def _spawn_worker(self) -> SpawnedWorker | None:
        """The call worker, started first so that its start-up overlaps the lock, recovery and
        the tally. It calls nothing until the run sends it requests; unused, it is ended."""
        if self.options.dry_run or self.transport is not None or not self.config.call_worker:
            self._early_worker.abandon()
            return None
        try:
            return spawn_call_worker(
                self.config.client_config(),
                journal_dir=self._journal_dir,
                run_id=self.report.run_id,
                sync_every=self.config.chunk_size,
                process=self._early_worker.take(),
            )
        except OSError as exc:  # no process could be started: the calls stay in this one
            logger.warning("could not start the call worker (%s); calling in-process", exc)
            return None

    def _execute_locked(self) -> None:
        report = self.report
        if self.delivery is None:
            # Before any dlt step lists the schemas. Handed to an extract, the run comes after
            # dlt's sync, which a torn write fails: the source repairs one as it is made.
            repair_torn_schema_writes(self.pipeline)
        self._columns_before = schema_columns(self.pipeline)
        if not self.options.dry_run:
            self._finish_previous_run()
        timeline.mark("recovered")
        queue = PendingQueue(
            self.pipeline, queue_table=self.config.queue_table, shard=self.options.shard
        )
        # A dry run reads the queue once, for its plan and the guardrails' counts together.
        tally = self._plan(queue) if self.options.dry_run else queue.tally(self._delivered)
        timeline.mark("tallied")
        pending = tally.pending
        report.pending_at_start = pending
        to_handle = pending if self.options.limit is None else min(pending, self.options.limit)
        self._to_call = self._within_limit(tally.to_call)
        # With a limit, each type's figure is at most the limit: the first `limit` requests
        # may hold fewer of a type, never more, so the share check errs on the side of refusing.
        self._to_call_by_type = {
            kind: self._within_limit(count) for kind, count in tally.to_call_by_type.items()
        }
        if self.options.dry_run:
            try:
                verdict = self._dry_run_verdict(to_handle)
            except RouteraArchiveError as exc:
                self._fail(exc, f"dry run: {stopped_by(exc)}", f"{_api_context(exc)}{exc}")
                return
            report.guardrail = verdict
            if verdict.startswith("refused"):
                self._fail(GuardrailRefused(verdict), "dry run: a real run would be refused")
            else:
                report.outcome = "dry run: nothing was archived"
            return
        refusal = self._max_archives_verdict(to_handle)
        if refusal.startswith("refused"):
            self._refuse(refusal)
            return
        asyncio.run(self._archive(queue, to_handle))

    def _within_limit(self, count: int) -> int:
        return count if self.options.limit is None else min(count, self.options.limit)

    def _fail(self, error: RouteraArchiveError, outcome: str, message: str | None = None) -> None:
        """End the run's account with `error`: its exit code, and its message unless one is
        given."""
        self._failed_with = error
        self._fail_code(error.exit_code, outcome, str(error) if message is None else message)

    def _fail_code(self, exit_code: int, outcome: str, message: str) -> None:
        report = self.report
        report.exit_code = max(report.exit_code, exit_code)
        report.outcome = outcome
        report.error = message

    def _refuse(self, verdict: str) -> None:
        self.report.guardrail = verdict
        self._fail(GuardrailRefused(verdict), "refused by guardrail: nothing was called")

    def _max_archives_verdict(self, to_handle: int) -> str:
        return max_archives_verdict(self.config, to_handle, force=self.options.force)

    async def _share_verdict(self, list_objects: ListObjects) -> str | None:
        """The run's first calls, one list call per type with requests to call, all before any
        DELETE: the share check per type (see guardrails.probe_account, which also stops a run
        whose base_url is not Routera's, or whose `properties` of a type Routera refuses)."""
        if self._to_call == 0:
            return None
        to_call = self._to_call_by_type
        accounts = await probe_accounts(list_objects, to_call, self.config.properties_by_type)
        return share_verdict(self.config, accounts, to_call, force=self.options.force)

    def _dry_run_verdict(self, to_handle: int) -> str:
        """The verdict a real run would reach, the share check's one read-only call included."""
        verdict = self._max_archives_verdict(to_handle)
        if verdict.startswith("refused"):
            return verdict

        async def share() -> str | None:
            async with RouteraClient(self.config.client_config(), transport=self.transport) as c:
                return await self._share_verdict(c.list_objects)

        return asyncio.run(share()) or verdict

    # ------------------------------------------------------------- recovery
    def _finish_previous_run(self) -> None:
        """Load what an interrupted run left, before anything decides what is pending."""
        pipeline = self.pipeline
        if self.delivery is not None:
            # In a user's pipeline.run(), dlt resumed any pending package before the extract
            # began, and may have loaded rows twice doing so (see load_pending_packages).
            collapse_reloaded_rows(pipeline)
        elif pipeline.has_pending_data:
            logger.info("loading the packages a previous run left unloaded")
            if resume_pending_packages(pipeline):
                self.report.aborted_packages += 1
            self.report.loaded_pending_packages = True
        self._finish_redactions()
        # After the pending packages: they may carry field assignments of their own.
        self.columns = FieldColumnsByType(
            self._known_field_columns(),
            max_length=pipeline.destination.capabilities().max_column_identifier_length,
        )
        for path in leftover_files(self._journal_dir):
            run_id = journal_run_id(path)
            self._carry_snapshots(path)
            outcomes = [o for o in read_outcomes(path) if o.status.is_terminal]
            done = self._settled_requests([request_key(o.request) for o in outcomes])
            # A terminal log row is not enough for an outcome with a record: the trail must hold
            # the record too (a package can load the log's rows and fail on the record's).
            held = self._in_trail([_record_key(o) for o in outcomes if o.record])
            missing = [
                o.model_copy(
                    update={
                        "recovered": o.record is not None or o.recovered,
                        "record_source": "journal" if o.record else o.record_source,
                    }
                )
                for o in outcomes
                if request_key(o.request) not in done
                or (o.record is not None and _record_key(o) not in held)
            ]
            if missing:
                logger.warning(
                    "run %s was interrupted: loading %d outcomes from its journal",
                    run_id,
                    len(missing),
                )
                rows = build_audit_rows(missing, run_id, self.columns)
                if self.delivery is not None:
                    self.delivery.audit_rows(rows, self.hold_back)
                    self._delivered.update(request_key(o.request) for o in missing)
                    self._delivered_records.update(
                        ((o.request.type_name, o.request.object_id), o.request.request_id)
                        for o in missing
                        if o.record is not None and o.request.object_id is not None
                    )
                else:
                    _, held_back = load_rows(pipeline, rows, self.hold_back)
                    if held_back is not None:
                        self.report.note_held_back([str(r["id"]) for r in rows.records], held_back)
                self.report.replayed_from_journal += len(missing)
            elif self.delivery is not None:
                # Every outcome of it is in the destination; a run that links nothing (the
                # source's) has no link to wait for before removing it.
                path.unlink(missing_ok=True)
                continue
            self._replayed.append((run_id, path))

    def _carry_snapshots(self, path: Path) -> None:
        """Snapshots a crashed run journaled for requests that have no outcome yet: this run
        journals them again (another crash keeps them) and completes the record it reads back
        with them (`_with_carried_snapshot`)."""
        outcome_keys = {request_key(o.request) for o in read_outcomes(path)}
        snapshots = {
            request_key(s.request): s
            for s in read_snapshots(path)
            if request_key(s.request) not in outcome_keys
        }
        settled = self._settled_requests(list(snapshots))
        self._carried.update({k: s for k, s in snapshots.items() if k not in settled})

    def _with_carried_snapshot(self, outcome: ArchiveOutcome) -> ArchiveOutcome:
        carried = self._carried.pop(request_key(outcome.request), None)
        if carried is None or outcome.record_source != "get":
            return outcome
        return with_journaled_snapshot(outcome, carried.body)

    def _in_trail(self, records: list[tuple[ObjectType, str]]) -> set[tuple[ObjectType, str]]:
        """Which of these records (type, id) their types' audit tables hold."""
        found: set[tuple[ObjectType, str]] = set()
        for kind in ObjectType:
            ids = sorted({object_id for of_kind, object_id in records if of_kind is kind})
            if ids:
                rows = self._select_where_in(kind.table, "id", "", ids)
                found.update((kind, str(row[0])) for row in rows)
        return found

    def _select_where_in(
        self, table_name: str, columns: str, condition: str, values: list[str]
    ) -> list[tuple[object, ...]]:
        """`SELECT columns FROM table WHERE condition column IN values`, in batches of 500 (the
        first of `columns` is the one matched); no rows when the table does not exist yet."""
        column = columns.split(",")[0].strip()
        found: list[tuple[object, ...]] = []
        try:
            with self.pipeline.sql_client() as client:
                table = client.make_qualified_table_name(table_name)
                for start in range(0, len(values), 500):
                    batch = values[start : start + 500]
                    marks = ", ".join(["%s"] * len(batch))
                    rows = client.execute_sql(
                        f"SELECT {columns} FROM {table} l WHERE {condition}l.{column} IN ({marks})",
                        *batch,
                    )
                    found.extend(tuple(row) for row in rows or ())
        except DatabaseUndefinedRelation:
            return []
        return found

    def _known_field_columns(self) -> dict[tuple[ObjectType, str], str]:
        """The key -> column assignments `custom_fields` holds, per type (a row written before
        types existed is a contact's)."""
        with self.pipeline.sql_client() as client:
            columns = stored_columns(client, FIELDS_TABLE)
            if columns is None:
                return {}
            table = client.make_qualified_table_name(FIELDS_TABLE)
            kind = "object_type" if "object_type" in columns else "NULL"
            rows = client.execute_sql(f"SELECT {kind}, field_key, column_name FROM {table}")
        known: dict[tuple[ObjectType, str], str] = {}
        for object_type, key, column in rows or ():
            try:
                of_kind = ObjectType.CONTACTS if object_type is None else ObjectType(object_type)
            except ValueError:  # not a row this connector wrote: it assigns no column
                logger.warning("ignoring a custom_fields row of type %r", object_type)
                continue
            known[(of_kind, str(key))] = str(column)
        return known

    def _log_is_typed(self) -> bool:
        """Whether `archive_log` has `object_type` and `object_id` (not until this release
        first loads a dataset of the previous one)."""
        with self.pipeline.sql_client() as client:
            columns = stored_columns(client, LOG_TABLE) or set()
        return {"object_type", "object_id"} <= columns

    def _settled_requests(self, keys: list[RequestKey]) -> set[RequestKey]:
        """Which of these requests (id, type, record id as the log holds them) `archive_log`
        settled."""
        if not keys:
            return set()
        request_ids = sorted({request_id for request_id, _, _ in keys})
        typed = self._log_is_typed()
        rows = self._select_where_in(
            LOG_TABLE,
            f"request_id, {logged_type('l', typed=typed)}, {logged_id('l', typed=typed)}",
            f"{is_terminal('l')} AND ",
            request_ids,
        )
        found = {
            (str(rid), str(kind), None if oid is None else str(oid)) for rid, kind, oid in rows
        }
        return found & set(keys)

    # -------------------------------------------------------------- planning
    def _classify(
        self, item: PendingRequest, handled: dict[RecordKey, str] | None
    ) -> ArchiveOutcome | None:
        """The outcome a request gets without any call, or None when it needs the API (the
        decision is `settle_without_call`'s)."""
        request = item.request
        identity = Identity(
            request.request_id, item.queued, item.first_request_id, item.archived_under
        )
        settled = settle_without_call(identity, handled)
        if settled is None:
            return None
        return ArchiveOutcome(
            request=request,
            status=settled.status,
            error=settled.error,
            duplicate_of=settled.duplicate_of,
        )

    def _plan(self, queue: PendingQueue) -> PendingTally:
        """The dry run's plan, and the counts its guardrails take, from one run of one query.

        The plan covers what the run would handle (the first `limit` requests, in the run's
        order); the counts cover every pending request, as `PendingQueue.tally` does for a run,
        so that the verdict is the one the run would reach. Both come from
        `queue.settled_without_call`, the rule `settle_without_call` words; only the shown
        requests become objects (see `PendingQueue.summary`).
        """
        report = self.report
        summary = queue.summary(self.options.limit, DRY_RUN_SHOWN)
        for status, count in summary.planned.items():
            report.plan_counts["archive" if status is None else status.value] += count
        for row in summary.shown:
            settled = settle_without_call(PendingQueue.identity(row), None)
            action = "archive" if settled is None else settled.status.value
            request = PendingQueue.to_pending(row).request
            report.plan.append(
                PlannedRequest(request, action, None if settled is None else settled.error)
            )
        return summary.tally()

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
            may_load=self._may_load,
            delivery=self.delivery,
        )
        self.observer.on_start(report, to_handle)
        # Records this extract already holds count as sent: another request for one of them is
        # its duplicate.
        handled: dict[RecordKey, str] = dict(self._delivered_records)
        if self._worker is not None and self._to_call == 0 and not self._carried:
            # Nothing to call (what the queue holds is settled without the API): not worth
            # waiting for the worker's start-up. A request added to the queue since the tally
            # is of no type the run checked, and waits for the next run (`_checked_at_start`).
            self._worker.abandon()
            self._worker = None
        caller = await open_caller(
            self.config.client_config(), transport=self.transport, worker=self._worker
        )
        self._worker = None  # attached: the caller ends it from now on (until then, execute)
        timeline.mark("caller-open")
        if isinstance(caller, WorkerCaller):
            journal.adopt(caller.journal_path)
        for carried in self._carried.values():  # kept again, until their outcomes are
            journal.append_snapshot(carried)
        # Journals stay for the next run when outcomes may be in them and not in the destination.
        keep_journal = False
        try:
            # Made here, before any load starts: see PendingQueue.pages. Its first page is read
            # beside the run's first calls (it needs nothing of theirs), and waited for before
            # anything else touches the destination; its error, if any, is raised where the
            # page is taken, as before.
            pages = queue.pages(QUEUE_PAGE_SIZE)
            first_page = asyncio.ensure_future(asyncio.to_thread(next, pages, None))
            try:
                verdict = await self._share_verdict(caller.list_objects)
            except RouteraArchiveError as exc:  # the run's first call: nothing was archived
                self._fail(exc, stopped_by(exc), f"{_api_context(exc)}{exc}; nothing was archived")
                return
            finally:
                await asyncio.wait([first_page])
            timeline.mark("probed")
            if verdict is not None:
                self._refuse(verdict)
                return
            report.guardrail = self._max_archives_verdict(to_handle)

            # Requests of a type the run's first calls did not check (queued since the
            # tally): they wait for the next run, which checks their type first.
            unchecked: Counter[str] = Counter()

            async def needing_calls() -> AsyncIterator[ArchiveRequest]:
                taken = 0
                # Records loaded before a page query started, not forgotten yet.
                loaded: list[tuple[RecordKey, str]] = []
                taken_first = False
                while not self._should_stop(sink):
                    loaded += sink.take_loaded()
                    if not taken_first:
                        taken_first = True
                        page = first_page.result()
                    else:
                        page = await asyncio.to_thread(next, pages, None)
                    if page is None:
                        return
                    # That page's SQL saw those loads whole: it finds their records, in the
                    # tables it joined.
                    loaded = _forget_loaded(handled, loaded, queue.recognised_types)
                    for item in page:
                        if request_key(item.request) in self._delivered:
                            continue  # settled by the journal's outcome, in this extract
                        if self._should_stop(sink) or (
                            self.options.limit is not None and taken >= self.options.limit
                        ):
                            return
                        taken += 1
                        outcome = self._classify(item, handled)
                        if outcome is not None:
                            await sink.add(outcome)
                        elif self._checked_at_start(item.request):
                            yield item.request
                        else:
                            unchecked[item.request.type_name] += 1

            # The calls begin: other readers of an embedded file may open it between loads.
            self._kept_open.release()
            outcomes = caller.archive(
                needing_calls(),
                stopping=lambda: self._should_stop(sink),
                keep_snapshot=journal.append_snapshot,
            )
            try:
                # Closed at once if taking an outcome fails (a full disk): its calls in flight
                # are ended with it, instead of going on until it is garbage-collected.
                async with contextlib.aclosing(outcomes):
                    async for outcome in outcomes:
                        completed = self._with_carried_snapshot(outcome)
                        await sink.add(
                            completed, journaled=caller.journals_outcomes and completed is outcome
                        )
            except (
                AuthenticationError,
                RetriesExhausted,
                CallWorkerError,
                LocalStorageError,
            ) as exc:
                keep_journal = isinstance(exc, CallWorkerError | LocalStorageError)
                self._fail(exc, stopped_by(exc), f"{_api_context(exc)}{exc}")
            timeline.mark("calls-done")
            await sink.close()
            self._early = sink.early
            timeline.mark("loaded")
            if unchecked:
                report.notes.append(
                    f"left pending for the next run: {sum(unchecked.values())} requests of "
                    f"types queued after this run checked its types at its start "
                    f"({', '.join(sorted(unchecked))}); no call was made for them"
                )
            # Handed to an extract, the outcomes are in the destination only after this run:
            # the journal stays for the next run, which removes it once it finds them there.
            if sink.load_error is None and not keep_journal and self.delivery is None:
                journal.discard()
        finally:
            await caller.aclose()
            report.requests_sent = caller.requests_sent
            journal.close()
        lost = self._lock_lost(loaded_all=sink.load_error is None)
        if lost is not None:
            self._fail(lost, stopped_by(lost))
        elif sink.load_error is not None:
            failure = sink.load_error
            if isinstance(failure, LocalStorageError):  # its words say what the next run does
                self._fail(failure, stopped_by(failure))
            else:
                self._fail_code(
                    ExitCode.FAILED,
                    "stopped: load failed",
                    f"{failure}; the outcomes are kept in the journal and the next run loads them",
                )
        elif self.stop.is_set() and report.exit_code == ExitCode.OK:
            self._fail_code(
                ExitCode.INTERRUPTED, "interrupted", "stopped on request; the rest stays pending"
            )

    def _checked_at_start(self, request: ArchiveRequest) -> bool:
        """Whether the run's first calls checked the request's type (its share of the active
        records, its `properties`, before any DELETE): only the types the tally found with
        requests to call are. A request of another type, queued since, is not called."""
        kind = request.object_type
        return kind is not None and self._to_call_by_type.get(kind, 0) > 0

    def _should_stop(self, sink: "ChunkSink") -> bool:
        return (
            self.stop.is_set()
            or sink.load_error is not None
            or (self._lock_watch is not None and not self._lock_watch.may_send())
        )

    def _may_load(self) -> bool:
        return self._lock_watch is None or self._lock_watch.may_load(wait=LOCK_REGAIN_WAIT_S)

    def _lock_lost(self, *, loaded_all: bool) -> LockLostError | None:
        watch = self._lock_watch
        if watch is None or watch.lost is None:
            return None
        if watch.regained and loaded_all:
            then = "the lock was taken again, so what it archived is loaded"
        elif watch.regained:  # taken again only after a load had been refused
            then = (
                "the lock was taken again too late for its last load: its outcomes are kept in "
                "the journal and the next run here loads them"
            )
        else:
            then = (
                "another run may hold the dataset now, so it loaded nothing more: its outcomes "
                "are kept in the journal and the next run here loads them"
            )
        return LockLostError(
            f"the run lost its lock on the dataset ({watch.lost}) and stopped sending DELETEs; "
            f"{then}; the rest stays pending"
        )

    # ------------------------------------------------------------ the report
    def _finish_report(self) -> None:
        report = self.report
        report.finished_at = datetime.now(UTC)
        after = schema_columns(self.pipeline)
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
        report.note_properties(self.config.properties_by_type)
        if report.counts.get(Status.FAILED.value) and report.exit_code == ExitCode.OK:
            report.exit_code = ExitCode.FAILED
            report.outcome = "completed with failures"
        if (
            report.held_back_fields
            and self.config.schema_contract == "freeze"
            and report.exit_code == ExitCode.OK
        ):
            report.exit_code = ExitCode.FAILED
            report.outcome = "completed; the frozen schema held new fields back"
        self._kept_open.hold()
        if isinstance(self._failed_with, QueueError) and not self._has_audit_trail():
            # No queue and no trail: most likely a mistyped --dataset. Writing the run row would
            # make the dataset (and its staging dataset) it names; the summary says why not.
            report.run_row_error = (
                "the dataset has no audit trail and no queue, so nothing was written there "
                "(a mistyped --dataset?)"
            )
            return
        row = report.run_row()
        timeline.mark("reported")
        if self.delivery is not None:
            # Linked by the next run of the CLI, which adopts the runs no link covers.
            self.delivery.run_row(row)
            return
        try:
            report.chain = link_run(
                self.pipeline,
                row,
                linked_runs_replayed=[run for run, _ in self._replayed],
                early=self._early,
            )
            timeline.mark("linked")
        except Exception as exc:  # the run's own account must not hide the run's result
            report.chain_error = str(typed_error(exc))
            logger.debug("could not link the run into the hash chain", exc_info=exc)
            logger.error(
                "could not link this run into the dataset's hash chain: %s; the next run "
                "chains its rows",
                report.chain_error,
            )
            try:  # insert-only on run_id: a row the link step loaded stays as it is
                load_fresh(self.pipeline, run_history([row]))
            except Exception as load_exc:
                report.run_row_error = str(typed_error(load_exc))
                logger.debug("could not write the run row", exc_info=load_exc)
                logger.error(
                    "could not write the run row to archive_runs: %s", report.run_row_error
                )
                return
        # Their outcomes are loaded; kept until now so that a run killed before its link
        # leaves the next run the journals that name what it loaded.
        for _, path in self._replayed:
            path.unlink(missing_ok=True)

    def _finish_redactions(self) -> None:
        """Link a redaction killed before its link (`dataset.redact.finish_redactions`), so a
        scheduled run mends what a killed `redact` left. Removing the copies it may have left
        needs the dataset alone for a while (a DuckDB file is rewritten): a marker makes the
        next `redact` do it, and `doctor` says so."""
        try:
            finished = finish_redactions(self.pipeline)
        except Exception as exc:  # the run goes on; its link leaves that redaction's rows alone
            logger.warning("could not finish a killed redaction: %s", typed_error(exc))
            return
        if finished:
            (Path(self.pipeline.working_dir) / CLEANUP_MARKER).touch()
            logger.warning(
                "finished %d redaction(s) killed before their link; run `routera-archive "
                "redact` to remove the copies they may have left",
                len(finished),
            )

    def _has_audit_trail(self) -> bool:
        """Whether the dataset holds `archive_runs` (read without making anything)."""
        try:
            with self.pipeline.sql_client() as client:
                return stored_columns(client, RUNS_TABLE) is not None
        except Exception:  # the destination's own error was the run's to report
            return False

    def _apply_retention(self) -> None:
        """`redact_after_days`: redact what is older, as a redaction of its own (a run of mode
        `redact`, linked after this one). Not in a dry run, nor in a shard worker (workers
        run side by side; a redaction needs the dataset alone: run `redact --older-than` as
        a step after them), nor after a run that could not link itself."""
        report = self.report
        days = self.config.redact_after_days
        if days is None or self.options.dry_run or self.options.shard is not None:
            return
        if self.delivery is not None:  # its rows are not in the destination yet
            return
        if report.chain is None or report.exit_code not in (ExitCode.OK, ExitCode.FAILED):
            return
        try:
            done = redact(
                self.pipeline,
                RedactionRequest(
                    older_than_days=days, redacted_by=f"routera-archive run {report.run_id}"
                ),
                redaction_id=f"{report.run_id}-retention",
                personal_fields=self.config.redacted_fields,
                now=self.clock(),
            )
        except Exception as exc:
            report.retention_error = str(typed_error(exc))
            logger.debug("retention stopped", exc_info=exc)
            logger.error("redact_after_days: nothing was redacted: %s", report.retention_error)
            report.exit_code = max(report.exit_code, ExitCode.FAILED)
            return
        report.retention = [item.summary() for item in done]


def _api_context(error: RouteraArchiveError) -> str:
    """Words that say whose retries ran out (a RetriesExhausted names only the call)."""
    return "the Routera API is unavailable: " if isinstance(error, RetriesExhausted) else ""


class Settled(NamedTuple):
    """How a request is settled without a call: its status, why, and the request it
    duplicates."""

    status: Status
    error: str
    duplicate_of: str | None = None


def _record_key(outcome: ArchiveOutcome) -> tuple[ObjectType, str]:
    """The record an outcome carries, as its type's audit table holds it."""
    record = outcome.record or {}
    return (outcome.request.object_type or ObjectType.CONTACTS, str(record.get("id")))


def settle_without_call(identity: Identity, handled: dict[RecordKey, str] | None) -> Settled | None:
    """How a pending request is settled without any call, or None when it needs the API: a
    row that can never be valid, a record already in the trail, or another request's record.

    `handled` is the run's memory of the records it has sent ((type, id) -> request), which a
    run needs because each of its pages is another query, made after loads and queue writes
    (see `_forget_loaded`); a request it lets through is added to it. A reader of one query
    passes None: there the SQL's `first_request_id` alone names each record's one request to
    call (every request of a record carries the same one), so the memory would change no
    verdict, and would cost a dry run of a million records a million entries.
    """
    request_id, queued = identity.request_id, identity.queued
    record: RecordKey | None = (
        None if queued.object_id is None else (queued.object_type, queued.object_id)
    )
    first = None if handled is None or record is None else handled.get(record)
    if first is None and identity.first_request_id != request_id:
        first = identity.first_request_id
    archived_under = identity.archived_under
    archived = Archived.of(archived_under, request_id)
    settled = settled_without_call(queued, archived, duplicate=first is not None)
    if settled is None:
        if handled is not None and record is not None:
            handled[record] = request_id
        return None
    if settled.status is Status.INVALID:
        return Settled(Status.INVALID, settled.invalid_reason or "invalid id")
    word = _word(queued.object_type)
    if archived is Archived.UNDER_THIS_REQUEST:
        table = ObjectType(queued.object_type).table
        return Settled(
            Status.ARCHIVED,
            f"its record was already in {table}; only the log row was missing",
        )
    if archived is Archived.UNDER_ANOTHER:
        return Settled(
            Status.DUPLICATE,
            f"{word} already archived under request {archived_under}",
            archived_under,
        )
    return Settled(Status.DUPLICATE, f"same {word} as request {first}", first)


def _word(object_type: str) -> str:
    """`contact`, `company`, ... for a type a request was settled as (so, a valid one)."""
    try:
        return ObjectType(object_type).singular
    except ValueError:
        return "record"


def _forget_loaded(
    handled: dict[RecordKey, str],
    loaded: list[tuple[RecordKey, str]],
    recognised: frozenset[ObjectType],
) -> list[tuple[RecordKey, str]]:
    """Drop from `handled` the records whose records the destination now holds, and return
    the loaded records it must remember still.

    `handled` keeps a later request for a record from being called while the first one's
    outcome is not yet loaded, whatever happens to the queue meanwhile (a request added with an
    earlier `requested_at`, the first one's row removed by a rebuild). A record that is loaded
    is found by the queue's SQL itself (`archived_under`), so it may be forgotten: only records
    loaded before a page query started, and only when that query's SQL joins their type's audit
    table (`PendingQueue.recognised_types`; a first run's first pages of a type cannot). The
    run's memory then stays bounded by the chunk size instead of growing with every record
    archived; records without a row (not found) stay remembered.
    """
    kept: list[tuple[RecordKey, str]] = []
    names = {kind.value for kind in recognised}
    for record, request_id in loaded:
        if record[0] not in names:
            kept.append((record, request_id))
        elif handled.get(record) == request_id:
            del handled[record]
    return kept


__all__ = ["ArchiveRun", "RunObserver", "RunOptions", "RunReport"]
