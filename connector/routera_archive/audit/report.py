"""The audit report of a dataset: what was archived, by whom, what came of each request, what
is still pending, when each custom field appeared, and the last runs.

Every figure is one SQL query through dlt's `sql_client`, written to run unchanged on DuckDB and
PostgreSQL (and so, with luck, on other warehouses). A table that does not exist yet (a dataset
with no run, a queue never made) gives an empty section with a note, never an error. Rendering
is the caller's business (`pipelines/report_render.py`): this module returns plain values,
timestamps as timezone-aware UTC datetimes.

Every object type (contacts, companies, deals, tickets) has its audit table; the archives
sections read them as one (`all_archives`) with the type as a column, over the tables the
dataset has. Sections that existed before types did keep their key and their meaning: the
totals (`archives_per_day`, the per-person lists, `outcomes`, `backlog`) stay totals, and
`_by_type`/`_and_type` sections split them by type; rows of the lists of requests and fields
(failures, custom fields) gain `object_type`.

Windows: `since` is inclusive and `before` exclusive. Archives are filtered by `archived`;
outcomes and failures by `archive_log.processed_at`, *then* reduced to the latest row per
request, so a request counts once, under the status it had at the end of the window.
"""

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from dlt.common.pipeline import SupportsPipeline
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from routera_archive.audit.all_archives import all_archives_sql
from routera_archive.dataset.loading import stored_columns
from routera_archive.dataset.outcomes import ranked_outcomes
from routera_archive.dataset.queue import PendingQueue
from routera_archive.errors import QueueError
from routera_archive.models import Status
from routera_archive.names import (
    ARCHIVES_TABLE,
    CHAIN_TABLE,
    FIELDS_TABLE,
    LOG_TABLE,
    QUEUE_TABLE,
    REDACTIONS_TABLE,
    RUNS_TABLE,
    VERIFICATIONS_TABLE,
)
from routera_archive.objects import ObjectType

logger = logging.getLogger(__name__)

DEFAULT_LAST_RUNS = 20
DEFAULT_MAX_FAILURES = 500
DEFAULT_MAX_RECORDS = 500

# Section keys, in the order every format shows them.
ARCHIVES_PER_DAY = "archives_per_day"
ARCHIVES_PER_DAY_BY_TYPE = "archives_per_day_by_type"
ARCHIVES_BY_ARCHIVED_BY = "archives_by_archived_by"
ARCHIVES_BY_REQUESTED_BY = "archives_by_requested_by"
ARCHIVES_BY_ARCHIVED_BY_AND_TYPE = "archives_by_archived_by_and_type"
ARCHIVES_BY_REQUESTED_BY_AND_TYPE = "archives_by_requested_by_and_type"
OUTCOMES = "outcomes"
OUTCOMES_BY_TYPE = "outcomes_by_type"
FAILURES = "failures"
BACKLOG = "backlog"
BACKLOG_BY_TYPE = "backlog_by_type"
CUSTOM_FIELDS = "custom_fields"
RUNS = "runs"
ARCHIVED_RECORDS = "archived_records"
RUN_DETAILS = "run_details"
# The evidence the trail carries (README "Evidence"): the chain's head, the last `verify`
# recorded, the redactions in the window.
HASH_CHAIN = "hash_chain"
LAST_VERIFICATION = "last_verification"
REDACTIONS = "redactions"
SECTION_KEYS: tuple[str, ...] = (
    ARCHIVES_PER_DAY,
    ARCHIVES_PER_DAY_BY_TYPE,
    ARCHIVES_BY_ARCHIVED_BY,
    ARCHIVES_BY_ARCHIVED_BY_AND_TYPE,
    ARCHIVES_BY_REQUESTED_BY,
    ARCHIVES_BY_REQUESTED_BY_AND_TYPE,
    ARCHIVED_RECORDS,
    OUTCOMES,
    OUTCOMES_BY_TYPE,
    FAILURES,
    BACKLOG,
    BACKLOG_BY_TYPE,
    CUSTOM_FIELDS,
    RUNS,
    RUN_DETAILS,
    HASH_CHAIN,
    LAST_VERIFICATION,
    REDACTIONS,
)


class ReportOptionError(ValueError):
    """An option the report cannot work with (a date it cannot read, a window that is empty)."""


@dataclass(frozen=True)
class ReportFilters:
    """`since` inclusive, `before` exclusive (both UTC); `statuses` empty means every status."""

    since: datetime | None = None
    before: datetime | None = None
    statuses: tuple[str, ...] = ()
    # One run's archives, outcomes and details only (`--run-id`).
    run_id: str | None = None

    @classmethod
    def from_options(
        cls,
        since: str | None,
        until: str | None,
        statuses: Sequence[str] | None = None,
        run_id: str | None = None,
    ) -> "ReportFilters":
        """Read the CLI's `--since`, `--until` and `--status` values; ReportOptionError if bad.

        A date (`2026-06-01`) means the whole day in UTC: `--since` from its start, `--until` to
        its end. An ISO 8601 timestamp is taken as is (UTC when it has no offset), `--until`
        including it.
        """
        start = None if since is None else parse_bound(since, option="--since", end=False)
        before = None if until is None else parse_bound(until, option="--until", end=True)
        if start is not None and before is not None and start >= before:
            raise ReportOptionError(
                f"--since {since} is after --until {until}: the window is empty"
            )
        known = [s.value for s in Status]
        chosen: list[str] = []
        for value in statuses or ():
            name = value.strip().lower()
            if name not in known:
                raise ReportOptionError(
                    f"--status {value!r} is not a status; use one of: {', '.join(known)}"
                )
            if name not in chosen:
                chosen.append(name)
        chosen_run = run_id.strip() if run_id is not None else None
        return cls(since=start, before=before, statuses=tuple(chosen), run_id=chosen_run or None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "before": self.before,
            "statuses": list(self.statuses),
            "run_id": self.run_id,
        }


def parse_bound(text: str, *, option: str, end: bool) -> datetime:
    """A window bound from a date or an ISO 8601 timestamp, as an aware UTC datetime.

    `end` makes it an exclusive upper bound: the day after a date, a microsecond after a
    timestamp (so `--until` includes what it names).
    """
    value = text.strip()
    try:
        day = date.fromisoformat(value)
    except ValueError:
        day = None
    try:
        if day is not None:
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return moment + timedelta(days=1) if end else moment
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ReportOptionError(
                f"{option} {text!r} is neither a date (2026-06-01) nor an ISO 8601 timestamp "
                "(2026-06-01T12:00:00Z)"
            ) from None
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        return moment + timedelta(microseconds=1) if end else moment
    except OverflowError:
        # In UTC (and, for --until, with the moment just after it) it leaves the years 1-9999
        # a timestamp can hold: at the start of year 1 or at the end of year 9999.
        early = (day or moment).year == 1
        where = "before 0001-01-01T00:00:00Z" if early else "past 9999-12-31T23:59:59.999999Z"
        everything = early != end  # an early --since, a late --until: no bound at all
        raise ReportOptionError(
            f"{option} {text!r} reaches {where}, the range of a timestamp; "
            + (f"leave {option} out to include everything" if everything else "the window is empty")
        ) from None


@dataclass
class Section:
    """One part of the report: rows of plain values under fixed columns."""

    key: str
    title: str
    columns: tuple[str, ...]
    rows: list[dict[str, Any]] = field(default_factory=list)
    # Why the section is empty or partial (a missing table, rows left out), for a person.
    note: str | None = None


@dataclass
class AuditReport:
    generated_at: datetime
    dataset: str
    destination: str
    filters: ReportFilters
    sections: dict[str, Section]

    def section(self, key: str) -> Section:
        return self.sections[key]

    @property
    def backlog(self) -> dict[str, Any]:
        rows = self.sections[BACKLOG].rows
        return rows[0] if rows else {}


def _utc(value: datetime) -> datetime:
    """An aware UTC datetime, whatever the driver's session time zone."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _plain(value: Any) -> Any:
    """Driver values as plain Python ones (Decimal counts become int, timestamps UTC)."""
    if isinstance(value, datetime):
        return _utc(value)
    if isinstance(value, date | bool | int | float | str | dict | list) or value is None:
        return value  # a JSON column: PostgreSQL gives the value, DuckDB its text
    if hasattr(value, "as_integer_ratio"):  # Decimal from PostgreSQL's SUM and the like
        number = float(value)
        return int(number) if number.is_integer() else number
    return str(value)


def _to_timestamp(value: Any) -> datetime | None:
    """A `requested_at` the queue may hold as a timestamp or as text."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return _utc(value)
    try:
        return _utc(datetime.fromisoformat(str(value).strip()))
    except ValueError:
        logger.warning("the oldest pending requested_at is not a timestamp: %r", value)
        return None


class _Reader:
    """Runs the report's queries on one open sql_client."""

    def __init__(self, client: Any, filters: ReportFilters) -> None:
        self.client = client
        self.filters = filters

    @property
    def dialect(self) -> str | None:
        """The destination's SQL dialect as dlt names it for sqlglot (`"snowflake"`, ...)."""
        capabilities = getattr(self.client, "capabilities", None)
        return getattr(capabilities, "sqlglot_dialect", None)

    def table(self, name: str) -> str:
        return str(self.client.make_qualified_table_name(name))

    def has_columns(self, table: str, *names: str) -> bool:
        """Whether `table` exists with every one of `names` (a dataset of the previous
        release lacks the columns this one adds until this one first loads it)."""
        return set(names) <= (stored_columns(self.client, table) or set())

    def window(self, column: str, *, run_column: str | None = None) -> tuple[list[str], list[Any]]:
        """The time window on `column`, and `--run-id` on `run_column` where it applies."""
        clauses: list[str] = []
        params: list[Any] = []
        if self.filters.run_id is not None and run_column is not None:
            clauses.append(f"{run_column} = %s")
            params.append(self.filters.run_id)
        if self.filters.since is not None:
            clauses.append(f"{column} >= %s")
            params.append(self.filters.since)
        if self.filters.before is not None:
            clauses.append(f"{column} < %s")
            params.append(self.filters.before)
        return clauses, params

    def rows(self, sql: str, params: Iterable[Any], columns: Sequence[str]) -> list[dict[str, Any]]:
        result = self.client.execute_sql(sql, *params) or []
        return [
            {name: _plain(value) for name, value in zip(columns, row, strict=True)}
            for row in result
        ]

    def fill(self, section: Section, table: str, sql: str, params: Iterable[Any] = ()) -> Section:
        """Run `sql` into `section`; a missing table leaves it empty with a note."""
        try:
            section.rows = self.rows(sql, params, section.columns)
        except DatabaseUndefinedRelation:
            logger.debug("no table %s: section %s is empty", table, section.key)
            section.note = f"there is no `{table}` table in this dataset yet"
        return section


# Dialects (sqlglot's names, as dlt's capabilities give them) without `AT TIME ZONE`.
UTC_DAY_BY_CONVERT_TIMEZONE = frozenset({"snowflake", "databricks", "redshift"})


def utc_day_sql(column: str, dialect: str | None) -> str:
    """SQL for the UTC calendar day of the timestamp `column` in `dialect`.

    A day in the report is a UTC day whatever the session's time zone. DuckDB, PostgreSQL,
    MotherDuck, SQL Server and Trino read `AT TIME ZONE 'UTC'` on a time-zone-aware timestamp
    as its UTC wall time; Snowflake, Databricks and Redshift spell that `CONVERT_TIMEZONE`, and
    BigQuery takes the time zone as `DATE`'s second argument.
    """
    if dialect == "bigquery":
        return f"DATE({column}, 'UTC')"
    if dialect in UTC_DAY_BY_CONVERT_TIMEZONE:
        return f"CAST(CONVERT_TIMEZONE('UTC', {column}) AS DATE)"
    return f"CAST({column} AT TIME ZONE 'UTC' AS DATE)"


def _where(clauses: Sequence[str]) -> str:
    return f"WHERE {' AND '.join(clauses)}" if clauses else ""


# What the archives sections read of each type's table.
_ARCHIVE_COLUMNS = ("archived", "archived_by", "requested_by", "run_id")


def _archives_source(reader: _Reader) -> str | None:
    """Every type's audit table that exists, as one (`all_archives_sql`), or None for none."""
    tables = {
        kind: reader.table(kind.table)
        for kind in ObjectType
        if reader.has_columns(kind.table, *_ARCHIVE_COLUMNS)
    }
    return all_archives_sql(tables, _ARCHIVE_COLUMNS) if tables else None


def _archives_sections(reader: _Reader) -> list[Section]:
    sections = [
        Section(ARCHIVES_PER_DAY, "Archives per day (UTC)", ("day", "archives")),
        Section(
            ARCHIVES_PER_DAY_BY_TYPE,
            "Archives per day (UTC) and type",
            ("day", "object_type", "archives"),
        ),
    ]
    people = ("archives", "first_archived", "last_archived")
    for key, typed_key, column in (
        (ARCHIVES_BY_ARCHIVED_BY, ARCHIVES_BY_ARCHIVED_BY_AND_TYPE, "archived_by"),
        (ARCHIVES_BY_REQUESTED_BY, ARCHIVES_BY_REQUESTED_BY_AND_TYPE, "requested_by"),
    ):
        sections.append(Section(key, f"Archives per {column}", (column, *people)))
        sections.append(
            Section(typed_key, f"Archives per {column} and type", (column, "object_type", *people))
        )
    source = _archives_source(reader)
    if source is None:
        for section in sections:
            section.note = f"there is no `{ARCHIVES_TABLE}` table in this dataset yet"
        return sections
    clauses, params = reader.window("archived", run_column="run_id")
    archives = f"({source}) a {_where(clauses)}"
    day = utc_day_sql("archived", reader.dialect)
    per_day, by_type, *by_person = sections
    per_day.rows = reader.rows(
        f"SELECT {day} AS day, COUNT(*) AS archives FROM {archives} GROUP BY {day} ORDER BY day",
        params,
        per_day.columns,
    )
    by_type.rows = reader.rows(
        f"SELECT {day} AS day, object_type, COUNT(*) AS archives FROM {archives} "
        f"GROUP BY {day}, object_type ORDER BY day, object_type",
        params,
        by_type.columns,
    )
    for section in by_person:
        column = section.columns[0]
        # A person's totals, and (with `object_type` among the columns) split by type.
        kind = ", object_type" if "object_type" in section.columns else ""
        section.rows = reader.rows(
            f"SELECT {column}{kind}, COUNT(*) AS archives, MIN(archived), MAX(archived) "
            f"FROM {archives} GROUP BY {column}{kind} "
            f"ORDER BY COUNT(*) DESC, {column} NULLS LAST{kind}",
            params,
            section.columns,
        )
    return sections


# How each type's record is named in the list of archived records: a contact by its e-mail
# address (or its name), the other types by their name field.
_RECORD_NAMES: dict[ObjectType, tuple[str, ...]] = {
    ObjectType.CONTACTS: ("email", "first_name", "last_name"),
    ObjectType.COMPANIES: ("company_name",),
    ObjectType.DEALS: ("deal_name",),
    ObjectType.TICKETS: ("ticket_name",),
}
ARCHIVED_RECORD_COLUMNS = (
    "object_type",
    "id",
    "name",
    "archived",
    "archived_by",
    "requested_by",
    "reason",
    "run_id",
)


def _name_sql(kind: ObjectType, columns: set[str]) -> str:
    if kind is ObjectType.CONTACTS:
        full = "TRIM(COALESCE(first_name, '') || ' ' || COALESCE(last_name, ''))"
        email = "email" if "email" in columns else "NULL"
        names = full if {"first_name", "last_name"} <= columns else "NULL"
        return f"COALESCE({email}, NULLIF({names}, ''))"
    (field_name,) = _RECORD_NAMES[kind]
    return field_name if field_name in columns else "NULL"


def _archived_records_section(reader: _Reader, max_records: int) -> Section:
    """The records archived in the window (or the run), newest first: who, why, which run."""
    section = Section(ARCHIVED_RECORDS, "Archived records, newest first", ARCHIVED_RECORD_COLUMNS)
    selects = []
    for kind in ObjectType:
        columns = stored_columns(reader.client, kind.table)
        if columns is None or not set(_ARCHIVE_COLUMNS) <= columns:
            continue
        selects.append(
            f"SELECT '{kind.value}' AS object_type, id, {_name_sql(kind, columns)} AS name, "
            f"archived, archived_by, requested_by, reason, run_id "
            f"FROM {reader.table(kind.table)}"
        )
    if not selects:
        section.note = f"there is no `{ARCHIVES_TABLE}` table in this dataset yet"
        return section
    clauses, params = reader.window("archived", run_column="run_id")
    records = f"({' UNION ALL '.join(selects)}) a {_where(clauses)}"
    section.rows = reader.rows(
        f"SELECT {', '.join(ARCHIVED_RECORD_COLUMNS)} FROM {records} "
        f"ORDER BY archived DESC, object_type, id LIMIT {int(max_records) + 1}",
        params,
        section.columns,
    )
    if len(section.rows) > max_records:
        section.rows = section.rows[:max_records]
        ((total,),) = reader.client.execute_sql(f"SELECT COUNT(*) FROM {records}", *params)
        section.note = f"the newest {max_records} of {int(total)} (--max-records)"
    return section


RUN_DETAIL_COLUMNS = (
    "run_id",
    "mode",
    "started_at",
    "outcome",
    "exit_code",
    "counts",
    "new_columns",
    "failed_outcomes",
)


def _run_details_section(reader: _Reader, last_runs: int) -> Section:
    """Each run with what came of it: its counts by status, the columns it added and how many
    of its outcomes failed (`--run-id`: that run alone)."""
    section = Section(
        RUN_DETAILS, "Each run: its outcomes, new columns and failures", RUN_DETAIL_COLUMNS
    )
    clauses, params = reader.window("r.started_at", run_column="r.run_id")
    failed = "0"
    if stored_columns(reader.client, LOG_TABLE) is not None:
        failed = (
            f"(SELECT COUNT(*) FROM {reader.table(LOG_TABLE)} l WHERE l.run_id = r.run_id "
            f"AND l.status = '{Status.FAILED.value}')"
        )
    reader.fill(
        section,
        RUNS_TABLE,
        f"SELECT r.run_id, r.mode, r.started_at, r.outcome, r.exit_code, r.counts, "
        f"r.new_columns, {failed} FROM {reader.table(RUNS_TABLE)} r {_where(clauses)} "
        f"ORDER BY r.started_at DESC, r.run_id DESC LIMIT {int(last_runs)}",
        params,
    )
    for row in section.rows:
        row["counts"] = _described(row["counts"], nonzero=True)
        row["new_columns"] = _described(row["new_columns"])
    return section


def _described(value: Any, *, nonzero: bool = False) -> str | None:
    """A JSON figure of a run (DuckDB gives its text, PostgreSQL the value) in words."""
    if isinstance(value, str):
        text = value
        try:
            value = json.loads(text)
        except ValueError:
            return text
    if isinstance(value, dict):
        parts = [
            f"{key} {', '.join(map(str, item)) if isinstance(item, list) else item}"
            for key, item in value.items()
            if not (nonzero and not item)
        ]
        return "; ".join(parts) or None
    return None if value is None else str(value)


def _latest_outcomes_sql(reader: _Reader) -> tuple[str, list[Any]]:
    """Log rows in the window, each with `newest` (1: the request's latest outcome in the
    window, by the one definition in `routera_archive.dataset.outcomes`) and `failed_rows`."""
    clauses, params = reader.window("l.processed_at", run_column="l.run_id")
    typed = reader.has_columns(LOG_TABLE, "object_type", "object_id")
    return ranked_outcomes(reader.table(LOG_TABLE), _where(clauses), typed=typed), params


def _outcome_sections(reader: _Reader, max_failures: int) -> list[Section]:
    latest, params = _latest_outcomes_sql(reader)
    statuses = reader.filters.statuses
    status_clause = ""
    status_params: list[Any] = []
    if statuses:
        status_clause = f"AND status IN ({', '.join(['%s'] * len(statuses))})"
        status_params = list(statuses)
    outcomes = reader.fill(
        Section(OUTCOMES, "Outcomes by latest status", ("status", "requests")),
        LOG_TABLE,
        f"SELECT status, COUNT(*) AS requests FROM ({latest}) ranked "
        f"WHERE newest = 1 {status_clause} GROUP BY status ORDER BY status",
        [*params, *status_params],
    )
    # `kind`: the request's type as `logged_type` reads it (a row of the previous release
    # has none: a contact's), by the same one definition of the latest outcome.
    by_type = reader.fill(
        Section(
            OUTCOMES_BY_TYPE,
            "Outcomes by type and latest status",
            ("object_type", "status", "requests"),
        ),
        LOG_TABLE,
        f"SELECT kind, status, COUNT(*) AS requests FROM ({latest}) ranked "
        f"WHERE newest = 1 {status_clause} GROUP BY kind, status ORDER BY kind, status",
        [*params, *status_params],
    )
    failures = Section(
        FAILURES,
        "Failures (requests whose latest outcome is failed; they stay pending)",
        (
            "request_id",
            "object_type",
            "object_id",
            "contact_id",
            "error",
            "http_status",
            "attempts",
            "failed_rows",
            "requested_by",
            "reason",
            "last_processed_at",
        ),
    )
    if statuses and Status.FAILED.value not in statuses:
        failures.note = "not shown: --status leaves out `failed`"
        return [outcomes, by_type, failures]
    reader.fill(
        failures,
        LOG_TABLE,
        f"SELECT request_id, kind, record_id, contact_id, error, http_status, attempts, "
        f"failed_rows, "
        f"requested_by, reason, processed_at FROM ({latest}) ranked "
        f"WHERE newest = 1 AND status = 'failed' "
        f"ORDER BY processed_at DESC, request_id LIMIT {int(max_failures) + 1}",
        params,
    )
    if len(failures.rows) > max_failures:
        failures.rows = failures.rows[:max_failures]
        total = next(
            (row["requests"] for row in outcomes.rows if row["status"] == Status.FAILED.value),
            None,
        )
        failures.note = (
            f"the {max_failures} most recent of {total} failed requests"
            if total is not None
            else f"the {max_failures} most recent failed requests; there are more"
        )
    return [outcomes, by_type, failures]


def _backlog_sections(
    pipeline: SupportsPipeline, reader: _Reader, queue_table: str, now: datetime
) -> list[Section]:
    """The backlog, in all and by type, from one query of the queue's own pending SQL (so
    "pending" means exactly what a run will pick up). A type is the queue's text: one that
    names no type is pending until a run settles it `invalid`."""
    total = Section(
        BACKLOG,
        "Pending backlog (now; no window applies)",
        ("pending", "oldest_requested_at", "oldest_age_hours"),
    )
    by_type = Section(
        BACKLOG_BY_TYPE,
        "Pending backlog by type (now; no window applies)",
        ("object_type", "pending", "oldest_requested_at", "oldest_age_hours"),
    )
    queue = PendingQueue(pipeline, queue_table=queue_table)
    try:
        pending_sql = queue._pending_sql()
    except QueueError as exc:
        total.note = by_type.note = str(exc)
        return [total, by_type]
    result = reader.client.execute_sql(
        f"SELECT object_type, COUNT(*), MIN(requested_at) FROM ({pending_sql}) pending "
        "GROUP BY object_type ORDER BY object_type"
    )
    for kind, count, oldest_raw in result or ():
        by_type.rows.append(
            {"object_type": _plain(kind), **_backlog_row(int(count or 0), oldest_raw, now)}
        )
    count = sum(row["pending"] for row in by_type.rows)
    oldest = min(
        (row["oldest_requested_at"] for row in by_type.rows if row["oldest_requested_at"]),
        default=None,
    )
    total.rows = [_backlog_row(count, oldest, now)]
    if count and oldest is None:
        total.note = "the queue has no requested_at for its pending requests: age unknown"
    return [total, by_type]


def _backlog_row(count: int, oldest_raw: Any, now: datetime) -> dict[str, Any]:
    oldest = _to_timestamp(oldest_raw)
    age = None if oldest is None else round((now - oldest).total_seconds() / 3600, 1)
    return {"pending": count, "oldest_requested_at": oldest, "oldest_age_hours": age}


def _fields_section(reader: _Reader) -> Section:
    """Each type's custom fields; a row of the previous release has no type (nor the table
    the column, until this release loads it): a contact's, its record `first_seen_contact_id`."""
    columns = (
        "object_type",
        "field_key",
        "column_name",
        "renamed",
        "first_seen_at",
        "first_seen_run_id",
        "first_seen_contact_id",
        "first_seen_object_id",
    )
    typed = reader.has_columns(FIELDS_TABLE, "object_type", "first_seen_object_id")
    kind, record = ("'contacts'", "first_seen_contact_id")
    if typed:
        kind = "COALESCE(object_type, 'contacts')"
        record = "COALESCE(first_seen_object_id, first_seen_contact_id)"
    listed = f"{kind} AS object_type, {', '.join(columns[1:-1])}, {record} AS first_seen_object_id"
    return reader.fill(
        Section(CUSTOM_FIELDS, "Custom fields by type, when each first appeared", columns),
        FIELDS_TABLE,
        f"SELECT {listed} FROM {reader.table(FIELDS_TABLE)} "
        "ORDER BY first_seen_at, object_type, field_key",
    )


def _runs_section(reader: _Reader, last_runs: int) -> Section:
    columns = (
        "run_id",
        "mode",
        "started_at",
        "finished_at",
        "outcome",
        "exit_code",
        "pending_at_start",
    )
    return reader.fill(
        Section(RUNS, f"Last {int(last_runs)} runs", columns),
        RUNS_TABLE,
        f"SELECT {', '.join(columns)} FROM {reader.table(RUNS_TABLE)} "
        f"ORDER BY started_at DESC, run_id DESC LIMIT {int(last_runs)}",
    )


def _evidence_sections(reader: _Reader) -> list[Section]:
    chain = reader.fill(
        Section(HASH_CHAIN, "Hash chain: its head (the newest link)", _CHAIN_COLUMNS),
        CHAIN_TABLE,
        f"SELECT {', '.join(_CHAIN_COLUMNS)} FROM {reader.table(CHAIN_TABLE)} "
        "ORDER BY chain_seq DESC LIMIT 1",
    )
    if chain.note:
        chain.note = "no hash chain yet: no run of this release has ended here"
    verified = reader.fill(
        Section(LAST_VERIFICATION, "The last verify recorded", _VERIFY_COLUMNS),
        VERIFICATIONS_TABLE,
        f"SELECT {', '.join(_VERIFY_COLUMNS)} FROM {reader.table(VERIFICATIONS_TABLE)} "
        "ORDER BY verified_at DESC LIMIT 1",
    )
    if verified.note:
        verified.note = "no verify recorded yet: run `routera-archive verify`"
    clauses, params = reader.window("redacted_at")
    redactions = reader.fill(
        Section(REDACTIONS, "Redactions", _REDACTION_COLUMNS),
        REDACTIONS_TABLE,
        f"SELECT {', '.join(_REDACTION_COLUMNS)} FROM {reader.table(REDACTIONS_TABLE)} "
        f"{_where(clauses)} ORDER BY redacted_at DESC, redaction_id DESC",
        params,
    )
    if redactions.note:
        redactions.note = "no redaction has been made in this dataset"
    rows = sum(int(row["row_count"] or 0) for row in redactions.rows)
    redactions.title = f"Redactions: {len(redactions.rows)}, {rows} rows redacted"
    return [chain, verified, redactions]


_CHAIN_COLUMNS = ("chain_seq", "chain_sha256", "run_id", "linked_at")
_VERIFY_COLUMNS = ("verified_at", "verified_by", "intact", "finding_count", "head", "links")
_REDACTION_COLUMNS = ("redaction_id", "redacted_at", "redacted_by", "reason", "row_count")


def build_report(
    pipeline: SupportsPipeline,
    filters: ReportFilters | None = None,
    *,
    queue_table: str = QUEUE_TABLE,
    last_runs: int = DEFAULT_LAST_RUNS,
    max_failures: int = DEFAULT_MAX_FAILURES,
    max_records: int = DEFAULT_MAX_RECORDS,
    now: datetime | None = None,
) -> AuditReport:
    """Read every section of the report from the pipeline's dataset.

    Database errors other than a missing table propagate (the caller says what went wrong).
    """
    filters = filters or ReportFilters()
    now = _utc(now) if now is not None else datetime.now(UTC)
    sections: list[Section] = []
    with pipeline.sql_client() as client:  # type: ignore[attr-defined]
        reader = _Reader(client, filters)
        sections.extend(_archives_sections(reader))
        sections.append(_archived_records_section(reader, max_records))
        sections.extend(_outcome_sections(reader, max_failures))
        sections.extend(_backlog_sections(pipeline, reader, queue_table, now))
        sections.append(_fields_section(reader))
        sections.append(_runs_section(reader, last_runs))
        sections.append(_run_details_section(reader, last_runs))
        sections.extend(_evidence_sections(reader))
    destination = getattr(pipeline, "destination", None)
    return AuditReport(
        generated_at=now,
        dataset=str(pipeline.dataset_name),
        destination=str(getattr(destination, "destination_name", destination)),
        filters=filters,
        sections={section.key: section for section in sections},
    )
