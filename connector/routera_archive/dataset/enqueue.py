"""Adding requests to the queue table: ids one per line, or a CSV with a `contact_id` column."""

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
from routera_archive.http.ids import id_preview, validate_contact_id
from routera_archive.names import QUEUE_TABLE

QUEUE_FIELDS = ("contact_id", "request_id", "requested_by", "reason", "requested_at")


@dataclass(frozen=True)
class ParsedInput:
    rows: list[dict[str, Any]]
    skipped_blank: int


def parse_ids(text: str) -> ParsedInput:
    """Parse ids one a line, or a CSV whose header has a `contact_id` column.

    Lines are stripped of surrounding whitespace (that is file formatting, not part of an id);
    what is inside a line is kept as given and judged later by the run (`invalid` if need be).
    """
    text = text.removeprefix("\ufeff")  # the byte-order mark of Excel's "CSV UTF-8"
    # Only \n (and \r\n) end a line: str.splitlines() would also split at \x1c, \x85,
    # U+2028 and others, turning one line with a control character into two valid-looking ids.
    lines = [line.removesuffix("\r") for line in text.removesuffix("\n").split("\n")]
    first = next((line for line in lines if line.strip()), "")
    header = [cell.strip().lower() for cell in next(csv.reader([first]), [])] if first else []
    if "contact_id" in header and ("," in first or header == ["contact_id"]):
        return _parse_csv("\n".join(lines[lines.index(first) :]))
    rows, blank = [], 0
    for line in lines:
        value = line.strip()
        if not value:
            blank += 1
            continue
        rows.append({"contact_id": value})
    return ParsedInput(rows, blank)


def _parse_csv(text: str) -> ParsedInput:
    reader = csv.DictReader(io.StringIO(text))
    rows, blank = [], 0
    for record in reader:
        normalized = {(k or "").strip().lower(): v for k, v in record.items()}
        contact_id = (normalized.get("contact_id") or "").strip()
        if not contact_id:
            blank += 1
            continue
        row: dict[str, Any] = {"contact_id": contact_id}
        for name in ("request_id", "requested_by", "reason"):
            value = (normalized.get(name) or "").strip()
            if value:
                row[name] = value
        rows.append(row)
    return ParsedInput(rows, blank)


def queue_rows(
    rows: Iterable[dict[str, Any]], *, requested_by: str | None, reason: str | None
) -> Iterator[dict[str, Any]]:
    """Complete rows with a fresh request id, who asked, why and when."""
    now = datetime.now(UTC)
    for row in rows:
        yield {
            "request_id": row.get("request_id") or uuid4().hex,
            "contact_id": row["contact_id"],
            "requested_by": row.get("requested_by") or requested_by,
            "reason": row.get("reason") or reason,
            "requested_at": now,
        }


def invalid_rows(rows: Iterable[dict[str, Any]]) -> list[tuple[int, str]]:
    """(1-based position, reason) of every row whose contact id can never be valid."""
    problems = []
    for position, row in enumerate(rows, start=1):
        try:
            validate_contact_id(row.get("contact_id"))
        except InvalidObjectId as exc:
            problems.append((position, f"{id_preview(row.get('contact_id'))}: {exc.reason}"))
    return problems


def enqueue(
    pipeline: dlt.Pipeline,
    rows: list[dict[str, Any]],
    *,
    requested_by: str | None = None,
    reason: str | None = None,
    queue_table: str = QUEUE_TABLE,
    skip_invalid: bool = False,
) -> int:
    """Append `rows` to the queue table in the pipeline's dataset; returns how many.

    Ids that can never be valid are refused before anything is written (some destinations
    would even alter them: DuckDB cuts a string at a NUL), unless `skip_invalid` drops them.
    """
    problems = invalid_rows(rows)
    if problems and not skip_invalid:
        shown = "; ".join(f"row {pos} {why}" for pos, why in problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise QueueError(
            f"{len(problems)} ids can never be Routera contact ids, nothing was enqueued: "
            f"{shown}{more}; fix them or pass --skip-invalid"
        )
    if problems:
        bad = {pos for pos, _ in problems}
        rows = [row for pos, row in enumerate(rows, start=1) if pos not in bad]
    if not rows:
        raise QueueError("no contact ids to enqueue")
    source = queue_requests(list(queue_rows(rows, requested_by=requested_by, reason=reason)))
    if queue_table != QUEUE_TABLE:
        source.resources[QUEUE_TABLE].apply_hints(table_name=queue_table)
    pipeline.run(source)
    return len(rows)
