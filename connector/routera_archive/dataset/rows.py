"""Outcomes become rows: one `archive_log` row per outcome, one audit row per record.

The record's fields go in flat and as received (custom fields become their own columns); only
`archived` is replaced by its parsed timestamp, so the column is typed and never gets a variant.
Which column each key lands in is `routera_archive.dataset.fields`' business: no two keys ever
share one, and no key lands on one of our own columns. `raw_response` keeps the body exactly as
received.
"""

from typing import Any

from routera_archive.dataset.canonical import sha256_text
from routera_archive.dataset.fields import AUDIT_META_COLUMNS, FieldColumns
from routera_archive.models import ArchiveOutcome, ArchiveRequest, parse_api_timestamp
from routera_archive.objects import ObjectType
from routera_archive.redaction import scrub
from routera_archive.values import NUL_STAND_IN, storable_text

__all__ = ["AUDIT_META_COLUMNS", "NUL_STAND_IN", "audit_row", "log_row"]


# The key under which a field kept as text gets its column (`lead_score_as_text`).
AS_TEXT_SUFFIX = " as text"


def _visible(text: str | None) -> str | None:
    """Text as a destination can hold it (`values.storable_text`): a NUL, which dlt's writers
    drop, written as a visible stand-in, so the log shows an id as queued (and matches the
    queue's request id, which gets the same stand-in in SQL)."""
    return None if text is None else storable_text(text)


def _told(text: str | None) -> str | None:
    """Free text (an error, a body, a reason) as stored: visible, and with every known secret
    masked (`redaction`: an API may echo one). Ids are left as queued, to stay matchable."""
    return None if text is None else _visible(scrub(text))


# A request as `archive_log` identifies it: its id, its type and its record's id, as the log
# holds them (`log_row`).
RequestKey = tuple[str, str, str | None]


def request_key(request: ArchiveRequest) -> RequestKey:
    return (
        _visible(request.request_id) or "",
        _visible(request.type_name) or "",
        _visible(request.object_id),
    )


def log_row(outcome: ArchiveOutcome, run_id: str) -> dict[str, Any]:
    """The `archive_log` row of one outcome. A failed outcome keeps the body it failed on."""
    request = outcome.request
    return {
        "outcome_id": outcome.outcome_id,
        "request_id": _visible(request.request_id),
        # `contact_id` as before types existed, for a contact only; every request's id is in
        # `object_id`, its type (as queued, for one that names no type) in `object_type`.
        "contact_id": (
            _visible(request.object_id) if request.object_type is ObjectType.CONTACTS else None
        ),
        "object_type": _visible(request.type_name),
        "object_id": _visible(request.object_id),
        "status": outcome.status.value,
        "http_status": outcome.http_status,
        "error": _told(outcome.error),
        "attempts": outcome.attempts,
        "requested_by": _told(request.requested_by),
        "reason": _told(request.reason),
        "requested_at": request.requested_at,
        "processed_at": outcome.processed_at,
        "run_id": run_id,
        "recovered": outcome.recovered,
        "record_source": outcome.record_source,
        "duplicate_of": outcome.duplicate_of,
        "response_body": None if outcome.record is not None else _told(outcome.raw_response),
    }


def _unsecret(value: Any) -> Any:
    """A record's value with every known secret masked in its text, nested ones too: an API
    may echo what it was sent into a field (a `note` quoting the request's headers), and the
    field's column would keep it, though `raw_response` is masked. The record's `id` is left
    as it is (`audit_row`): it is matched against the queue."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, list):
        return [_unsecret(item) for item in value]
    if isinstance(value, dict):
        return {key: _unsecret(item) for key, item in value.items()}
    return value


def _kind(outcome: ArchiveOutcome) -> ObjectType:
    return outcome.request.object_type or ObjectType.CONTACTS


def audit_row(
    outcome: ArchiveOutcome, run_id: str, columns: FieldColumns | None = None
) -> dict[str, Any] | None:
    """The audit row of one outcome (for its type's table), or None when it carries no record.

    Without `columns` the assignments start from scratch (fine for one-off use; the runner
    passes the dataset's own so they stay stable across runs).
    """
    if outcome.record is None:
        return None
    columns = columns if columns is not None else FieldColumns(object_type=_kind(outcome))
    contact_id = str(outcome.record.get("id"))
    row: dict[str, Any] = {}
    for key, value in outcome.record.items():
        # A value kept as text (a uint64, NaN) in a text column of its own: in a column dlt
        # typed as a number from other records it would be made a number again, and fail.
        name = f"{key}{AS_TEXT_SUFFIX}" if key in outcome.text_fields else key
        kept = value if key == "id" else _unsecret(value)
        row[columns.column_for(name, run_id=run_id, contact_id=contact_id)] = kept
    row["archived"] = parse_api_timestamp(outcome.record["archived"])
    request = outcome.request
    raw_response = _told(outcome.raw_response)
    snapshot_response = _told(outcome.snapshot_response)
    row.update(
        request_id=_visible(request.request_id),
        requested_by=_told(request.requested_by),
        reason=_told(request.reason),
        requested_at=request.requested_at,
        run_id=run_id,
        recovered=outcome.recovered,
        record_source=outcome.record_source,
        raw_response=raw_response,
        snapshot_response=snapshot_response,
        # Of the text as stored (secrets masked, NULs visible): what `verify` can recompute.
        record_sha256=None if raw_response is None else sha256_text(raw_response),
        snapshot_sha256=None if snapshot_response is None else sha256_text(snapshot_response),
    )
    return row
