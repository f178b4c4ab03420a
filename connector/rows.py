"""Outcomes become rows: one `archive_log` row per outcome, one `contact_archives` row per record.

The record's fields go in flat and as received (custom fields become their own columns); only
`archived` is replaced by its parsed timestamp, so the column is typed and never gets a variant.
A field whose name would land on one of our own columns, or on a documented field's column
while spelled differently (`Archived`), or that is blank, is renamed with a `contact_` prefix
instead of overwriting it; `raw_response` keeps the body exactly as received either way.
"""

from typing import Any

from dlt.common.normalizers.naming.snake_case import NamingConvention

from connector.models import ArchiveOutcome, parse_api_timestamp

AUDIT_META_COLUMNS: tuple[str, ...] = (
    "request_id",
    "requested_by",
    "reason",
    "requested_at",
    "run_id",
    "recovered",
    "record_source",
    "raw_response",
)
# Fields Routera documents; a custom field that normalises onto one of these but is spelled
# differently (`Archived`, `ID`) is renamed too, so it can never land in a typed column.
DEFAULT_FIELDS: tuple[str, ...] = (
    "id",
    "external_id",
    "first_name",
    "last_name",
    "email",
    "contact_owner",
    "created_at",
    "updated_at",
    "archived",
    "archived_by",
)
RENAMED_FIELD_PREFIX = "contact_"
BLANK_FIELD_NAME = "blank_field"


_naming = NamingConvention()


def column_of(key: str) -> str:
    """The column dlt stores `key` in; a blank key (dlt refuses to name it) gets a fixed name."""
    return _naming.normalize_identifier(key) if key.strip() else BLANK_FIELD_NAME


def _clashes(key: str) -> bool:
    """True when `key` would land in one of our own columns or a documented field's column."""
    if not key.strip():
        return True
    column = column_of(key)
    if column in DEFAULT_FIELDS:
        return key != column
    return column in AUDIT_META_COLUMNS or column.startswith("_dlt")


def log_row(outcome: ArchiveOutcome, run_id: str) -> dict[str, Any]:
    """The `archive_log` row of one outcome. A failed outcome keeps the body it failed on."""
    request = outcome.request
    return {
        "outcome_id": outcome.outcome_id,
        "request_id": request.request_id,
        "contact_id": request.contact_id,
        "status": outcome.status.value,
        "http_status": outcome.http_status,
        "error": outcome.error,
        "attempts": outcome.attempts,
        "requested_by": request.requested_by,
        "reason": request.reason,
        "requested_at": request.requested_at,
        "processed_at": outcome.processed_at,
        "run_id": run_id,
        "recovered": outcome.recovered,
        "record_source": outcome.record_source,
        "duplicate_of": outcome.duplicate_of,
        "response_body": None if outcome.record is not None else outcome.raw_response,
    }


def audit_row(outcome: ArchiveOutcome, run_id: str) -> dict[str, Any] | None:
    """The `contact_archives` row of one outcome, or None when it carries no record."""
    if outcome.record is None:
        return None
    row: dict[str, Any] = {}
    # Compare by the column dlt will store a key in, not by its text: `Run ID` and `run_id` land
    # in the same column.
    taken = {column_of(key) for key in outcome.record}
    for key, value in outcome.record.items():
        name = key
        if _clashes(key):
            name = f"{RENAMED_FIELD_PREFIX}{key.strip() or BLANK_FIELD_NAME}"
            while column_of(name) in taken or _clashes(name):
                name = f"{RENAMED_FIELD_PREFIX}{name}"
            taken.add(column_of(name))
        row[name] = value
    row["archived"] = parse_api_timestamp(outcome.record["archived"])
    request = outcome.request
    row.update(
        request_id=request.request_id,
        requested_by=request.requested_by,
        reason=request.reason,
        requested_at=request.requested_at,
        run_id=run_id,
        recovered=outcome.recovered,
        record_source=outcome.record_source,
        raw_response=outcome.raw_response,
    )
    return row
