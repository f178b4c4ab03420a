"""The dlt-native source: `routera_archive(requests)` archives the given requests while dlt
extracts, for users who compose their own pipelines. It writes the same tables as a run
(`routera_archive.dataset.tables`).
"""

from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any
from uuid import uuid4

import dlt
from dlt.extract.resource import DltResource

from routera_archive.calls.archiver import archive_concurrently
from routera_archive.config import RouteraSourceConfig
from routera_archive.dataset.fields import FieldColumns
from routera_archive.dataset.rows import audit_row, log_row
from routera_archive.dataset.tables import ARCHIVES_COLUMNS, INSERT_ONLY, LOG_COLUMNS
from routera_archive.http.client import RouteraClient
from routera_archive.models import ArchiveOutcome, ArchiveRequest
from routera_archive.names import ARCHIVES_TABLE, LOG_TABLE, SOURCE_NAME


@dlt.source(name=SOURCE_NAME, section=SOURCE_NAME, max_table_nesting=0, spec=RouteraSourceConfig)
def routera_archive(
    requests: Iterable[ArchiveRequest | str],
    config: RouteraSourceConfig = dlt.config.value,
    run_id: str | None = None,
) -> tuple[DltResource, DltResource]:
    """Archive `requests` (request objects or bare contact ids) while dlt extracts.

    `config` is the settings spec, resolved by dlt from `[sources.routera]` and the
    `SOURCES__ROUTERA__*` environment exactly as the CLI and the runner resolve it. To set values
    in code, pass a resolved one: `resolve_source_config(rps=10)` (the rest from the
    environment) or `settings_from_values(...)` (nothing from it).

    This source has no queue, lock or journal: it is for composing with other dlt code. A crash
    during extract drops the answers of that extract; the next run's DELETE answers 404 and the
    GET recovers each record (`recovered = true`). The CLI's runner adds the rest.
    """
    client_config = config.client_config()
    this_run = run_id or uuid4().hex

    def as_request(item: ArchiveRequest | str) -> ArchiveRequest:
        if isinstance(item, ArchiveRequest):
            return item
        return ArchiveRequest(request_id=f"cid:{item}", contact_id=item)

    @dlt.resource(name="archive_outcomes", selected=False)
    async def outcomes() -> AsyncIterator[ArchiveOutcome]:
        async with RouteraClient(client_config) as client:
            async for outcome in archive_concurrently(
                client, (as_request(r) for r in requests), workers=client_config.concurrency
            ):
                yield outcome

    seen: set[str] = set()
    columns = FieldColumns()  # per extract: the runner keeps assignments across runs

    @dlt.transformer(name=ARCHIVES_TABLE, data_from=outcomes)
    def archives_rows(outcome: ArchiveOutcome) -> Iterator[dict[str, Any]]:
        # insert-only merge does not de-duplicate within one load: keep the first record.
        row = audit_row(outcome, this_run, columns)
        if row is not None and str(row["id"]) not in seen:
            seen.add(str(row["id"]))
            yield row

    @dlt.transformer(name=LOG_TABLE, data_from=outcomes)
    def log_rows(outcome: ArchiveOutcome) -> Iterator[dict[str, Any]]:
        yield log_row(outcome, this_run)

    archives_rows.apply_hints(
        write_disposition=INSERT_ONLY, primary_key="id", columns=ARCHIVES_COLUMNS
    )
    log_rows.apply_hints(
        write_disposition=INSERT_ONLY, primary_key="outcome_id", columns=LOG_COLUMNS
    )
    return archives_rows, log_rows
