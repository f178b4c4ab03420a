"""Outcomes become rows: one `archive_log` row per outcome, one `contact_archives` row per record.

The record's fields go in flat and as received (custom fields become their own columns); only
`archived` is replaced by its parsed timestamp, so the column is typed and never gets a variant.
A field whose name would land on one of our own columns is renamed with a `contact_` prefix
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
RENAMED_FIELD_PREFIX = "contact_"


_naming = NamingConvention()


def _clashes(key: str) -> bool:
    """True when dlt would store `key` in one of our own columns (its name after normalisation)."""
    column = _naming.normalize_identifier(key)
    return column in AUDIT_META_COLUMNS or column.startswith("_dlt")


def log_row(outcome: ArchiveOutcome, run_id: str) -> dict[str, Any]:
    """The `archive_log` row of one outcome. A failed outcome keeps the body it failed on."""
    request = outcome.request
    return {
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
    received = set(outcome.record)
    for key, value in outcome.record.items():
        name = key
        if _clashes(key):
            name = f"{RENAMED_FIELD_PREFIX}{key}"
            while name in received or name in row or _clashes(name):
                name = f"{RENAMED_FIELD_PREFIX}{name}"
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
