"""What the API returns and what one queue request came to.

The API's answers are validated here and nowhere else, so a contract break (an `archived` that
is not a timestamp, a record for another id) is caught in one place and becomes a `failed`
outcome with its body kept, never an exception that drops data.
"""

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal
from uuid import uuid4

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from routera_archive.objects import ObjectType
from routera_archive.values import storable_record


class Status(StrEnum):
    """The outcome of one queue request; every value but `failed` is terminal."""

    ARCHIVED = "archived"
    ALREADY_ARCHIVED = "already_archived"
    NOT_FOUND = "not_found"
    INVALID = "invalid"
    DUPLICATE = "duplicate"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self is not Status.FAILED


TERMINAL_STATUSES: tuple[str, ...] = tuple(s.value for s in Status if s.is_terminal)

# Which answers made a record: the DELETE's; a GET's (after a 404, or a snapshot showing it
# archived already); the configured-`properties` snapshot overlaid with the DELETE's; a journal.
# `snapshot+get`: read back by GET, with the fields of a snapshot a crashed run journaled.
RecordSource = Literal["delete", "get", "snapshot+delete", "snapshot+get", "journal"]


class ArchiveRequest(BaseModel):
    """One row of the queue, as read from the destination.

    `object_id` is kept exactly as the queue holds it (possibly NULL or garbage): validation
    happens later so a bad id still produces an `invalid` outcome with its request id. It is
    the id of a record of `object_type` (contacts unless said otherwise), sent under that
    type's path only.

    Journals and call-worker lines written before object types existed name the id
    `contact_id`; it is read as `object_id` (of a contact: they had no `object_type`), so a
    crashed run of the previous release is finished by this one. What is written now says
    `object_id` and `object_type`.
    """

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    request_id: str
    # None when the queue's `object_type` names no type (`queued_type` holds its text): such
    # a request is only ever settled `invalid`, and no path can be made for it.
    object_type: ObjectType | None = ObjectType.CONTACTS
    object_id: str | None = Field(validation_alias=AliasChoices("object_id", "contact_id"))
    requested_by: str | None = None
    reason: str | None = None
    requested_at: datetime | None = None
    # The queue's `object_type` text when it is not a type's path segment (`Companies`).
    queued_type: str | None = None
    # Why the queue row cannot become a call (an unknown type, a `contact_id` that names
    # another record than `object_id`): the request is settled `invalid` with it, unsent.
    queue_problem: str | None = None

    @property
    def type_name(self) -> str:
        """The type as the queue spelled it and the log keeps it (`contacts` by default)."""
        if self.object_type is not None:
            return self.object_type.value
        return self.queued_type or ""


def parse_api_timestamp(value: Any) -> datetime:
    """Parse an ISO 8601 timestamp from the API; naive values are taken as UTC.

    Booleans, numbers and free text are refused: `archived: true` is exactly the contract break
    that must not be mistaken for a time.
    """
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO 8601 timestamp, got {type(value).__name__} {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"expected an ISO 8601 timestamp, got {value!r}") from None
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    try:
        # Every destination stores it in UTC: a time whose UTC falls outside years 1-9999
        # (9999-12-31T23:59:59-01:00) cannot be held, and is refused here, not in a load.
        parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{value!r} cannot be held as a UTC timestamp (years 1-9999)") from None
    return parsed


class ArchivedRecord(BaseModel):
    """A record whose `archived` is a timestamp; every other field is kept as received.

    Validated with the record's type as context (`{"object_type": ...}`), for its messages."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str
    archived: datetime
    archived_by: str | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id_is_text(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError(f"expected the {_singular(info)} id as text, got {value!r}")
        return str(value)

    @field_validator("archived", mode="before")
    @classmethod
    def _archived_is_timestamp(cls, value: Any) -> datetime:
        return parse_api_timestamp(value)


def _singular(info: ValidationInfo) -> str:
    """`contact`, `company`, ... as the context names the type; `record` when it does not."""
    kind = info.context.get("object_type") if isinstance(info.context, dict) else None
    return kind.singular if isinstance(kind, ObjectType) else "record"


class ContractError(ValueError):
    """An answer that breaks the documented contract; its text goes to `archive_log.error`."""


def parse_archived_record(
    body: str,
    object_type: ObjectType,
    expected_id: str,
    *,
    under: dict[str, Any] | None = None,
) -> tuple[ArchivedRecord, dict[str, Any], list[str]]:
    """Validate an answer body as the archived record of `expected_id`, of `object_type`.

    Returns the model, the record (every field, in received order, in a form every destination
    can hold: `routera_archive.values.storable_record`) and the keys of the fields that had to
    become text (a uint64, NaN, a value nested too deep), or raises
    ContractError with a reason a person can act on. An id that differs from ours only in case
    is ours: the API answered for the id it was asked about, in its canonical spelling.

    `under` (a snapshot's fields, `parse_snapshot`) lies under the answer: the record is both,
    the answer's value winning for every key it carries.
    """
    singular = object_type.singular
    decoded = _json_object(body)
    if "id" not in decoded:
        raise ContractError("the record has no `id`")
    if "archived" not in decoded:
        raise ContractError("the record has no `archived` field")
    try:
        known = {key: decoded[key] for key in ("id", "archived", "archived_by") if key in decoded}
        archived = ArchivedRecord.model_validate(known, context={"object_type": object_type})
    except ValidationError as exc:
        problems = "; ".join(
            f"`{'.'.join(str(p) for p in err['loc'])}`: {err['msg']}" for err in exc.errors()
        )
        raise ContractError(f"the record is not an archived {singular} ({problems})") from None
    if archived.id.casefold() != expected_id.casefold():
        raise ContractError(f"the record is for {singular} {archived.id!r}, not {expected_id!r}")
    record, as_text = storable_record(decoded if under is None else {**under, **decoded})
    return archived, record, as_text


def parse_snapshot(body: str, object_type: ObjectType, expected_id: str) -> dict[str, Any]:
    """The fields of an active record's snapshot (read before its DELETE), or ContractError."""
    decoded = _json_object(body)
    if str(decoded.get("id", "")).casefold() != expected_id.casefold():
        raise ContractError(
            f"the snapshot is for {object_type.singular} {decoded.get('id')!r}, not {expected_id!r}"
        )
    return decoded


def _json_object(body: str) -> dict[str, Any]:
    try:
        decoded = json.loads(body)
    except ValueError:
        raise ContractError("the body is not JSON") from None
    except RecursionError:
        raise ContractError("the body nests deeper than a JSON reader goes") from None
    if not isinstance(decoded, dict):
        raise ContractError(f"the body is a JSON {type(decoded).__name__}, not an object")
    return decoded


def read_active_flag(body: str) -> bool | None:
    """True when a GET body shows an active (not archived) record, None when it cannot tell."""
    try:
        decoded = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if isinstance(decoded, dict) and decoded.get("archived") is False:
        return True
    return None


class ArchiveOutcome(BaseModel):
    """What became of one queue request in one run: the unit the log and the audit are made of."""

    model_config = ConfigDict(frozen=True)

    request: ArchiveRequest
    status: Status
    # Stable through the journal and dlt's packages: a package loaded twice after a crash
    # (dlt loads at least once) merges on it instead of adding a second log row.
    outcome_id: str = Field(default_factory=lambda: uuid4().hex)
    http_status: int | None = None
    error: str | None = None
    attempts: int = 0
    processed_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    # The record's fields exactly as decoded from `raw_response`, for archived/already_archived.
    record: dict[str, Any] | None = None
    # The body the record came from, or the unexpected body behind a `failed` outcome.
    raw_response: str | None = None
    # The snapshot's body (`GET /{type}/{id}?properties=...` before the DELETE), when taken.
    snapshot_response: str | None = None
    record_source: RecordSource | None = None
    # True when the record was not taken from this run's own DELETE answer (GET or journal).
    recovered: bool = False
    # For a `duplicate`: the request that stands for the same record.
    duplicate_of: str | None = None
    # Keys of the record whose values no column holds as they are (a uint64, NaN, nesting too
    # deep): written as text, each in a text column of its own (`values.storable_record`).
    text_fields: list[str] = Field(default_factory=list)


def with_journaled_snapshot(outcome: ArchiveOutcome, body: str) -> ArchiveOutcome:
    """`outcome`'s record (read back by GET) completed with the fields of the snapshot a
    crashed run read before its DELETE (`body`): a field the GET holds keeps its value, one
    only the snapshot held is added. The outcome as it was when `body` is not an object."""
    try:
        decoded = _json_object(body)
    except ContractError:
        return outcome
    if outcome.record is None:
        return outcome
    snapshot, as_text = storable_record(decoded)
    record = dict(outcome.record)
    text_fields = list(outcome.text_fields)
    for key, value in snapshot.items():
        if key not in record:
            record[key] = value
            if key in as_text:
                text_fields.append(key)
    return outcome.model_copy(
        update={
            "record": record,
            "text_fields": text_fields,
            "snapshot_response": outcome.snapshot_response or body,
            "record_source": "snapshot+get",
        }
    )
