"""The dlt-native source: `routera_archive(requests)` archives the given requests while dlt
extracts, for users who compose their own pipelines. It writes the same tables as a run
(`routera_archive.dataset.tables`).
"""

from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any
from uuid import uuid4

import dlt
from dlt.common.configuration import configspec
from dlt.common.configuration.specs import BaseConfiguration
from dlt.extract.resource import DltResource

from routera_archive.calls.archiver import archive_concurrently
from routera_archive.config import RouteraSourceConfig, as_resolved
from routera_archive.dataset.fields import FieldColumnsByType
from routera_archive.dataset.queue import DERIVED_REQUEST_PREFIX
from routera_archive.dataset.rows import audit_row, log_row
from routera_archive.dataset.tables import (
    HOLD_BACK_CONTRACT,
    INSERT_ONLY,
    LOG_COLUMNS,
    archives_columns,
)
from routera_archive.errors import GuardrailRefused
from routera_archive.http.client import RouteraClient
from routera_archive.models import ArchiveOutcome, ArchiveRequest
from routera_archive.names import ARCHIVES_TABLE, LOG_TABLE, SOURCE_NAME
from routera_archive.objects import ObjectType
from routera_archive.run.guardrails import max_archives_verdict, probe_accounts, share_verdict


@configspec
class ResolvedInTheSource(BaseConfiguration):
    """No field, so dlt injects nothing: `routera_archive` resolves its settings itself, the
    one way the CLI and the runner do (`config.as_resolved`). dlt's own lookup would also take
    a bare `BASE_URL` or `RPS` from the environment."""


@dlt.source(name=SOURCE_NAME, section=SOURCE_NAME, max_table_nesting=0, spec=ResolvedInTheSource)
def routera_archive(
    requests: Iterable[ArchiveRequest | str],
    config: RouteraSourceConfig | None = None,
    run_id: str | None = None,
    force: bool = False,
) -> tuple[DltResource, DltResource]:
    """Archive `requests` (request objects or bare contact ids) while dlt extracts.

    Settings come from `[sources.routera]` and `SOURCES__ROUTERA__*`, read as the CLI and the
    runner read them; to set values in code, pass `config`: `resolve_source_config(rps=10)`
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
    settings = as_resolved(config)
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
        hints = dlt.mark.make_hints(
            table_name=kind.table,
            write_disposition=INSERT_ONLY,
            primary_key="id",
            columns=archives_columns(kind),
        )
        if hold_back:
            hints["schema_contract"] = HOLD_BACK_CONTRACT
        yield dlt.mark.with_hints(row, hints, create_table_variant=True)

    @dlt.transformer(name=LOG_TABLE, data_from=outcomes)
    def log_rows(outcome: ArchiveOutcome) -> Iterator[dict[str, Any]]:
        yield log_row(outcome, this_run)

    archives_rows.apply_hints(write_disposition=INSERT_ONLY, primary_key="id")
    log_rows.apply_hints(
        write_disposition=INSERT_ONLY, primary_key="outcome_id", columns=LOG_COLUMNS
    )
    return archives_rows, log_rows


def as_request(item: ArchiveRequest | str) -> ArchiveRequest:
    """A bare contact id is a request of its own (`cid:<id>`), as in a queue without ids."""
    if isinstance(item, ArchiveRequest):
        return item
    return ArchiveRequest(request_id=f"{DERIVED_REQUEST_PREFIX}{item}", object_id=item)
