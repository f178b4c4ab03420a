"""Adding requests to the queue table: ids one per line, or a CSV with a `contact_id` or
`object_id` column (and, for records other than contacts, `object_type`).

A contact is written as it always was (`contact_id`); a record of another type as
`object_type` and `object_id`, so the queue reads the same to this release and to a person
(`dataset.queue`).
"""

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import dlt

from routera_archive.dataset.tables import queue_requests
from routera_archive.errors import InvalidObjectId, QueueError
from routera_archive.http.ids import id_preview, validate_object_id
from routera_archive.names import QUEUE_TABLE
from routera_archive.objects import (
    OBJECT_TYPE_FIELD,
    NotAnObjectType,
    ObjectType,
    parse_object_type,
)

QUEUE_FIELDS = (
    "contact_id",
    "object_type",
    "object_id",
    "request_id",
    "requested_by",
    "reason",
    "requested_at",
)
# A CSV names its ids in one of these columns (the first present wins).
_ID_HEADERS = ("contact_id", "object_id")


@dataclass(frozen=True)
class ParsedInput:
    rows: list[dict[str, Any]]
    skipped_blank: int


def parse_ids(text: str) -> ParsedInput:
    """Parse ids one a line, or a CSV whose header has a `contact_id` or `object_id` column.

    Lines are stripped of surrounding whitespace (that is file formatting, not part of an id);
    what is inside a line is kept as given and judged later by the run (`invalid` if need be).
    """
    text = text.removeprefix("\ufeff")  # the byte-order mark of Excel's "CSV UTF-8"
    # Only \n (and \r\n) end a line: str.splitlines() would also split at \x1c, \x85,
    # U+2028 and others, turning one line with a control character into two valid-looking ids.
    lines = [line.removesuffix("\r") for line in text.removesuffix("\n").split("\n")]
    first = next((line for line in lines if line.strip()), "")
    header = [cell.strip().lower() for cell in next(csv.reader([first]), [])] if first else []
    named = next((name for name in _ID_HEADERS if name in header), None)
    if named is not None and ("," in first or header == [named]):
        return _parse_csv("\n".join(lines[lines.index(first) :]))
    rows, blank = [], 0
    for line in lines:
        value = line.strip()
        if not value:
            blank += 1
            continue
        rows.append({"contact_id": value})
    return ParsedInput(rows, blank)


# Set on a parsed row whose `contact_id` cell does not simply name the contact: the cell's
# value (`invalid_rows` refuses such a row, as the run would: `queue.invalid_reason`).
CLASHING_CONTACT_ID = "clashing_contact_id"


def _parse_csv(text: str) -> ParsedInput:
    """A row's id is its `object_id`, else its `contact_id`; a `contact_id` beside an
    `object_id`, or on a row that names its type, is kept aside for `invalid_rows`, which
    refuses it unless it names that row's own contact: a contact id is never taken for
    another record's."""
    reader = csv.DictReader(io.StringIO(text))
    rows, blank = [], 0
    for record in reader:
        normalized = {(k or "").strip().lower(): v for k, v in record.items()}
        by_object = (normalized.get("object_id") or "").strip()
        by_contact = (normalized.get("contact_id") or "").strip()
        object_id = by_object or by_contact
        if not object_id:
            blank += 1
            continue
        row: dict[str, Any] = {"contact_id": object_id}
        # Beside an object_id, or on a row naming its own type, a contact_id cell must name
        # that row's contact (`invalid_rows`). A file of one type's ids in a `contact_id`
        # column, given its type by --object-type, is read as that type's ids.
        own_type = (normalized.get(OBJECT_TYPE_FIELD) or "").strip()
        if by_contact and (by_object or own_type):
            row[CLASHING_CONTACT_ID] = by_contact
        for name in (OBJECT_TYPE_FIELD, "request_id", "requested_by", "reason"):
            value = (normalized.get(name) or "").strip()
            if value:
                row[name] = value
        rows.append(row)
    return ParsedInput(rows, blank)


def _type_of(row: dict[str, Any], default: ObjectType) -> ObjectType | NotAnObjectType:
    """A row's type: its own `object_type` (a CSV column) or the one given for all rows."""
    named = row.get(OBJECT_TYPE_FIELD)
    return default if named is None else parse_object_type(named)


def queue_rows(
    rows: Iterable[dict[str, Any]],
    *,
    requested_by: str | None,
    reason: str | None,
    object_type: ObjectType = ObjectType.CONTACTS,
) -> Iterator[dict[str, Any]]:
    """Complete rows with a fresh request id, who asked, why and when. A row's id is in
    `contact_id` as parsed; it stays there for a contact and moves to `object_id`, with the
    type, for any other type."""
    now = datetime.now(UTC)
    for row in rows:
        kind = _type_of(row, object_type)
        assert isinstance(kind, ObjectType), "invalid_rows refuses a row without a type"
        named: dict[str, Any] = (
            {"contact_id": row["contact_id"]}
            if kind is ObjectType.CONTACTS
            else {"object_type": kind.value, "object_id": row["contact_id"]}
        )
        yield {
            "request_id": row.get("request_id") or uuid4().hex,
            **named,
            "requested_by": row.get("requested_by") or requested_by,
            "reason": row.get("reason") or reason,
            "requested_at": now,
        }


def invalid_rows(
    rows: Iterable[dict[str, Any]], object_type: ObjectType = ObjectType.CONTACTS
) -> list[tuple[int, str]]:
    """(1-based position, reason) of every row whose type is not one or whose id can never be
    valid."""
    problems = []
    for position, row in enumerate(rows, start=1):
        kind = _type_of(row, object_type)
        if isinstance(kind, NotAnObjectType):
            problems.append((position, kind.reason))
            continue
        clash = row.get(CLASHING_CONTACT_ID)
        reason = None if clash is None else _clash_reason(kind, clash, row["contact_id"])
        if reason is not None:
            problems.append((position, reason))
            continue
        try:
            validate_object_id(row.get("contact_id"), field=kind.id_field)
        except InvalidObjectId as exc:
            problems.append((position, f"{id_preview(row.get('contact_id'))}: {exc.reason}"))
    return problems


def _clash_reason(kind: ObjectType, contact_id: str, object_id: str) -> str | None:
    """Why a row's `contact_id` cell cannot stand beside its id, or None when it names the
    row's own contact: the run's rule (`queue.invalid_reason`), for enqueue to refuse first."""
    if contact_id != object_id:
        return (
            f"contact_id {id_preview(contact_id)} and object_id {id_preview(object_id)} "
            "differ: the row names two records"
        )
    if kind is not ObjectType.CONTACTS:
        return (
            f"{id_preview(contact_id)}: contact_id names a contact, and this row is of "
            f"{kind.value}: give its id in object_id alone"
        )
    return None


def _word(rows: Iterable[dict[str, Any]], object_type: ObjectType) -> str:
    """`contact`, `company`, ... when every row is of `object_type`, else `record`."""
    own = any(row.get(OBJECT_TYPE_FIELD) is not None for row in rows)
    return "record" if own else object_type.singular


def enqueue(
    pipeline: dlt.Pipeline,
    rows: list[dict[str, Any]],
    *,
    requested_by: str | None = None,
    reason: str | None = None,
    queue_table: str = QUEUE_TABLE,
    skip_invalid: bool = False,
    object_type: ObjectType = ObjectType.CONTACTS,
) -> int:
    """Append `rows` to the queue table in the pipeline's dataset; returns how many.

    Ids that can never be valid, and types that are not one, are refused before anything is
    written (some destinations would even alter an id: DuckDB cuts a string at a NUL), unless
    `skip_invalid` drops them. `object_type`: the type of every row that names none.
    """
    problems = invalid_rows(rows, object_type)
    if problems and not skip_invalid:
        shown = "; ".join(f"row {pos} {why}" for pos, why in problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise QueueError(
            f"{len(problems)} ids can never be Routera {_word(rows, object_type)} ids, "
            "nothing was enqueued: "
            f"{shown}{more}; fix them or pass --skip-invalid"
        )
    if problems:
        bad = {pos for pos, _ in problems}
        rows = [row for pos, row in enumerate(rows, start=1) if pos not in bad]
    if not rows:
        raise QueueError("no ids to enqueue")
    queued = queue_rows(rows, requested_by=requested_by, reason=reason, object_type=object_type)
    source = queue_requests(list(queued))
    if queue_table != QUEUE_TABLE:
        source.resources[QUEUE_TABLE].apply_hints(table_name=queue_table)
    pipeline.run(source)
    return len(rows)
