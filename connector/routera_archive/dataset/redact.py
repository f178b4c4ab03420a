"""Redaction: a person's data out of the audit trail, on the record and with no copy left.

The rows to redact are chosen by record id (`contact_ids`), by request (`request_ids`) or by
age (`older_than_days`, on `archived`). In each one the personal-data columns
(`personal_fields`, by the API's field names; renamed custom fields by their column) are set
to NULL, and inside `raw_response` and `snapshot_response` the value of each of those fields,
at any depth, becomes `"[redacted]"`: every key and every other value stays. A value of a
personal field long enough to be told from ordinary words (`MIN_ECHOED`) is also replaced
where the same row or its outcomes quote it elsewhere (a note, an error body).

A redaction is on the record, and in the chain: it is a run of mode `redact` in
`archive_runs`, a row of `redactions` (who, when, why, which rows, which columns), and a link
whose digests cover the redacted rows as they are now. `verify` takes a row's newest digest
when a redaction chained it, so a recorded redaction is intact and any other change is not;
the rows' `record_sha256` stay the hashes of the answers as loaded.

Crash-safe in four steps: (1) an *intent* file in the pipeline folder names the rows (ids
only, no personal data), fsynced before anything changes; (2) every change is one
transaction; (3) the `redactions` row is loaded and (4) the link committed, as a run's; then
the copies are cleaned (`dataset.leftovers`) and the intent removed. Killed at any point, the
rows are either as they were or redacted, and the next `redact` finishes the intent first.
"""

import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import dlt
from dlt.common.schema.typing import TColumnSchema
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from routera_archive import __version__
from routera_archive.config import DEFAULT_PERSONAL_FIELDS
from routera_archive.dataset.chain import ChainLink, link_run, select_rows, stored_types
from routera_archive.dataset.fields import column_of
from routera_archive.dataset.leftovers import Cleanup, clean_copies, pending_in
from routera_archive.dataset.loading import load_fresh
from routera_archive.dataset.tables import insert_only
from routera_archive.errors import ConfigurationError, LocalStorageError, RecoveryPendingError
from routera_archive.journal import replace_durably
from routera_archive.names import FIELDS_TABLE, LOG_TABLE, REDACTIONS_TABLE, SOURCE_NAME
from routera_archive.objects import ObjectType

logger = logging.getLogger(__name__)

REDACTED: Final = "[redacted]"
"""What a personal value becomes inside a stored answer."""
REDACT_MODE: Final = "redact"
"""A redaction's `mode` in `archive_runs`: `verify` lets its digests replace earlier ones."""
MIN_ECHOED: Final = 6
"""A personal value at least this long is also replaced where a row quotes it elsewhere;
shorter ones (`Al`, `Ann`) would hit ordinary words."""
INTENT_FILE: Final = "redaction.intent.json"
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
    # The redaction id of an attempt killed before it was recorded, which this one finished.
    "resumes": {"data_type": "text"},
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
    """One row's new values, by column (None: set to NULL)."""

    table: str
    key_column: str
    key: str
    values: dict[str, Any]


@dataclass
class Redaction:
    """What a redaction changed (or, dry, would change)."""

    redaction_id: str
    dry_run: bool
    request: RedactionRequest
    changes: list[RowChange] = field(default_factory=list)
    # Rows an earlier, killed attempt changed and this one records (already redacted).
    resumed_rows: dict[str, list[str]] = field(default_factory=dict)
    resumes: str | None = None
    link: ChainLink | None = None
    cleanup: Cleanup | None = None

    @property
    def rows(self) -> dict[str, list[str]]:
        """table -> keys of every row recorded as redacted."""
        found: dict[str, set[str]] = {t: set(k) for t, k in self.resumed_rows.items()}
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
            "resumes": self.resumes,
            "chain_head": None if self.link is None else self.link.chain_sha256,
            "cleanup": None if self.cleanup is None else self.cleanup.as_dict(),
        }


# ------------------------------------------------------------------- values in a row
def redact_text(text: str, values: Iterable[str]) -> str:
    """`text` with every occurrence of each value replaced, longest first."""
    for value in sorted(set(values), key=len, reverse=True):
        if value and value != REDACTED:
            text = text.replace(value, REDACTED)
    return text


def _personal_values_in(document: Any, keys: frozenset[str]) -> Iterator[str]:
    if isinstance(document, dict):
        for key, value in document.items():
            if key in keys and isinstance(value, (str, int, float)) and not isinstance(value, bool):
                yield str(value)
            yield from _personal_values_in(value, keys)
    elif isinstance(document, list):
        for item in document:
            yield from _personal_values_in(item, keys)


def _redacted_document(document: Any, keys: frozenset[str], echoed: Sequence[str]) -> Any:
    if isinstance(document, dict):
        return {
            key: (
                REDACTED
                if key in keys and value is not None and not isinstance(value, (dict, list))
                else _redacted_document(value, keys, echoed)
            )
            for key, value in document.items()
        }
    if isinstance(document, list):
        return [_redacted_document(item, keys, echoed) for item in document]
    if isinstance(document, str):
        return redact_text(document, echoed)
    return document


def redact_body(text: str, keys: frozenset[str], values: Sequence[str]) -> str:
    """A stored answer with the personal fields' values replaced (see the module's docstring);
    a body that is not JSON (cut short, hostile) has each known value replaced as text."""
    try:
        document = json.loads(text)
    except ValueError:
        return redact_text(text, [value for value in values if len(value) >= 3])
    echoed = [value for value in values if len(value) >= MIN_ECHOED]
    redacted = _redacted_document(document, keys, echoed)
    if redacted == document:
        return text
    return json.dumps(redacted, ensure_ascii=False, separators=(",", ":"))


def _loads(text: Any) -> Any:
    try:
        return json.loads(str(text))
    except ValueError:
        return None


def row_change(
    table: str,
    row: Mapping[str, Any],
    *,
    personal_columns: frozenset[str],
    personal_keys: frozenset[str],
    text_columns: frozenset[str],
) -> dict[str, Any]:
    """The new values of an audit row's changed columns ({} when already redacted)."""
    values = {str(row[name]) for name in personal_columns if row.get(name) is not None}
    for body in BODY_COLUMNS:
        if row.get(body) is not None:
            values.update(_personal_values_in(_loads(row[body]), personal_keys))
    values.discard(REDACTED)
    ordered = sorted(values)
    changed: dict[str, Any] = {
        name: None for name in sorted(personal_columns) if row.get(name) is not None
    }
    for body in BODY_COLUMNS:
        text = row.get(body)
        if text is not None and (new := redact_body(str(text), personal_keys, ordered)) != text:
            changed[body] = new
    echoed = [value for value in ordered if len(value) >= MIN_ECHOED]
    for name in sorted(text_columns - personal_columns - set(changed)):
        text = row.get(name)
        if isinstance(text, str) and (new := redact_text(text, echoed)) != text:
            changed[name] = new
    return changed


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


def plan_changes(
    client: Any,
    types: Mapping[str, Mapping[str, str]],
    request: RedactionRequest,
    personal_fields: Sequence[str],
    *,
    now: datetime,
    also: Mapping[str, Iterable[str]] | None = None,
) -> list[RowChange]:
    """Every change the request makes: to the audit rows it selects (and those `also`
    names: an unfinished attempt's), and to their outcomes' texts."""
    changes: list[RowChange] = []
    echoed: set[str] = set()
    records: set[tuple[str, str]] = set()
    keys = frozenset(personal_fields)
    for kind in ObjectType:
        columns = types.get(kind.table)
        if not columns:
            continue
        where, args = _where(kind, request, now)
        named = sorted(set((also or {}).get(kind.table, ())))
        if named:
            where = " OR ".join(filter(None, [where, f"id IN ({', '.join(['%s'] * len(named))})"]))
            args.extend(named)
        if not where:
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
        for row in rows:
            records.add((kind.value, str(row["id"])))
            echoed.update(
                str(row[name]) for name in personal if row.get(name) not in (None, REDACTED)
            )
            for body in BODY_COLUMNS:
                if row.get(body) is not None:
                    echoed.update(_personal_values_in(_loads(row[body]), keys))
            values = row_change(
                kind.table,
                row,
                personal_columns=personal,
                personal_keys=keys,
                text_columns=text,
            )
            if values:
                changes.append(RowChange(kind.table, "id", str(row["id"]), values))
    changes.extend(_log_changes(client, types, records, echoed))
    return changes


def _log_changes(
    client: Any,
    types: Mapping[str, Mapping[str, str]],
    records: set[tuple[str, str]],
    echoed: set[str],
) -> list[RowChange]:
    """The outcomes of the redacted records whose texts quote a personal value."""
    values = [value for value in echoed if len(value) >= MIN_ECHOED and value != REDACTED]
    if not records or not values or LOG_TABLE not in types:
        return []
    table = client.make_qualified_table_name(LOG_TABLE)
    typed = "object_id" in types[LOG_TABLE]
    changes: list[RowChange] = []
    ids = sorted({record_id for _, record_id in records})
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        marks = ", ".join(["%s"] * len(part))
        where = f"contact_id IN ({marks})" + (f" OR object_id IN ({marks})" if typed else "")
        args = part + (part if typed else [])
        for row in select_rows(client, f"SELECT * FROM {table} WHERE {where}", *args):
            kind = row.get("object_type") or ObjectType.CONTACTS.value
            record = row.get("object_id") or row.get("contact_id")
            if (str(kind), str(record)) not in records:
                continue
            new = {
                name: redact_text(str(row[name]), values)
                for name in LOG_TEXT_COLUMNS
                if row.get(name) is not None and redact_text(str(row[name]), values) != row[name]
            }
            if new:
                changes.append(RowChange(LOG_TABLE, "outcome_id", str(row["outcome_id"]), new))
    return changes


def apply_changes(client: Any, changes: Sequence[RowChange]) -> None:
    """Every change in one transaction: the rows are all as they were, or all redacted."""
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


# -------------------------------------------------------------------------- intent
def _write_intent(path: Path, payload: dict[str, Any]) -> None:
    """Durable before any row changes: what a killed redaction needs to be finished."""
    temporary = path.with_suffix(".tmp")
    try:
        temporary.write_text(json.dumps(payload), encoding="utf-8")
        replace_durably(temporary, path)
    except OSError as exc:
        raise LocalStorageError.of(exc, path) from None


def _read_intent(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except ValueError:  # killed while writing it: nothing had changed yet
        logger.warning("an unreadable redaction intent was left aside: %s", path)
        return None


# ------------------------------------------------------------------------ redaction
def check_nothing_pending(pipeline: dlt.Pipeline, folders: Iterable[Path] = ()) -> None:
    """A crashed run's answers not loaded yet would keep their personal data: refuse."""
    for folder in [Path(pipeline.working_dir), *folders]:
        left = pending_in(folder)
        if left:
            raise RecoveryPendingError(
                f"a crashed run left {len(left)} journal(s) or load package(s) not loaded yet "
                f"in {folder}: run `routera-archive run` first (it loads them; a shard's "
                "with the same --shard), then redact"
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
    """Finish a killed redaction if one is left (the first item then), then redact what
    `request` selects. The caller holds the dataset's locks (`dataset.lock`); `folders` are
    the other pipeline folders that write the dataset (shard workers'), cleaned too."""
    now = now or datetime.now(UTC)
    intent_path = Path(pipeline.working_dir) / INTENT_FILE
    done: list[Redaction] = []
    intent = _read_intent(intent_path)
    if intent is not None and not dry_run:
        done.append(_finish_intent(pipeline, intent, redaction_id, now, intent_path, folders))
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
                intent_path=intent_path,
                folders=folders,
            )
        )
    return done


def _finish_intent(
    pipeline: dlt.Pipeline,
    intent: dict[str, Any],
    redaction_id: str,
    now: datetime,
    intent_path: Path,
    folders: Sequence[Path],
) -> Redaction:
    """A redaction killed before its end: recorded but not cleaned (clean), or not recorded
    (redact the rows it named again, whatever it had changed, and record that)."""
    left = RedactionRequest(
        redacted_by=str(intent.get("redacted_by") or ""), reason=intent.get("reason")
    )
    if intent.get("phase") == "clean":
        finished = Redaction(str(intent["redaction_id"]), False, left)
        changed = sorted(intent.get("rows") or {})
        finished.cleanup = clean_copies(pipeline, changed_tables=changed, folders=folders)
        intent_path.unlink(missing_ok=True)
        return finished
    check_nothing_pending(pipeline, folders)
    finished = _redact_once(
        pipeline,
        left,
        redaction_id=f"{redaction_id}-resumed",
        personal_fields=list(intent.get("personal_fields") or DEFAULT_PERSONAL_FIELDS),
        dry_run=False,
        now=now,
        intent_path=intent_path,
        also=intent.get("rows") or {},
        resumes=str(intent.get("redaction_id")),
        selector=intent.get("selector"),
        folders=folders,
    )
    intent_path.unlink(missing_ok=True)  # also when nothing was left to record
    return finished


def _redact_once(
    pipeline: dlt.Pipeline,
    request: RedactionRequest,
    *,
    redaction_id: str,
    personal_fields: Sequence[str],
    dry_run: bool,
    now: datetime,
    intent_path: Path,
    folders: Sequence[Path] = (),
    also: Mapping[str, Iterable[str]] | None = None,
    resumes: str | None = None,
    selector: dict[str, Any] | None = None,
) -> Redaction:
    result = Redaction(redaction_id, dry_run, request, resumes=resumes)
    types = stored_types(pipeline)
    if not any(kind.table in types for kind in ObjectType):
        raise ConfigurationError(
            f"dataset `{pipeline.dataset_name}` holds no audit trail: check --destination, "
            "--dataset and the destination's credentials (a DuckDB file's path)"
        )
    with pipeline.sql_client() as client:
        result.changes = plan_changes(client, types, request, personal_fields, now=now, also=also)
    changed = {(c.table, c.key) for c in result.changes}
    result.resumed_rows = {
        table: sorted(k for k in keys if (table, k) not in changed)
        for table, keys in (also or {}).items()
        if any((table, k) not in changed for k in keys)
    }
    if dry_run or not (result.changes or result.resumed_rows):
        return result
    rows = result.rows
    intent = {
        "redaction_id": redaction_id,
        "redacted_by": request.redacted_by,
        "reason": request.why(),
        "selector": selector if selector is not None else request.selector(),
        "personal_fields": list(personal_fields),
        "rows": rows,
    }
    _write_intent(intent_path, intent)
    with pipeline.sql_client() as client:
        apply_changes(client, result.changes)
    record = {
        **{name: intent[name] for name in ("redaction_id", "redacted_by", "reason", "selector")},
        "run_id": redaction_id,
        "redacted_at": now,
        "personal_fields": list(personal_fields),
        "columns": result.columns,
        "rows": rows,
        "row_count": result.row_count,
        "resumes": resumes,
    }
    load_fresh(pipeline, _redactions([record]))
    result.link = link_run(pipeline, _run_row(pipeline, result, now), redigest=rows)
    _write_intent(intent_path, {**intent, "phase": "clean"})
    result.cleanup = clean_copies(pipeline, changed_tables=sorted(rows), folders=folders)
    intent_path.unlink(missing_ok=True)
    return result


def _run_row(pipeline: dlt.Pipeline, result: Redaction, started: datetime) -> dict[str, Any]:
    """The redaction's row of `archive_runs`: it is a run of the dataset like any other."""
    return {
        "run_id": result.redaction_id,
        "started_at": started,
        "finished_at": datetime.now(UTC),
        "mode": REDACT_MODE,
        "exit_code": 0,
        "outcome": "redacted",
        "counts": {"redacted_rows": result.row_count},
        "notes": [f"redacted {result.row_count} rows: {result.request.why()}"],
        "connector_version": __version__,
        "destination": pipeline.destination.destination_name,
        "dataset": pipeline.dataset_name,
    }


@dlt.source(name=SOURCE_NAME, section=SOURCE_NAME, max_table_nesting=0)
def _redactions(rows: list[dict[str, Any]]) -> Any:
    return insert_only(rows, REDACTIONS_TABLE, "redaction_id", REDACTIONS_COLUMNS)
