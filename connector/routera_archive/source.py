"""The dlt-native source, for users who compose their own pipelines.

`routera_archive()` drains the queue table of the pipeline it runs in, with every guarantee of
the CLI's run: it *is* that run (`run.runner.ArchiveRun`), whose rows go to this extract instead
of loads of its own (`run.delivery`). `routera_archive(requests)` archives the given requests
and nothing else (no queue, lock or journal). Both write the same tables as a run
(`routera_archive.dataset.tables`).
"""

import copy
import logging
import queue as handoff_queue
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from uuid import uuid4

import dlt
from dlt.common.configuration import configspec
from dlt.common.configuration.container import Container
from dlt.common.configuration.specs import BaseConfiguration
from dlt.common.pipeline import PipelineContext
from dlt.extract.resource import DltResource
from dlt.pipeline import trace as dlt_trace

from routera_archive.calls.archiver import archive_concurrently
from routera_archive.config import RouteraSourceConfig, as_resolved
from routera_archive.dataset.fields import FieldColumnsByType
from routera_archive.dataset.loading import (
    repair_torn_schema_writes,
    resume_pending_packages,
    torn_schema_writes,
)
from routera_archive.dataset.lock import RunLock
from routera_archive.dataset.queue import DERIVED_REQUEST_PREFIX, Shard
from routera_archive.dataset.rows import audit_row, log_row
from routera_archive.dataset.tables import (
    FIELDS,
    HOLD_BACK_CONTRACT,
    INSERT_ONLY,
    LOG,
    RUNS,
    AuditRows,
    InsertOnlyTable,
    archives_columns,
    archives_table,
    unmade_archives,
)
from routera_archive.errors import ConfigurationError, ExitCode, GuardrailRefused
from routera_archive.http.client import RouteraClient
from routera_archive.models import ArchiveOutcome, ArchiveRequest
from routera_archive.names import (
    ARCHIVES_TABLE,
    LOG_TABLE,
    SOURCE_NAME,
)
from routera_archive.objects import ObjectType
from routera_archive.run.guardrails import max_archives_verdict, probe_accounts, share_verdict
from routera_archive.run.result import RunReport
from routera_archive.run.runner import ArchiveRun, RunOptions

logger = logging.getLogger(__name__)

# The resource that drains the queue (its rows go to the audit tables by their hints).
DRAIN_RESOURCE = "archive_run"


@configspec
class ResolvedInTheSource(BaseConfiguration):
    """No field, so dlt injects nothing: `routera_archive` resolves its settings itself, the
    one way the CLI and the runner do (`config.as_resolved`). dlt's own lookup would also take
    a bare `BASE_URL` or `RPS` from the environment."""


@dlt.source(name=SOURCE_NAME, section=SOURCE_NAME, max_table_nesting=0, spec=ResolvedInTheSource)
def routera_archive(
    requests: Iterable[ArchiveRequest | str] | None = None,
    config: RouteraSourceConfig | None = None,
    run_id: str | None = None,
    force: bool = False,
    dry_run: bool = False,
    limit: int | None = None,
    max_archives: int | None = None,
    shard: str | None = None,
) -> tuple[DltResource, ...]:
    """With no `requests`: drain the queue of the pipeline this source runs in.

    `dlt.pipeline(destination=..., dataset_name=...).run(routera_archive())` is one run of the
    CLI's (`routera-archive run`) on that destination and dataset, with all of its guarantees:
    the dataset's lock, a crashed run's journal loaded first, the pending SQL, duplicates and
    invalid ids settled without a call, the guardrails, every outcome journaled before it is
    handed to the extract, and the run's row in `archive_runs`. `force`, `dry_run`, `limit`,
    `shard` (`"I/N"`) and `max_archives` are the CLI's options of the same names. A run that
    archived nothing because it could not or may not (a guardrail's refusal, another run holding
    the dataset, bad settings) raises its typed error (`GuardrailRefused`, `RunLockedError`,
    `ConfigurationError`: dlt wraps it in PipelineStepFailed) and sends no DELETE. What one
    `pipeline.run()` cannot give is in the README ("The dlt source").

    With `requests` (request objects or bare contact ids): archive those while dlt extracts,
    their rows marked with `run_id` if given (a run that drains the queue names itself, and a
    `run_id` given to it is a ConfigurationError).

    Settings come from `[sources.routera]` and `SOURCES__ROUTERA__*`, read as the CLI and the
    runner read them (with no `requests`, when the run starts: a source made where the run's
    credentials are not, say at a scheduler's import, fails then with ConfigurationError); to
    set values in code, pass `config`: `resolve_source_config(rps=10)`
    (the rest from the environment) or `settings_from_values(...)` (nothing from it). The
    guardrails apply as in a run: more requests than `max_archives` raise GuardrailRefused here,
    before anything is called; more than `max_share` of a type's active records raise it when the
    extract starts (dlt then reports it as the cause of its PipelineStepFailed); `force=True`
    passes both. `schema_contract` holds new fields back as in a run. `chunk_size`,
    `call_worker` and `queue_table` are the runner's: this source makes its calls in dlt's
    extract, in this process, and loads once.

    This source has no queue, lock or journal: it is for composing with other dlt code. A crash
    during extract drops the answers of that extract; the next run's DELETE answers 404 and the
    GET recovers each record (`recovered = true`). The CLI's runner adds the rest.
    """
    if requests is None:
        if run_id is not None:
            raise ConfigurationError(
                "run_id names a run of explicit ids only: a run that drains the queue names "
                "itself (its id keys its journal, its lock and its archive_runs row)"
            )
        context = Container()[PipelineContext]
        if context.is_active():  # dlt.current.pipeline() would make a default pipeline
            recover_pipeline_folder(cast(dlt.Pipeline, context.pipeline()))
        try:
            worker = None if shard is None else Shard.parse(shard)
        except ValueError as exc:  # as the CLI's --shard: bad settings, said before any call
            raise ConfigurationError(f"shard: {exc}") from None
        options = RunOptions(dry_run=dry_run, limit=limit, force=force, shard=worker)
        # Settings resolved when the run starts, not here: a source made when a scheduler
        # loads its definitions (dagster-dlt's) must load without the run's credentials, and
        # takes them as they are at each run.
        return (drain_queue(lambda: run_settings(config, max_archives), options),)
    settings = run_settings(config, max_archives)
    client_config = settings.client_config()
    wanted = [as_request(item) for item in requests]
    # Per type, as the run's share check counts (a request that names no type is not called).
    to_call = Counter(item.object_type for item in wanted if item.object_type is not None)
    verdict = max_archives_verdict(settings, len(wanted), force=force)
    if verdict.startswith("refused"):
        raise GuardrailRefused(verdict)
    this_run = run_id or uuid4().hex

    @dlt.resource(name="archive_outcomes", selected=False)
    async def outcomes() -> AsyncIterator[ArchiveOutcome]:
        async with RouteraClient(client_config) as client:
            accounts = await probe_accounts(
                client.list_objects, to_call, settings.properties_by_type
            )
            refusal = share_verdict(settings, accounts, to_call, force=force)
            if refusal is not None:
                raise GuardrailRefused(refusal)
            async for outcome in archive_concurrently(
                client, wanted, workers=client_config.concurrency
            ):
                yield outcome

    hold_back = settings.schema_contract != "evolve"
    seen: set[tuple[ObjectType, str]] = set()
    columns = FieldColumnsByType()  # per extract: the runner keeps assignments across runs

    @dlt.transformer(name=ARCHIVES_TABLE, data_from=outcomes)
    def archives_rows(outcome: ArchiveOutcome) -> Iterator[Any]:
        kind = outcome.request.object_type
        if kind is None:
            return
        row = audit_row(outcome, this_run, columns.of(kind))
        # insert-only merge does not de-duplicate within one load: keep the first record.
        if row is None or (kind, str(row["id"])) in seen:
            return
        seen.add((kind, str(row["id"])))
        # Each type's record goes to its own table with that table's own columns: a variant
        # of the resource's hints per table (the resource itself declares no columns, or
        # every variant would take the contacts' documented ones).
        yield from _for_table(
            [row], archives_table(kind), HOLD_BACK_CONTRACT if hold_back else None
        )

    @dlt.transformer(name=LOG_TABLE, data_from=outcomes)
    def log_rows(outcome: ArchiveOutcome) -> Iterator[dict[str, Any]]:
        yield log_row(outcome, this_run)

    archives_rows.apply_hints(write_disposition=INSERT_ONLY, primary_key="id")
    log_rows.apply_hints(write_disposition=INSERT_ONLY, primary_key=LOG.key, columns=LOG.columns)
    return archives_rows, log_rows


def run_settings(
    config: RouteraSourceConfig | None, max_archives: int | None
) -> RouteraSourceConfig:
    """The settings resolved the runner's way, with the source's `max_archives` over them
    (on a copy: the caller's settings stay as they are)."""
    settings = as_resolved(config)
    if max_archives is not None:
        settings = copy.copy(settings)
        settings.max_archives = max_archives
        settings.validate()
    return settings


def as_request(item: ArchiveRequest | str) -> ArchiveRequest:
    """A bare contact id is a request of its own (`cid:<id>`), as in a queue without ids."""
    if isinstance(item, ArchiveRequest):
        return item
    return ArchiveRequest(request_id=f"{DERIVED_REQUEST_PREFIX}{item}", object_id=item)


def recover_pipeline_folder(pipeline: dlt.Pipeline) -> None:
    """Repair what a killed run left in this pipeline's folder, as the runner does, under the
    folder's lock, before dlt's `run()` meets it:

    - a schema file left half-written (`dataset.loading.repair_torn_schema_writes`), which
      would fail that `run()` and every later one at `step=sync`;
    - load packages not loaded yet: dlt's run() would resume them by itself, but then return
      without extracting, and its resume can load rows twice or, after a kill inside
      normalize's commit, fail for ever (`dataset.loading.load_pending_packages` closes both).
      The source's run collapses such rows again in case a package was resumed by dlt alone
      (a source made before its pipeline was active).

    `routera_archive()` calls it when made inside an active pipeline; where the source is made
    before its pipeline (a scheduler's definitions), call it before each `pipeline.run()`."""
    if not (pipeline.has_pending_data or torn_schema_writes(pipeline)):
        return
    lock = RunLock(Path(pipeline.working_dir) / "run.lock", f"source-{uuid4().hex[:8]}")
    lock.acquire()
    try:
        repair_torn_schema_writes(pipeline)
        if pipeline.has_pending_data:
            logger.info("loading the packages a previous run left unloaded")
            resume_pending_packages(pipeline)
    finally:
        lock.release()


def drain_queue(
    settings_now: Callable[[], RouteraSourceConfig], options: RunOptions
) -> DltResource:
    """The run, as one resource: it runs in a thread of its own while the extract takes what it
    hands over, each row marked for its table. Its settings are read as it starts."""

    @dlt.resource(name=DRAIN_RESOURCE, max_table_nesting=0)
    def archive_run() -> Iterator[Any]:
        settings = settings_now()
        pipeline = dlt.current.pipeline()
        # Every type's table from a dataset's first load on, as the runner's loads make them.
        delivery = ExtractDelivery(unmade_archives(pipeline), pipeline)
        run = ArchiveRun(pipeline, settings, options, delivery=delivery)

        def execute() -> None:
            try:
                delivery.finish(run.execute())
            except BaseException as exc:  # execute reports every error; this is a bug's
                delivery.finish(exc)

        worker = threading.Thread(target=execute, name="routera-archive-run", daemon=True)
        worker.start()
        try:
            yield from delivery.items()
        finally:
            # Closed early (the extract failed elsewhere): the run stops sending DELETEs, and
            # what it archived stays in its journal for the next run.
            run.stop.set()
            worker.join()
        report = delivery.report
        failure = run.failed_with
        if report is not None and failure is not None and _archived_nothing(report):
            raise failure

    return archive_run


@dataclass(frozen=True)
class _Finished:
    outcome: "RunReport | BaseException"


class ExtractDelivery:
    """A run's rows, handed from its thread to the extract's generator (`run.delivery`)."""

    def __init__(
        self, unmade: Collection[ObjectType] = (), pipeline: dlt.Pipeline | None = None
    ) -> None:
        self._items: handoff_queue.Queue[list[Any] | _Finished] = handoff_queue.Queue()
        self.report: RunReport | None = None
        self._pipeline = pipeline
        # Types whose table the dataset does not have yet: made empty with the first rows.
        self._unmade = set(unmade)

    def audit_rows(self, rows: AuditRows, hold_back: bool) -> None:
        items: list[Any] = []
        for kind in sorted(self._unmade - set(rows.archives), key=list(ObjectType).index):
            empty = dlt.mark.make_hints(table_name=kind.table, columns=archives_columns(kind))
            marker = dlt.mark.materialize_table_schema()
            items.append(dlt.mark.with_hints(marker, empty, create_table_variant=True))
        self._unmade.clear()
        for kind, records in rows.archives.items():
            contract = HOLD_BACK_CONTRACT if hold_back else None
            items += _for_table(records, archives_table(kind), contract)
        items += _for_table(rows.log, LOG)
        items += _for_table(rows.fields, FIELDS)
        self._items.put(items)

    def run_row(self, row: dict[str, Any]) -> None:
        self._items.put(_for_table([row], RUNS))

    def keep_locks(self, release: Callable[[], None]) -> bool:
        """Held until dlt ends this pipeline's traced step (`run`, or `extract` alone): its
        load is over then, or failed. Without dlt's runtime trace there is no such moment to
        wait for: released now, and a run started before the load ends may call again what
        this one archived (it finds the requests pending; its DELETE answers 404)."""
        pipeline = self._pipeline
        if pipeline is None or not pipeline.config.enable_runtime_trace:
            return False
        RELEASE_AFTER_TRACE.hold(pipeline, release)
        return True

    def finish(self, outcome: "RunReport | BaseException") -> None:
        self._items.put(_Finished(outcome))

    def items(self) -> Iterator[Any]:
        """Every row handed over, until the run ends; a bug in the run is raised here."""
        while True:
            taken = self._items.get()
            if isinstance(taken, _Finished):
                if isinstance(taken.outcome, BaseException):
                    raise taken.outcome
                self.report = taken.outcome
                return
            yield from taken


def _for_table(
    rows: list[dict[str, Any]], table: InsertOnlyTable, contract: Any = None
) -> list[Any]:
    """Rows marked for `table` with the hints the runner's loads give it (`tables.insert_only`),
    as one item: dlt's extract computes and validates a table's schema for each item it is
    handed (`typing.get_type_hints` every time), which, row by row, took ~12 ms of CPU per
    record, more than the calls (bench/RESULTS.md, "A crash mid-extract")."""
    if not rows:
        return []
    hints = dlt.mark.make_hints(
        table_name=table.name,
        write_disposition=INSERT_ONLY,
        primary_key=list(table.key) if isinstance(table.key, tuple) else table.key,
        columns=table.columns,
    )
    if contract is not None:
        hints["schema_contract"] = contract
    return [dlt.mark.with_hints(rows, hints, create_table_variant=True)]


def _archived_nothing(report: RunReport) -> bool:
    """A run that ended before any outcome: refused, locked, misconfigured."""
    return report.exit_code != ExitCode.OK and not report.counts


class ReleaseAfterTrace:
    """dlt's tracking hook (`dlt.pipeline.trace.TRACKING_MODULES`, "plug in your own tracking
    modules here"): dlt calls `on_end_trace` when a pipeline's outermost step ends, after its
    load (or its failure). The locks of the runs handed to that pipeline's extract are released
    then."""

    def __init__(self) -> None:
        self._held: dict[int, list[Callable[[], None]]] = {}
        self._guard = threading.Lock()

    def hold(self, pipeline: dlt.Pipeline, release: Callable[[], None]) -> None:
        with self._guard:
            if self not in dlt_trace.TRACKING_MODULES:
                dlt_trace.TRACKING_MODULES.append(self)
            self._held.setdefault(id(pipeline), []).append(release)

    def on_start_trace(self, trace: Any, step: Any, pipeline: Any) -> None:
        pass

    def on_start_trace_step(self, trace: Any, step: Any, pipeline: Any) -> None:
        pass

    def on_end_trace_step(
        self, trace: Any, step: Any, pipeline: Any, step_info: Any, send_state: bool
    ) -> None:
        pass

    def on_end_trace(self, trace: Any, pipeline: Any, send_state: bool) -> None:
        with self._guard:
            releases = self._held.pop(id(pipeline), [])
        for release in releases:
            try:
                release()
            except Exception as exc:  # a lock's end must not fail the user's pipeline
                logger.warning("could not release the dataset's lock: %s", exc)


RELEASE_AFTER_TRACE = ReleaseAfterTrace()
