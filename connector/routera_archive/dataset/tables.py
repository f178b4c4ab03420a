"""What the connector writes to the destination: the audit tables' columns, resources and sources.

Each type's audit table (`contact_archives`, `company_archives`, ...: `ObjectType.table`) is
merged with the `insert-only` strategy on the record's `id`: a record that reaches the trail
twice (a recovery after a crash, the same record requested again) keeps its first row, with its
original answer, and no second row appears. `audit_trail(build_audit_rows(
outcomes, ...))` loads outcomes that were already archived; the runner uses it to load chunk by
chunk while the next chunk is being archived.
"""

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import dlt
from dlt.common.schema.typing import TColumnSchema, TMergeDispositionDict, TSchemaContractDict
from dlt.common.schema.utils import has_table_seen_data
from dlt.extract.resource import DltResource

from routera_archive.dataset.fields import FieldColumnsByType
from routera_archive.dataset.rows import audit_row, log_row
from routera_archive.models import ArchiveOutcome
from routera_archive.names import (
    FIELDS_TABLE,
    LOG_TABLE,
    QUEUE_SCHEMA_NAME,
    QUEUE_TABLE,
    RUNS_TABLE,
    SOURCE_NAME,
)
from routera_archive.objects import ObjectType

# The columns every type's audit table has: the record's stamps, then ours.
_AUDIT_COLUMNS: dict[str, TColumnSchema] = {
    "archived": {"data_type": "timestamp", "nullable": False},
    "archived_by": {"data_type": "text"},
    "created_at": {"data_type": "timestamp"},
    "updated_at": {"data_type": "timestamp"},
    "request_id": {"data_type": "text"},
    "requested_by": {"data_type": "text"},
    "reason": {"data_type": "text"},
    "requested_at": {"data_type": "timestamp"},
    "run_id": {"data_type": "text"},
    "recovered": {"data_type": "bool"},
    "record_source": {"data_type": "text"},
    "raw_response": {"data_type": "text"},
    "snapshot_response": {"data_type": "text"},
    # SHA-256 of `raw_response` and of `snapshot_response` as stored (UTF-8), made at load.
    "record_sha256": {"data_type": "text"},
    "snapshot_sha256": {"data_type": "text"},
}


def archives_columns(object_type: ObjectType) -> dict[str, TColumnSchema]:
    """A type's audit table: `id`, its documented fields as text, then the shared columns."""
    return {
        "id": {"data_type": "text", "nullable": False},
        "external_id": {"data_type": "text"},
        **{name: {"data_type": "text"} for name in object_type.documented_fields},
        **_AUDIT_COLUMNS,
    }


ARCHIVES_COLUMNS: dict[str, TColumnSchema] = archives_columns(ObjectType.CONTACTS)
"""`contact_archives`'s declared columns (each type's: `archives_columns`)."""

LOG_COLUMNS: dict[str, TColumnSchema] = {
    "outcome_id": {"data_type": "text", "nullable": False},
    "request_id": {"data_type": "text", "nullable": False},
    # A contact's id, as before types existed (NULL for the other types: `object_id`).
    "contact_id": {"data_type": "text"},
    # Absent from rows the previous release wrote: those are contacts, their id `contact_id`.
    "object_type": {"data_type": "text"},
    "object_id": {"data_type": "text"},
    "status": {"data_type": "text", "nullable": False},
    "http_status": {"data_type": "bigint"},
    "error": {"data_type": "text"},
    "attempts": {"data_type": "bigint"},
    "requested_by": {"data_type": "text"},
    "reason": {"data_type": "text"},
    "requested_at": {"data_type": "timestamp"},
    "processed_at": {"data_type": "timestamp"},
    "run_id": {"data_type": "text"},
    "recovered": {"data_type": "bool"},
    "record_source": {"data_type": "text"},
    "duplicate_of": {"data_type": "text"},
    "response_body": {"data_type": "text"},
}

QUEUE_COLUMNS: dict[str, TColumnSchema] = {
    "request_id": {"data_type": "text"},
    "contact_id": {"data_type": "text"},
    "object_type": {"data_type": "text"},
    "object_id": {"data_type": "text"},
    "requested_by": {"data_type": "text"},
    "reason": {"data_type": "text"},
    "requested_at": {"data_type": "timestamp"},
}

FIELDS_COLUMNS: dict[str, TColumnSchema] = {
    "field_key": {"data_type": "text", "nullable": False},
    # Part of the key with `field_key` (each type's table has its own columns); NULL in rows
    # the previous release wrote, which are contacts'. Nullable, so that it can be added to a
    # table that has rows.
    "object_type": {"data_type": "text", "nullable": True},
    "column_name": {"data_type": "text", "nullable": False},
    "renamed": {"data_type": "bool"},
    "first_seen_at": {"data_type": "timestamp"},
    "first_seen_run_id": {"data_type": "text"},
    "first_seen_contact_id": {"data_type": "text"},
    "first_seen_object_id": {"data_type": "text"},
}
FIELDS_KEY = ("object_type", "field_key")

RUNS_COLUMNS: dict[str, TColumnSchema] = {
    "run_id": {"data_type": "text", "nullable": False},
    "started_at": {"data_type": "timestamp"},
    "finished_at": {"data_type": "timestamp"},
    "mode": {"data_type": "text"},
    "shard": {"data_type": "text"},
    "exit_code": {"data_type": "bigint"},
    "outcome": {"data_type": "text"},
    "pending_at_start": {"data_type": "bigint"},
    "guardrail": {"data_type": "text"},
    "new_columns": {"data_type": "json"},
    "renamed_fields": {"data_type": "json"},
    "type_changes": {"data_type": "json"},
    "held_back_fields": {"data_type": "json"},
    "held_back_records": {"data_type": "json"},
    "aborted_packages": {"data_type": "bigint"},
    "notes": {"data_type": "json"},
    "counts": {"data_type": "json"},
    # {type: {status: requests}}: the same outcomes per type.
    "counts_by_type": {"data_type": "json"},
    "connector_version": {"data_type": "text"},
    "base_url": {"data_type": "text"},
    "destination": {"data_type": "text"},
    "dataset": {"data_type": "text"},
    "error": {"data_type": "text"},
}

RUN_LINK_COLUMNS: dict[str, TColumnSchema] = {
    "chain_seq": {"data_type": "bigint"},
    "previous_chain_sha256": {"data_type": "text"},
    "rows_sha256": {"data_type": "text"},
    "chain_sha256": {"data_type": "text"},
    "digested_rows": {"data_type": "bigint"},
    "adopted_run_ids": {"data_type": "json"},
}
"""The run row's columns that hold its link in the hash chain (`dataset.chain`): checked
against the link in `archive_chain`, and left out of the run row's own hash."""
RUNS_COLUMNS.update(RUN_LINK_COLUMNS)


# Says why a record's own fields are in `raw_response` only (see AuditRows.held_back).
HELD_BACK_COLUMN = "fields_held_back"

# dlt loads a package at least once: a crash after a job's INSERT committed but before dlt
# recorded it runs the job again. Merging insert-only on a key makes that second load a no-op.
INSERT_ONLY: TMergeDispositionDict = {"disposition": "merge", "strategy": "insert-only"}


@dataclass(frozen=True)
class InsertOnlyTable:
    """A table written merged insert-only, as every writer declares it: a run's loads
    (`insert_only`) and the dlt source's extract (`source.ExtractDelivery`) take its key and
    columns from here, so the two cannot drift apart."""

    name: str
    key: str | tuple[str, ...]
    columns: dict[str, TColumnSchema]


def archives_table(object_type: ObjectType) -> InsertOnlyTable:
    """A type's audit table: one row per record, keyed by its id."""
    return InsertOnlyTable(object_type.table, "id", archives_columns(object_type))


LOG = InsertOnlyTable(LOG_TABLE, "outcome_id", LOG_COLUMNS)
FIELDS = InsertOnlyTable(FIELDS_TABLE, FIELDS_KEY, FIELDS_COLUMNS)
RUNS = InsertOnlyTable(RUNS_TABLE, "run_id", RUNS_COLUMNS)


def insert_only(rows: list[dict[str, Any]], table: InsertOnlyTable) -> DltResource:
    """An audit table's resource: merged insert-only on its key, nothing nested (a record's
    values stay in their row as received; `raw_response` keeps the body)."""
    return dlt.resource(
        rows,
        name=table.name,
        write_disposition=INSERT_ONLY,
        primary_key=table.key,
        columns=table.columns,
        max_table_nesting=0,
    )


def archive_queue(rows: list[dict[str, Any]]) -> DltResource:
    return dlt.resource(
        rows,
        name=QUEUE_TABLE,
        write_disposition="append",
        columns=QUEUE_COLUMNS,
        max_table_nesting=0,
    )


@dlt.source(name=QUEUE_SCHEMA_NAME, section=SOURCE_NAME, max_table_nesting=0)
def queue_requests(rows: Sequence[dict[str, Any]]) -> DltResource:
    """Queue rows written by `enqueue`.

    A schema of its own, so `enqueue` can use its own pipeline (and working folder) and write
    while a run holds the run pipeline: the run only ever reads the queue with SQL.
    """
    return archive_queue(list(rows))


@dlt.source(name=SOURCE_NAME, section=SOURCE_NAME)
def run_history(rows: Sequence[dict[str, Any]]) -> DltResource:
    """The `archive_runs` rows, in the `routera` schema like every other table."""
    return insert_only(list(rows), RUNS)


@dataclass(frozen=True)
class AuditRows:
    """The rows of one load, built once so a retried load writes exactly the same rows."""

    # Each type's audit rows, for its own table (`ObjectType.table`).
    archives: dict[ObjectType, list[dict[str, Any]]]
    log: list[dict[str, Any]]
    fields: list[dict[str, Any]]

    @property
    def records(self) -> list[dict[str, Any]]:
        """Every audit row of the load, whatever its type."""
        return [row for rows in self.archives.values() for row in rows]

    def held_back(self, reason: str) -> "AuditRows":
        """The same rows with each record's own fields left out of its columns, for a load the
        destination refused because of them: `raw_response` keeps every value, the documented
        fields and ours stay, and `fields_held_back` says why. Every record still reaches the
        trail, so no log row says `archived` for a record the trail does not hold."""
        archives = {
            kind: _without_record_fields(rows, archives_columns(kind), reason)
            for kind, rows in self.archives.items()
        }
        return AuditRows(archives=archives, log=self.log, fields=[])


def _without_record_fields(
    rows: list[dict[str, Any]], kept: dict[str, TColumnSchema], reason: str
) -> list[dict[str, Any]]:
    """`rows` with only the `kept` (declared) columns, and why the rest was held back."""
    return [
        {key: value for key, value in row.items() if key in kept} | {HELD_BACK_COLUMN: reason}
        for row in rows
    ]


def build_audit_rows(
    outcomes: Sequence[ArchiveOutcome], run_id: str, columns: FieldColumnsByType | None = None
) -> AuditRows:
    """One log row per outcome, one audit row per record (in its type's table), one row per
    newly seen field key of a type."""
    columns = columns if columns is not None else FieldColumnsByType()
    first_per_record: dict[ObjectType, dict[str, dict[str, Any]]] = {}
    for outcome in outcomes:
        kind = outcome.request.object_type
        if kind is None or outcome.record is None:
            continue
        row = audit_row(outcome, run_id, columns.of(kind))
        if row is not None:
            # insert-only merge does not de-duplicate within one load: keep the first record.
            first_per_record.setdefault(kind, {}).setdefault(str(row["id"]), row)
    fields = [
        {
            "field_key": field.field_key,
            "object_type": field.object_type.value,
            "column_name": field.column_name,
            "renamed": field.renamed,
            "first_seen_at": field.first_seen_at,
            "first_seen_run_id": field.first_seen_run_id,
            "first_seen_contact_id": (
                field.first_seen_contact_id if field.object_type is ObjectType.CONTACTS else None
            ),
            "first_seen_object_id": field.first_seen_contact_id,
        }
        for field in columns.take_new()
    ]
    return AuditRows(
        archives={kind: list(rows.values()) for kind, rows in first_per_record.items()},
        log=[log_row(outcome, run_id) for outcome in outcomes],
        fields=fields,
    )


# Values a new field or a changed type cannot add to an audit table under a frozen or
# discarding contract are dropped from the columns only: `raw_response` keeps them.
HOLD_BACK_CONTRACT: TSchemaContractDict = {"columns": "discard_value", "data_type": "discard_value"}


def empty_archives(object_type: ObjectType) -> DltResource:
    """A type's audit table with no row: dlt creates it, with its declared columns.

    So that every type's table exists from a dataset's first load on, and SQL written once
    (the shipped audit queries, a user's own view) may name all four: a static query cannot
    name a table that may not exist. `append`, not the tables' insert-only merge: dlt 1.31
    cannot normalise its empty-table marker under a primary key (KeyError 'id'); the first
    load with rows sets the merge hints, as for any table.
    """

    def nothing() -> Iterator[Any]:
        yield dlt.mark.materialize_table_schema()

    return dlt.resource(
        nothing,
        name=object_type.table,
        write_disposition="append",
        columns=archives_columns(object_type),
        max_table_nesting=0,
    )


def unmade_archives(pipeline: dlt.Pipeline) -> frozenset[ObjectType]:
    """The types whose audit table dlt has not made yet in this pipeline's dataset (its
    schema, as restored from the destination, says which tables have seen data)."""
    schema = pipeline.schemas.get(SOURCE_NAME) if SOURCE_NAME in pipeline.schemas else None
    tables = schema.tables if schema is not None else {}
    return frozenset(
        kind
        for kind in ObjectType
        if kind.table not in tables or not has_table_seen_data(tables[kind.table])
    )


@dlt.source(name=SOURCE_NAME, section=SOURCE_NAME, max_table_nesting=0)
def audit_trail(
    rows: AuditRows,
    hold_back_new_fields: bool = False,
    make_tables: Collection[ObjectType] = (),
) -> list[DltResource]:
    """The audit tables' rows of outcomes that are already known, each type's in its own
    table; `make_tables`: types whose table is to be made even without a row of theirs
    (`empty_archives`; a run passes `unmade_archives`), so that a dataset has all four once
    it has any."""
    resources = []
    for kind in ObjectType:
        records = rows.archives.get(kind, [])
        if not records and kind in make_tables:
            resources.append(empty_archives(kind))
            continue
        if kind is not ObjectType.CONTACTS and not records:
            continue
        archives = insert_only(records, archives_table(kind))
        if hold_back_new_fields:
            archives.apply_hints(schema_contract=HOLD_BACK_CONTRACT)
        resources.append(archives)
    resources.append(insert_only(rows.log, LOG))
    resources.append(insert_only(rows.fields, FIELDS))
    return resources
