"""Redaction: a person's data out of the audit trail, on the record and with no copy left.

The rows to redact are chosen by record id (`contact_ids`), by request (`request_ids`) or by
age (`older_than_days`, on `archived`). In each one the personal-data columns
(`personal_fields`, by the API's field names; renamed custom fields by their column, variant
columns with them) are set to NULL, and inside `raw_response` and `snapshot_response` every
value under those fields, at any depth, becomes `"[redacted]"`: every key and every other
value stays. The person's e-mail addresses and phone numbers (`is_echoable`) are also
replaced where the same row or its outcomes quote them; facts of the audit (`is_kept_field`)
are never changed.

A redaction is on the record, and in the chain: it is a run of mode `redact` in
`archive_runs`, a row of `redactions` (who, when, why, which rows, which columns, each row's
hash as left), and a link whose digests cover the redacted rows as they are now. `verify`
takes a row's newest digest when a redaction chained it, so a recorded redaction is intact
and any other change is not; a row that no longer matched its digest before the redaction is
redacted but not chained again (`unverified_rows`), so no earlier edit is laundered.

Crash-safe: the changes and the `redactions` row are one transaction; the link follows. A
redaction killed between the two is on record but unlinked: no other run adopts its rows
(`chain.unfinished_redactions`) and the next `redact` or run links it (`finish_redactions`).
A marker in the pipeline folder, written before the transaction, makes the next `redact`
remove the copies (`dataset.leftovers`) if the first was stopped before it had.
"""

import contextlib
import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from uuid import uuid4

import dlt
from dlt.common.schema.typing import TColumnSchema
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from routera_archive import __version__
from routera_archive.config import DEFAULT_PERSONAL_FIELDS
from routera_archive.dataset.canonical import row_sha256
from routera_archive.dataset.chain import (
    ChainLink,
    link_run,
    read_links,
    row_key,
    select_rows,
    stored_types,
    unfinished_redactions,
    utc_session,
)
from routera_archive.dataset.fields import column_of
from routera_archive.dataset.leftovers import Cleanup, clean_copies, pending_in
from routera_archive.dataset.loading import load_fresh
from routera_archive.errors import ConfigurationError, LocalStorageError, RecoveryPendingError
from routera_archive.names import (
    CHAIN_TABLE,
    DIGESTS_TABLE,
    FIELDS_TABLE,
    LOG_TABLE,
    REDACTIONS_TABLE,
    RUNS_TABLE,
    SOURCE_NAME,
)
from routera_archive.objects import ObjectType

logger = logging.getLogger(__name__)

REDACTED: Final = "[redacted]"
"""What a personal value becomes inside a stored answer."""
REDACT_MODE: Final = "redact"
"""A redaction's `mode` in `archive_runs`: `verify` lets its digests replace earlier ones."""
MIN_ECHOED: Final = 6
"""The shortest e-mail address or phone number looked for where a row quotes it elsewhere."""
CLEANUP_MARKER: Final = "redaction.cleanup-pending"
"""In the pipeline folder while a redaction's copies are being removed: the next `redact`
removes them again if it is there (`doctor` warns of it)."""
BODY_COLUMNS: Final = ("raw_response", "snapshot_response")
LOG_TEXT_COLUMNS: Final = ("response_body", "error", "requested_by", "reason")
# Never changed: a row's identity, its request and run, its hashes, and the answers (handled
# as JSON on their own: BODY_COLUMNS). Every other text column is searched for echoed values.
_KEPT: Final = frozenset(
    {"id", "request_id", "run_id", "record_source", "record_sha256", "snapshot_sha256"}
    | set(BODY_COLUMNS)
)

REDACTIONS_COLUMNS: dict[str, TColumnSchema] = {
    "redaction_id": {"data_type": "text", "nullable": False},
    # The same id: the run that chains this row is the redaction's own.
    "run_id": {"data_type": "text", "nullable": False},
    "redacted_at": {"data_type": "timestamp", "nullable": False},
    "redacted_by": {"data_type": "text"},
    "reason": {"data_type": "text"},
    # What chose the rows: {"contact_ids": [...], "request_ids": [...], "older_than_days": n}.
    "selector": {"data_type": "json"},
    "personal_fields": {"data_type": "json"},
    # {table: [column, ...]}: the columns changed in any row of that table.
    "columns": {"data_type": "json"},
    # {table: [key, ...]}: every row changed.
    "rows": {"data_type": "json"},
    "row_count": {"data_type": "bigint"},
    # {table: {key: SHA-256}}: each changed row's hash as the change leaves it, so a
    # redaction killed before its link is finished on exactly the rows it changed.
    "row_hashes": {"data_type": "json"},
    # {table: [key, ...]}: rows that did not match their digest before the change (edited
    # since they were chained): redacted, but not chained again, so `verify` still says so.
    "unverified_rows": {"data_type": "json"},
}


@dataclass(frozen=True)
class RedactionRequest:
    """What to redact, who asks and why."""

    contact_ids: tuple[str, ...] = ()
    request_ids: tuple[str, ...] = ()
    older_than_days: int | None = None
    redacted_by: str = ""
    reason: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.contact_ids or self.request_ids or self.older_than_days is not None)

    def selector(self) -> dict[str, Any]:
        return {
            "contact_ids": sorted(self.contact_ids),
            "request_ids": sorted(self.request_ids),
            "older_than_days": self.older_than_days,
        }

    def why(self) -> str:
        if self.reason:
            return self.reason
        if self.older_than_days is not None and not (self.contact_ids or self.request_ids):
            return f"retention: archived more than {self.older_than_days} days ago"
        return "erasure request"


@dataclass
class RowChange:
    """One row's new values, by column (None: set to NULL), and its hash before and after."""

    table: str
    key_column: str
    key: str
    values: dict[str, Any]
    before_sha256: str = ""
    after_sha256: str = ""

    @property
    def place(self) -> tuple[str, str]:
        """(table, key) as the chain names the row (`chain.row_key`)."""
        return self.table, row_key({self.key_column: self.key}, (self.key_column,))


@dataclass
class Redaction:
    """What a redaction changed (or, dry, would change)."""

    redaction_id: str
    dry_run: bool
    request: RedactionRequest
    changes: list[RowChange] = field(default_factory=list)
    # Rows edited since they were chained (see REDACTIONS_COLUMNS["unverified_rows"]).
    unverified: dict[str, list[str]] = field(default_factory=dict)
    # True for a redaction killed before its link and finished by a later command.
    finished_late: bool = False
    # How many rows the selectors matched (redacted now or already).
    matched: int = 0
    # Nothing redacted: only the copies a stopped redaction left were removed.
    cleanup_only: bool = False
    link: ChainLink | None = None
    cleanup: Cleanup | None = None

    @property
    def rows(self) -> dict[str, list[str]]:
        """table -> keys of every row recorded as redacted."""
        found: dict[str, set[str]] = {}
        for change in self.changes:
            found.setdefault(change.table, set()).add(change.key)
        return {table: sorted(keys) for table, keys in sorted(found.items())}

    @property
    def row_count(self) -> int:
        return sum(len(keys) for keys in self.rows.values())

    @property
    def columns(self) -> dict[str, list[str]]:
        found: dict[str, set[str]] = {}
        for change in self.changes:
            found.setdefault(change.table, set()).update(change.values)
        return {table: sorted(names) for table, names in sorted(found.items())}

    def summary(self) -> dict[str, Any]:
        return {
            "redaction_id": self.redaction_id,
            "dry_run": self.dry_run,
            "reason": self.request.why(),
            "redacted_by": self.request.redacted_by,
            "selector": self.request.selector(),
            "row_count": self.row_count,
            "rows": self.rows,
            "columns": self.columns,
            "unverified_rows": self.unverified,
            "finished_late": self.finished_late,
            "matched": self.matched,
            "cleanup_only": self.cleanup_only,
            "chain_head": None if self.link is None else self.link.chain_sha256,
            "cleanup": None if self.cleanup is None else self.cleanup.as_dict(),
        }


# ------------------------------------------------------------------- values in a row
def is_echoable(value: str) -> bool:
    """Whether a personal value is looked for where it is quoted (a note, an error body): an
    e-mail address or a phone number only. A name cannot be told from the same word in other
    text ("Johnson" in "Johnson Controls"), so a name is redacted under its own field only."""
    if len(value) < MIN_ECHOED or value == REDACTED:
        return False
    if "@" in value:
        return True
    digits = sum(character.isdigit() for character in value)
    return digits >= 7 and all(c.isdigit() or c in " +-().x/" for c in value)


def redact_text(text: str, values: Iterable[str]) -> str:
    """`text` with every occurrence of each value replaced (in any case), longest first."""
    for value in sorted(set(values), key=len, reverse=True):
        if value and value != REDACTED:
            text = re.sub(re.escape(value), REDACTED, text, flags=re.IGNORECASE)
    return text


def _leaves(value: Any) -> Iterator[str]:
    """Every scalar inside a value (a personal field may hold a list or an object)."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    elif value is not None and not isinstance(value, bool):
        yield str(value)


def _personal_values_in(document: Any, keys: frozenset[str]) -> Iterator[str]:
    if isinstance(document, dict):
        for key, value in document.items():
            if key in keys:
                yield from _leaves(value)
            else:
                yield from _personal_values_in(value, keys)
    elif isinstance(document, list):
        for item in document:
            yield from _personal_values_in(item, keys)


def _redacted_value(value: Any) -> Any:
    """A personal field's value with every scalar in it redacted, its shape (keys) kept."""
    if isinstance(value, dict):
        return {key: _redacted_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_redacted_value(item) for item in value]
    return value if value is None or isinstance(value, bool) else REDACTED


def _redacted_document(
    document: Any, keys: frozenset[str], echoed: Sequence[str], kept: frozenset[str]
) -> Any:
    if isinstance(document, dict):
        return {
            key: (
                _redacted_value(value)
                if key in keys
                else value
                if key in kept
                else _redacted_document(value, keys, echoed, kept)
            )
            for key, value in document.items()
        }
    if isinstance(document, list):
        return [_redacted_document(item, keys, echoed, kept) for item in document]
    if isinstance(document, str):
        return redact_text(document, echoed)
    return document


def redact_body(
    text: str, keys: frozenset[str], values: Sequence[str], kept: frozenset[str] = frozenset()
) -> str:
    """A stored answer with the personal fields' values replaced (see the module's docstring);
    `kept` names fields whose values are never touched (`archived_by`, ...). A body that is
    not JSON (cut short, hostile) has each known value replaced as text."""
    try:
        document = json.loads(text)
    except ValueError:
        return redact_text(text, [value for value in values if len(value) >= 3])
    echoed = [value for value in values if is_echoable(value)]
    redacted = _redacted_document(document, keys, echoed, kept)
    if redacted == document:
        return text
    return json.dumps(redacted, ensure_ascii=False, separators=(",", ":"))


def _loads(text: Any) -> Any:
    try:
        return json.loads(str(text))
    except ValueError:
        return None


def personal_values(
    row: Mapping[str, Any], personal_columns: frozenset[str], personal_keys: frozenset[str]
) -> set[str]:
    """The personal values a row holds: in its personal columns and under personal keys of
    its stored answers."""
    values = {leaf for name in personal_columns for leaf in _leaves(row.get(name))}
    for body in BODY_COLUMNS:
        if row.get(body) is not None:
            values.update(_personal_values_in(_loads(row[body]), personal_keys))
    values.discard(REDACTED)
    return values


def row_change(
    table: str,
    row: Mapping[str, Any],
    *,
    personal_columns: frozenset[str],
    personal_keys: frozenset[str],
    text_columns: frozenset[str],
) -> dict[str, Any]:
    """The new values of an audit row's changed columns ({} when already redacted)."""
    ordered = sorted(personal_values(row, personal_columns, personal_keys))
    changed: dict[str, Any] = {
        name: None for name in sorted(personal_columns) if row.get(name) is not None
    }
    kept = frozenset(name for name in row if is_kept_field(name)) - personal_keys
    for body in BODY_COLUMNS:
        text = row.get(body)
        if text is None:
            continue
        new = redact_body(str(text), personal_keys, ordered, kept)
        if new != text:
            changed[body] = new
    echoed = [value for value in ordered if is_echoable(value)]
    for name in sorted(text_columns - personal_columns - set(changed) - kept):
        text = row.get(name)
        if isinstance(text, str) and (new := redact_text(text, echoed)) != text:
            changed[name] = new
    return changed


def is_kept_field(name: str) -> bool:
    """A record's field whose value an audit reads as a fact about the archiving, not about
    the person: never changed by a redaction unless `personal_fields` names it."""
    return name in _KEPT_FIELDS or name.endswith("_owner")


_KEPT_FIELDS: Final = frozenset(
    {"id", "external_id", "archived", "archived_by", "created_at", "updated_at"}
)


# ------------------------------------------------------------------------- planning
def _personal_columns(
    client: Any, kind: ObjectType, fields: Sequence[str], columns: Mapping[str, str]
) -> frozenset[str]:
    """A type's columns that hold `fields`: a renamed custom field's by `custom_fields`."""
    renamed: dict[str, str] = {}
    table = client.make_qualified_table_name(FIELDS_TABLE)
    try:
        for row in select_rows(
            client,
            f"SELECT field_key, column_name, object_type FROM {table}",
        ):
            if (row.get("object_type") or ObjectType.CONTACTS.value) == kind.value:
                renamed[str(row["field_key"])] = str(row["column_name"])
    except DatabaseUndefinedRelation:
        pass
    found = {renamed.get(name, column_of(name)) for name in fields}
    # A value dlt could not coerce to the column's type went to a variant column beside it.
    return frozenset(
        name
        for name in columns
        if name not in _KEPT and (name in found or name.split("__v_", 1)[0] in found)
    )


def _where(kind: ObjectType, request: RedactionRequest, now: datetime) -> tuple[str, list[Any]]:
    conditions: list[str] = []
    args: list[Any] = []
    if request.contact_ids and kind is ObjectType.CONTACTS:
        conditions.append(f"id IN ({', '.join(['%s'] * len(request.contact_ids))})")
        args.extend(request.contact_ids)
    if request.request_ids:
        conditions.append(f"request_id IN ({', '.join(['%s'] * len(request.request_ids))})")
        args.extend(request.request_ids)
    if request.older_than_days is not None:
        conditions.append("archived < %s")
        args.append(now - timedelta(days=request.older_than_days))
    return " OR ".join(conditions), args


@dataclass
class Plan:
    changes: list[RowChange] = field(default_factory=list)
    matched: int = 0


def plan_changes(
    client: Any,
    types: Mapping[str, Mapping[str, str]],
    request: RedactionRequest,
    personal_fields: Sequence[str],
    *,
    now: datetime,
) -> Plan:
    """Every change the request makes: to the audit rows it selects, and to the texts of
    their outcomes and of the outcomes it names (a request, a contact never archived)."""
    plan = Plan()
    echoed: set[str] = set()
    records: set[tuple[str, str]] = {(ObjectType.CONTACTS.value, i) for i in request.contact_ids}
    keys = frozenset(personal_fields)
    for kind in ObjectType:
        columns = types.get(kind.table)
        where, args = _where(kind, request, now)
        if not columns or not where:
            continue
        personal = _personal_columns(client, kind, personal_fields, columns)
        text = frozenset(
            name
            for name, kind_ in columns.items()
            if kind_ == "text" and name not in _KEPT and not name.startswith("_dlt")
        )
        table = client.make_qualified_table_name(kind.table)
        try:
            rows = list(select_rows(client, f"SELECT * FROM {table} WHERE {where}", *args))
        except DatabaseUndefinedRelation:
            continue
        plan.matched += len(rows)
        for row in rows:
            records.add((kind.value, str(row["id"])))
            echoed.update(personal_values(row, personal, keys))
            values = row_change(
                kind.table, row, personal_columns=personal, personal_keys=keys, text_columns=text
            )
            if values:
                plan.changes.append(_change(kind.table, "id", row, values, types))
    plan.changes.extend(_log_changes(client, types, records, request.request_ids, echoed, keys))
    return plan


def _change(
    table: str,
    key_column: str,
    row: Mapping[str, Any],
    values: dict[str, Any],
    types: Mapping[str, Mapping[str, str]],
) -> RowChange:
    columns = types.get(table, {})
    return RowChange(
        table,
        key_column,
        str(row[key_column]),
        values,
        before_sha256=row_sha256(row, columns),
        after_sha256=row_sha256({**row, **values}, columns),
    )


def _log_changes(
    client: Any,
    types: Mapping[str, Mapping[str, str]],
    records: set[tuple[str, str]],
    request_ids: Sequence[str],
    echoed: set[str],
    keys: frozenset[str],
) -> list[RowChange]:
    """The outcomes of the redacted records, and of the requests named, whose texts quote a
    personal value: one the records held, or one under a personal key of the outcome's own
    answer (`response_body`: a record never archived has no audit row to take it from)."""
    if LOG_TABLE not in types or not (records or request_ids):
        return []
    table = client.make_qualified_table_name(LOG_TABLE)
    typed = "object_id" in types[LOG_TABLE]
    changes: list[RowChange] = []
    ids = sorted({record_id for _, record_id in records})
    wanted: list[tuple[str, list[str]]] = []
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        marks = ", ".join(["%s"] * len(part))
        where = f"contact_id IN ({marks})" + (f" OR object_id IN ({marks})" if typed else "")
        wanted.append((where, part + (part if typed else [])))
    if request_ids:
        wanted.append(
            (f"request_id IN ({', '.join(['%s'] * len(request_ids))})", list(request_ids))
        )
    seen: set[str] = set()
    for where, args in wanted:
        for row in select_rows(client, f"SELECT * FROM {table} WHERE {where}", *args):
            kind = str(row.get("object_type") or ObjectType.CONTACTS.value)
            record = str(row.get("object_id") or row.get("contact_id"))
            named = str(row.get("request_id")) in request_ids
            if str(row["outcome_id"]) in seen or ((kind, record) not in records and not named):
                continue
            seen.add(str(row["outcome_id"]))
            own = set(_personal_values_in(_loads(row.get("response_body")), keys))
            values = [value for value in echoed | own if is_echoable(value)]
            new: dict[str, Any] = {}
            for name in LOG_TEXT_COLUMNS:
                text = row.get(name)
                if text is None:
                    continue
                body = (
                    redact_body(str(text), keys, values) if name == "response_body" else str(text)
                )
                body = redact_text(body, values)
                if body != text:
                    new[name] = body
            if new:
                changes.append(_change(LOG_TABLE, "outcome_id", row, new, types))
    return changes


def apply_changes(client: Any, changes: Sequence[RowChange], record: dict[str, Any]) -> None:
    """Every change and the redaction's `redactions` row in one transaction: the rows are all
    as they were and nothing is recorded, or all are redacted and the redaction is on record
    (then its link may still be missing: `finish_redactions`)."""
    with client.begin_transaction():
        for change in changes:
            table = client.make_qualified_table_name(change.table)
            names = list(change.values)
            assignments = ", ".join(f"{client.escape_column_name(n)} = %s" for n in names)
            client.execute_sql(
                f"UPDATE {table} SET {assignments} WHERE {change.key_column} = %s",
                *[change.values[n] for n in names],
                change.key,
            )
        _insert_redaction(client, record)


def _insert_redaction(client: Any, record: dict[str, Any]) -> None:
    table = client.make_qualified_table_name(REDACTIONS_TABLE)
    values = {
        name: json.dumps(value) if REDACTIONS_COLUMNS[name]["data_type"] == "json" else value
        for name, value in record.items()
    }
    values |= {"_dlt_load_id": record["redaction_id"], "_dlt_id": uuid4().hex[:14]}
    marks = ", ".join(["%s"] * len(values))
    names = ", ".join(client.escape_column_name(name) for name in values)
    client.execute_sql(f"INSERT INTO {table} ({names}) VALUES ({marks})", *values.values())


def _redactions_table() -> Any:
    """`redactions` with no row: dlt makes it (its schema knows it); rows are INSERTed in the
    redaction's own transaction."""

    def nothing() -> Iterator[Any]:
        yield dlt.mark.materialize_table_schema()

    return dlt.resource(
        nothing,
        name=REDACTIONS_TABLE,
        write_disposition="append",
        columns=REDACTIONS_COLUMNS,
        max_table_nesting=0,
    )


@dlt.source(name=SOURCE_NAME, section=SOURCE_NAME, max_table_nesting=0)
def _redactions_source() -> Any:
    return _redactions_table()


def chained_digests(client: Any, places: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Each row's newest digest that a link covers, as `verify` checks the row against it."""
    if not places:
        return {}
    digests = client.make_qualified_table_name(DIGESTS_TABLE)
    chain = client.make_qualified_table_name(CHAIN_TABLE)
    found: dict[tuple[str, str], tuple[int, str]] = {}
    by_table: dict[str, list[str]] = {}
    for table, key in places:
        by_table.setdefault(table, []).append(key)
    for table, keys in by_table.items():
        for start in range(0, len(keys), 500):
            part = keys[start : start + 500]
            marks = ", ".join(["%s"] * len(part))
            rows = select_rows(
                client,
                f"SELECT d.row_key, d.row_sha256, c.chain_seq FROM {digests} d JOIN {chain} c "
                f"ON c.run_id = d.chained_by WHERE d.table_name = %s AND d.row_key IN ({marks})",
                table,
                *part,
            )
            for row in rows:
                place = (table, str(row["row_key"]))
                seq = int(row["chain_seq"])
                if place not in found or found[place][0] < seq:
                    found[place] = (seq, str(row["row_sha256"]))
    return {place: digest for place, (_, digest) in found.items()}


# ------------------------------------------------------------------------ redaction
def check_nothing_pending(pipeline: dlt.Pipeline, folders: Iterable[Path] = ()) -> None:
    """A crashed run's answers not loaded yet would keep their personal data: refuse."""
    for folder in [Path(pipeline.working_dir), *folders]:
        left = pending_in(folder)
        if left:
            raise RecoveryPendingError(
                f"a crashed run left {len(left)} journal(s) or load package(s) not loaded yet "
                f"in {folder}: run `routera-archive run` first (it loads them; a shard's "
                "with the same --shard; an `enqueue` folder's: that enqueue again), then redact"
            )


def redact(
    pipeline: dlt.Pipeline,
    request: RedactionRequest,
    *,
    redaction_id: str,
    personal_fields: Sequence[str] = DEFAULT_PERSONAL_FIELDS,
    dry_run: bool = False,
    now: datetime | None = None,
    folders: Sequence[Path] = (),
) -> list[Redaction]:
    """Finish any redaction killed before its link, then redact what `request` selects, then
    remove the copies (`dataset.leftovers`). The caller holds the dataset's locks
    (`dataset.lock`); `folders` are the other pipeline folders that write the dataset (shard
    workers', `enqueue`'s), checked and cleaned too."""
    now = now or datetime.now(UTC)
    done: list[Redaction] = [] if dry_run else finish_redactions(pipeline)
    if not request.empty:
        if not dry_run:
            check_nothing_pending(pipeline, folders)
        done.append(
            _redact_once(
                pipeline,
                request,
                redaction_id=redaction_id,
                personal_fields=personal_fields,
                dry_run=dry_run,
                now=now,
            )
        )
    marker = Path(pipeline.working_dir) / CLEANUP_MARKER
    if not dry_run and (marker.exists() or any(item.link is not None for item in done)):
        tables = sorted({table for item in done for table in item.rows})
        cleanup = clean_up(pipeline, tables or [k.table for k in ObjectType], folders)
        if not done:
            done.append(Redaction(redaction_id, False, request, cleanup_only=True))
        for item in done:
            item.cleanup = cleanup
    return done


def clean_up(pipeline: dlt.Pipeline, tables: Sequence[str], folders: Sequence[Path]) -> Cleanup:
    """Remove the copies, with a marker in the pipeline folder while it goes on."""
    marker = _mark_cleanup(pipeline)
    cleanup = clean_copies(pipeline, changed_tables=tables, folders=folders)
    marker.unlink(missing_ok=True)
    return cleanup


def _mark_cleanup(pipeline: dlt.Pipeline) -> Path:
    marker = Path(pipeline.working_dir) / CLEANUP_MARKER
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError as exc:
        raise LocalStorageError.of(exc, marker) from None
    return marker


def _redact_once(
    pipeline: dlt.Pipeline,
    request: RedactionRequest,
    *,
    redaction_id: str,
    personal_fields: Sequence[str],
    dry_run: bool,
    now: datetime,
) -> Redaction:
    result = Redaction(redaction_id, dry_run, request)
    types = stored_types(pipeline)
    if not any(kind.table in types for kind in ObjectType):
        raise ConfigurationError(
            f"dataset `{pipeline.dataset_name}` holds no audit trail: check --destination, "
            "--dataset and the destination's credentials (a DuckDB file's path)"
        )
    with utc_session(pipeline) as client:
        plan = plan_changes(client, types, request, personal_fields, now=now)
        digests = chained_digests(client, {change.place for change in plan.changes})
    result.changes, result.matched = plan.changes, plan.matched
    # A row edited since it was chained is redacted (its data must go) but not chained again:
    # a redaction must not make an earlier edit look intact.
    trusted: dict[str, list[str]] = {}
    for change in plan.changes:
        digest = digests.get(change.place)
        if digest == change.before_sha256:
            trusted.setdefault(change.table, []).append(change.key)
        elif digest is not None:
            result.unverified.setdefault(change.table, []).append(change.key)
    if dry_run or not plan.changes:
        return result
    if REDACTIONS_TABLE not in types:
        load_fresh(pipeline, _redactions_source())
    record = {
        "redaction_id": redaction_id,
        "run_id": redaction_id,
        "redacted_at": now,
        "redacted_by": request.redacted_by,
        "reason": request.why(),
        "selector": request.selector(),
        "personal_fields": list(personal_fields),
        "columns": result.columns,
        "rows": result.rows,
        "row_count": result.row_count,
        "row_hashes": {
            table: {c.key: c.after_sha256 for c in plan.changes if c.table == table}
            for table in result.rows
        },
        "unverified_rows": result.unverified,
    }
    # Before any row changes: from here on the old values' copies must go, killed or not.
    _mark_cleanup(pipeline)
    with pipeline.sql_client() as client:
        apply_changes(client, plan.changes, record)
    run_row = _run_row(pipeline, redaction_id, result.row_count, request.why(), now)
    result.link = link_run(pipeline, run_row, redigest=trusted)
    return result


def finish_redactions(pipeline: dlt.Pipeline) -> list[Redaction]:
    """Link every redaction killed after its transaction and before its link: the rows it
    changed that are still as it left them (`row_hashes`) are chained again, under its own
    id, as if it had not been killed. What its killed link step loaded (its run row, its
    digests) is not covered by any link (no other run adopts it) and is replaced."""
    types = stored_types(pipeline)
    if REDACTIONS_TABLE not in types:
        return []
    with utc_session(pipeline) as client:
        unfinished = sorted(unfinished_redactions(client, read_links(client) or []))
        if not unfinished:
            return []
        table = client.make_qualified_table_name(REDACTIONS_TABLE)
        marks = ", ".join(["%s"] * len(unfinished))
        recorded = list(
            select_rows(
                client, f"SELECT * FROM {table} WHERE redaction_id IN ({marks})", *unfinished
            )
        )
    finished: list[Redaction] = []
    for record in sorted(recorded, key=lambda row: str(row["redaction_id"])):
        redaction_id = str(record["redaction_id"])
        hashes: dict[str, dict[str, str]] = _json(record.get("row_hashes")) or {}
        columns: dict[str, list[str]] = _json(record.get("columns")) or {}
        trusted: dict[str, list[str]] = {}
        with utc_session(pipeline) as client:
            for table_name, expected in hashes.items():
                key_column = "outcome_id" if table_name == LOG_TABLE else "id"
                qualified = client.make_qualified_table_name(table_name)
                keys = sorted(expected)
                marks = ", ".join(["%s"] * len(keys))
                for row in select_rows(
                    client, f"SELECT * FROM {qualified} WHERE {key_column} IN ({marks})", *keys
                ):
                    key = str(row[key_column])
                    if row_sha256(row, types.get(table_name, {})) == expected.get(key):
                        trusted.setdefault(table_name, []).append(key)
            for stale, column in ((RUNS_TABLE, "run_id"), (DIGESTS_TABLE, "chained_by")):
                with contextlib.suppress(DatabaseUndefinedRelation):
                    client.execute_sql(
                        f"DELETE FROM {client.make_qualified_table_name(stale)} "
                        f"WHERE {column} = %s",
                        redaction_id,
                    )
        request = RedactionRequest(
            redacted_by=str(record.get("redacted_by") or ""), reason=record.get("reason")
        )
        started = record.get("redacted_at") or datetime.now(UTC)
        count = int(record.get("row_count") or 0)
        run_row = _run_row(pipeline, redaction_id, count, request.why(), started)
        run_row["notes"].append("its link was made by a later command: the first was killed")
        item = Redaction(redaction_id, False, request, finished_late=True)
        item.changes = [
            RowChange(table_name, "", key, dict.fromkeys(columns.get(table_name, [])))
            for table_name, keys in hashes.items()
            for key in keys
        ]
        item.link = link_run(pipeline, run_row, redigest=trusted)
        finished.append(item)
        logger.warning("finished redaction %s, which was killed before its link", redaction_id)
    return finished


def _json(value: Any) -> Any:
    if value is None or isinstance(value, (dict, list)):
        return value
    return json.loads(str(value))


def _run_row(
    pipeline: dlt.Pipeline, redaction_id: str, rows: int, why: str, started: datetime
) -> dict[str, Any]:
    """The redaction's row of `archive_runs`: it is a run of the dataset like any other."""
    return {
        "run_id": redaction_id,
        "started_at": started,
        "finished_at": datetime.now(UTC),
        "mode": REDACT_MODE,
        "exit_code": 0,
        "outcome": "redacted",
        "counts": {"redacted_rows": rows},
        "notes": [f"redacted {rows} rows: {why}"],
        "connector_version": __version__,
        "destination": pipeline.destination.destination_name,
        "dataset": pipeline.dataset_name,
    }
