"""Reading the queue: which requests are pending, page by page, straight from the destination.

The queue is whatever table the user keeps (made by `enqueue`, dbt or plain SQL); it needs an
id column: `contact_id` (contacts, as always) or `object_id` with `object_type` (any type;
absent or NULL means contacts). A request is pending while `archive_log` holds no terminal row
for it. The anti-join, the de-duplication by (type, id) and the lookup of records that are
already in their type's audit table all run in SQL, so memory stays flat however long the
queue is. A run reads pages by key (`request_id > last`), each a new query, so rows written
meanwhile cannot shift them and its own loads are seen; a dry run, which writes nothing
meanwhile, reads the same rows in the same order from one query (`stream`).
"""

import contextlib
import enum
import hashlib
import logging
from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from dlt.common.pipeline import SupportsPipeline

from routera_archive.dataset.loading import stored_columns
from routera_archive.dataset.outcomes import is_terminal, logged_id, logged_type
from routera_archive.dataset.rows import NUL_STAND_IN, RequestKey, request_key
from routera_archive.errors import InvalidObjectId, QueueError
from routera_archive.http.ids import (
    DOT_SEGMENTS,
    PLAIN_CONTACT_ID,
    id_preview,
    validate_object_id,
)
from routera_archive.models import ArchiveRequest, Status, parse_api_timestamp
from routera_archive.names import LOG_TABLE, QUEUE_TABLE
from routera_archive.objects import NotAnObjectType, ObjectType, parse_object_type

logger = logging.getLogger(__name__)

OPTIONAL_QUEUE_COLUMNS: tuple[str, ...] = ("request_id", "requested_by", "reason", "requested_at")
# The columns a queue may name its records' ids in (at least one; see `pending_sql`).
ID_COLUMNS: tuple[str, ...] = ("contact_id", "object_id")
# A request id derived where the queue has none: `cid:<id>` for a contact (as before types
# existed), `<type>:<id>` for another type; `cid-null`/`<type>-null` for a NULL id.
DERIVED_REQUEST_PREFIX = "cid:"
NULL_CONTACT_REQUEST = "cid-null"


@dataclass(frozen=True)
class Shard:
    """Worker `index` of `count` (0-based), for splitting one queue between workers."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count}: need 0 <= I < N")

    def __str__(self) -> str:
        """`I/N`, as the CLI takes it and `archive_runs.shard` and the lock record it."""
        return f"{self.index}/{self.count}"

    @classmethod
    def parse(cls, text: str) -> "Shard":
        """`I/N`, as the CLI takes it (`0/4` … `3/4`)."""
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise ValueError(f"shard {text!r} is not of the form I/N (e.g. 0/4)") from None
        return cls(index, count)

    def owns(self, object_id: str | None, object_type: str = ObjectType.CONTACTS.value) -> bool:
        """A stable hash of the record (type, id): the same on every machine and Python
        version.

        By record, not by request, so every request for one record meets in one worker, where
        duplicates are recognised. A contact hashes its id alone, as before types existed, so
        that no shard's contacts move to another; another type hashes `<type>/<id>`.
        """
        key = object_id or ""
        if object_type != ObjectType.CONTACTS.value:
            key = f"{object_type}/{key}"
        digest = hashlib.sha1(key.encode("utf-8")).hexdigest()
        return int(digest[:15], 16) % self.count == self.index

    @property
    def label(self) -> str:
        """`IofN`: the shard in a name (its pipeline's, its staging dataset's)."""
        return f"{self.index}of{self.count}"


@dataclass(frozen=True)
class PendingTally:
    pending: int
    # Requests that will reach the API (not a duplicate, not already archived, not empty).
    to_call: int
    # The same, per type: the share check holds each type to its own active count.
    to_call_by_type: Mapping[ObjectType, int] = field(default_factory=dict)


class Archived(enum.IntEnum):
    """Whether a pending request's record is in its type's audit table already, and under
    which request (the SQL of `PendingQueue.summary` spells these as 0, 1, 2)."""

    NO = 0
    UNDER_THIS_REQUEST = 1
    UNDER_ANOTHER = 2

    @classmethod
    def of(cls, archived_under: str | None, request_id: str) -> "Archived":
        if archived_under is None:
            return cls.NO
        return cls.UNDER_THIS_REQUEST if archived_under == request_id else cls.UNDER_ANOTHER


class NoCall(NamedTuple):
    """How a pending request is settled without a call, and for an invalid id, why."""

    status: Status
    invalid_reason: str | None = None


class Queued(NamedTuple):
    """What names a queued record: its type as queued (`contacts` where the queue says
    none), its id, and a `contact_id` that names another record than the id does (the row
    is then refused: `invalid_reason`)."""

    object_type: str
    object_id: str | None
    clashing_contact_id: str | None = None


def invalid_reason(queued: Queued) -> str | None:
    """Why a queued row can never be a call, or None: a type that is not one, a `contact_id`
    beside the id that names another record, or an id that can never be valid."""
    kind = parse_object_type(queued.object_type)
    if isinstance(kind, NotAnObjectType):
        return kind.reason
    clash = queued.clashing_contact_id
    if clash is not None:
        if clash != queued.object_id:
            return (
                f"contact_id {id_preview(clash)} and object_id {id_preview(queued.object_id)} "
                "differ: the row names two records"
            )
        return (
            f"contact_id names a contact, and this row's object_type is {kind.value}: "
            "a record of another type is queued by its object_id alone"
        )
    try:
        validate_object_id(queued.object_id, field=kind.id_field)
    except InvalidObjectId as exc:
        return exc.reason
    return None


def settled_without_call(queued: Queued, archived: Archived, duplicate: bool) -> NoCall | None:
    """The one rule of which pending requests need no call, or None for one that needs the API:
    a row that can never be valid (`invalid_reason`), a record already in the trail (under
    this request: only its log row is missing), or a record another request comes first for
    (`duplicate`).

    It reads nothing but these three, so requests alike in them are settled alike: what lets
    `PendingQueue.summary` count them by group in SQL. The run's `settle_without_call` words
    its outcomes from this one rule.
    """
    reason = invalid_reason(queued)
    if reason is not None:
        return NoCall(Status.INVALID, reason)
    if archived is Archived.UNDER_THIS_REQUEST:
        return NoCall(Status.ARCHIVED)
    if archived is Archived.UNDER_ANOTHER or duplicate:
        return NoCall(Status.DUPLICATE)
    return None


@dataclass
class PendingSummary:
    """What a dry run shows and the guardrails count, from one run of the pending SQL."""

    # Every pending request (in this shard), and those that need the API, in all and by type.
    pending: int = 0
    to_call: int = 0
    to_call_by_type: Counter[ObjectType] = field(default_factory=Counter)
    # The first `limit` pending requests in the run's order, by how they are settled (None:
    # by a call).
    planned: Counter[Status | None] = field(default_factory=Counter)
    # The first `shown` of them, as rows of `pending_sql` (`identity`, `to_pending`).
    shown: list[Sequence[Any]] = field(default_factory=list)

    def tally(self) -> PendingTally:
        return PendingTally(self.pending, self.to_call, dict(self.to_call_by_type))

    def add(self, settled: NoCall | None, planned: bool, count: int, queued: Queued) -> None:
        self.pending += count
        if settled is None:  # so its type is one (`invalid_reason`)
            self.to_call += count
            self.to_call_by_type[ObjectType(queued.object_type)] += count
        if planned:
            self.planned[None if settled is None else settled.status] += count


@dataclass(frozen=True)
class PendingRequest:
    """A pending request, with what SQL already knows about it."""

    request: ArchiveRequest
    # What names its record, as queued (the request carries the type it parsed to).
    queued: Queued
    # The earliest pending request for the same record; differs from ours for a duplicate.
    first_request_id: str
    # The request under which the record already sits in its type's audit table, if it does.
    archived_under: str | None


@dataclass(frozen=True)
class QueueShape:
    """What the pending SQL needs to know of a dataset: its tables' qualified names, which
    columns the queue and the log have, and which audit tables exist yet."""

    queue: str
    log: str
    # The qualified audit table of each type that exists yet with `id` and `request_id`.
    archives: dict[ObjectType, str]
    queue_columns: frozenset[str]
    log_is_ready: bool
    # Whether the log has `object_type` and `object_id` (rows the previous release wrote, and
    # the columns before this release's first load, have not: they are contacts').
    log_is_typed: bool = True
    text_type: str = "VARCHAR"
    nul_stand_in: bool = False


def pending_sql(shape: QueueShape) -> str:
    """The one definition of the pending requests, as SQL. A request is its id (derived as
    `cid:<contact id>`, or `<type>:<id>`, where the queue has none), its type and its record's
    id: a request id used again for another record (a dbt `row_number()`, next week's CSV) or
    another type is another request, never one already done. It is pending while
    `archive_log` holds no terminal row for it. With each: the first pending request for its
    record (duplicates, per type and id), the request its record is already archived under
    in its type's table, and a `contact_id` that names another record than its id does. The
    shipped audit queries 02 and 13 are this SQL for the queue `enqueue` makes."""
    text = shape.text_type
    columns = shape.queue_columns
    contacts = f"CAST('{ObjectType.CONTACTS.value}' AS {text})"
    object_type = (
        f"COALESCE(CAST(q.object_type AS {text}), {contacts})"
        if "object_type" in columns
        else contacts
    )
    by_contact, by_object = f"CAST(q.contact_id AS {text})", f"CAST(q.object_id AS {text})"
    has_contact, has_object = "contact_id" in columns, "object_id" in columns
    if has_contact and has_object:
        object_id = f"COALESCE({by_object}, {by_contact})"
        # A contact_id that does not simply name the contact: on a row of another type (a
        # contact id is never taken for another type's), or beside an object_id it differs
        # from.
        clash = (
            f"CASE WHEN q.contact_id IS NOT NULL AND ({object_type} <> {contacts} OR "
            f"(q.object_id IS NOT NULL AND {by_object} <> {by_contact})) "
            f"THEN {by_contact} END"
        )
    elif has_object:
        object_id, clash = by_object, f"CAST(NULL AS {text})"
    else:
        object_id = by_contact
        clash = (
            f"CASE WHEN q.contact_id IS NOT NULL AND {object_type} <> {contacts} "
            f"THEN {by_contact} END"
        )
    # NULL || text is NULL in SQL, so a NULL id derives its own request id.
    prefix = f"CASE WHEN {object_type} = {contacts} THEN 'cid' ELSE {object_type} END"
    derived = f"COALESCE({prefix} || ':' || {object_id}, {prefix} || '-null')"
    request_id = (
        f"COALESCE(CAST(q.request_id AS {text}), {derived})" if "request_id" in columns else derived
    )
    # The request as the log holds it (`rows.log_row`), to find its outcomes there; the
    # request itself keeps the queued text, so that a NUL stays a NUL and `invalid`.
    logged_kind, logged_record = "r.object_type", "r.object_id"
    if shape.nul_stand_in:
        # dlt's writer drops NUL from text, so the log would hold another id than the queue
        # and the request would stay pending forever; a visible stand-in keeps them equal.
        request_id = f"REPLACE({request_id}, CHR(0), '{NUL_STAND_IN}')"
        logged_kind = f"REPLACE({logged_kind}, CHR(0), '{NUL_STAND_IN}')"
        logged_record = f"REPLACE({logged_record}, CHR(0), '{NUL_STAND_IN}')"

    def optional(column: str, cast: str | None) -> str:
        if column not in columns:
            return f"CAST(NULL AS {cast or text})"
        return f"CAST(q.{column} AS {cast})" if cast else f"q.{column}"

    typed = shape.log_is_typed
    not_terminal = (
        f"AND NOT EXISTS (SELECT 1 FROM {shape.log} l WHERE l.request_id = r.request_id "
        f"AND {logged_type('l', typed=typed)} = {logged_kind} "
        f"AND {logged_id('l', typed=typed)} IS NOT DISTINCT FROM {logged_record} "
        f"AND {is_terminal('l')})"
        if shape.log_is_ready
        else ""
    )
    archived = " UNION ALL ".join(
        f"SELECT CAST('{kind.value}' AS {text}) AS object_type, id, MIN(request_id) AS "
        f"request_id FROM {table} GROUP BY id"
        for kind, table in shape.archives.items()
    )
    archived_join = (
        f"LEFT JOIN ({archived}) a ON a.object_type = p.object_type AND a.id = p.object_id"
        if archived
        else "LEFT JOIN (SELECT NULL AS id, NULL AS request_id) a ON 1 = 0"
    )
    return f"""
WITH q AS (
    SELECT {request_id} AS request_id, {object_type} AS object_type, {object_id} AS object_id,
           {clash} AS clashing_contact_id,
           {optional("requested_by", text)} AS requested_by,
           {optional("reason", text)} AS reason,
           {optional("requested_at", None)} AS requested_at
    FROM {shape.queue} q
), r AS (
    SELECT request_id, object_type, object_id,
           MIN(requested_by) AS requested_by, MIN(reason) AS reason,
           MIN(requested_at) AS requested_at, MIN(clashing_contact_id) AS clashing_contact_id
    FROM q GROUP BY request_id, object_type, object_id
), p AS (
    SELECT r.*,
           FIRST_VALUE(r.request_id) OVER (
               PARTITION BY r.object_type, r.object_id
               ORDER BY CASE WHEN r.clashing_contact_id IS NULL THEN 0 ELSE 1 END,
                        r.requested_at, r.request_id
           ) AS first_request_id
    FROM r WHERE 1 = 1 {not_terminal}
)
SELECT p.request_id, p.object_type, p.object_id, p.requested_by, p.reason, p.requested_at,
       p.first_request_id, a.request_id AS archived_under, p.clashing_contact_id
FROM p {archived_join}
"""


# The order requests are handled in, by their identity: id, type, then record id (a NULL id
# before every other, '' included: two keys, so that paging by key tells them apart).
_PAGE_HAS_RECORD = "CASE WHEN pending.object_id IS NULL THEN 0 ELSE 1 END"
_PAGE_RECORD = "COALESCE(pending.object_id, '')"
_PAGE_ORDER = f"pending.request_id, pending.object_type, {_PAGE_HAS_RECORD}, {_PAGE_RECORD}"
# The server-side cursor a PostgreSQL stream reads (one per connection, closed with it).
_STREAM_CURSOR = "routera_archive_pending"
# DuckDB's memory for the one query of `PendingQueue.summary`: the pending SQL's grouping,
# window and sort spill to DuckDB's temp_directory beyond it instead of growing (~200 MB for
# 1,000,000 pending requests without it, the run's other memory aside). Restored after.
SUMMARY_MEMORY_LIMIT = "100MB"
# What settles a pending request (`settled_without_call`'s inputs), as columns of `pending_sql`.
_STANDING = (
    "pending.object_type, pending.object_id, pending.clashing_contact_id, "
    "pending.first_request_id <> pending.request_id AS duplicate, "
    f"CASE WHEN pending.archived_under IS NULL THEN {Archived.NO:d} "
    f"WHEN pending.archived_under = pending.request_id THEN {Archived.UNDER_THIS_REQUEST:d} "
    f"ELSE {Archived.UNDER_ANOTHER:d} END AS archived"
)
# The width of a row of `pending_sql`.
_PENDING_WIDTH = 9


def _summary_sql(base: str, limit: int | None, shown: int) -> str:
    """One statement over one run of the pending SQL (`base`): the first `shown` rows in the
    run's order, then the pending requests counted by what settles them
    (`settled_without_call`'s inputs) and by whether they fall within the first `limit`.

    Its result is a few hundred rows however long the queue, so nothing big is held, neither
    by DuckDB (which keeps a whole result before the first fetch) nor in Python. A request that
    is plain (a type's exact name, no clashing `contact_id`, an id matching
    `ids.PLAIN_CONTACT_ID`: valid for certain) is counted in its group; any other gets a group
    of its own, so that Python decides it. DuckDB's SQL (`regexp_full_match`).
    """
    kinds = ", ".join(f"'{kind.value}'" for kind in ObjectType)
    plain = (
        f"COALESCE(pending.object_type IN ({kinds}) AND pending.clashing_contact_id IS NULL "
        f"AND regexp_full_match(pending.object_id, '{PLAIN_CONTACT_ID}') AND "
        f"pending.object_id NOT IN ({', '.join(repr(dot) for dot in DOT_SEGMENTS)}), FALSE)"
    )
    planned = (
        "TRUE" if limit is None else f"ROW_NUMBER() OVER (ORDER BY {_PAGE_ORDER}) <= {int(limit)}"
    )
    first_rows = shown if limit is None else min(shown, limit)
    group_width = 8  # part, planned, duplicate, archived, count, type, id, clash
    shown_part = (
        f"SELECT 'shown' AS part, {', '.join(['NULL'] * (group_width - 1))}, shown.* FROM ("
        f"SELECT * FROM pending ORDER BY {_PAGE_ORDER} LIMIT {int(first_rows)}) shown "
        "UNION ALL "
        if first_rows > 0
        else ""
    )
    return f"""
WITH pending AS MATERIALIZED ({base}),
standing AS (
    SELECT {_STANDING}, {plain} AS plain, {planned} AS planned
    FROM pending
)
{shown_part}SELECT 'group', planned, duplicate, archived, COUNT(*), object_type,
       MIN(object_id), MIN(clashing_contact_id), {", ".join(["NULL"] * _PENDING_WIDTH)}
FROM standing
GROUP BY planned, duplicate, archived, plain, object_type,
         CASE WHEN plain THEN NULL ELSE object_id END,
         CASE WHEN plain THEN NULL ELSE clashing_contact_id END
"""


@contextlib.contextmanager
def _bounded_memory(client: Any) -> Iterator[None]:
    """DuckDB's memory_limit at `SUMMARY_MEMORY_LIMIT` for what runs inside, then as it was.

    A setting of the whole database, so only for a query while nothing else uses it (a dry
    run; a run's tally, before any load starts).
    """
    rows = client.execute_sql("SELECT current_setting('memory_limit')")
    before = str(rows[0][0])
    client.execute_sql(f"SET memory_limit = '{SUMMARY_MEMORY_LIMIT}'")
    try:
        yield
    finally:
        client.execute_sql(f"SET memory_limit = '{before}'")


def _fetch_many(client: Any, sql: str, batch_size: int) -> Iterator[Sequence[Any]]:
    """The rows of one execution of `sql`, `batch_size` at a time, from the driver's cursor."""
    with client, client.execute_query(sql) as cursor:
        while rows := cursor.fetchmany(batch_size):
            yield rows


def _fetch_by_cursor(client: Any, sql: str, batch_size: int) -> Iterator[Sequence[Any]]:
    """The rows of one execution of `sql` through a server-side cursor, `batch_size` at a time.

    A cursor lives in a transaction; this one only reads, and ends with its connection however
    the reading ends (an abandoned generator included).
    """
    with client, client.begin_transaction():
        client.execute_sql(f"DECLARE {_STREAM_CURSOR} NO SCROLL CURSOR FOR {sql}")
        fetch = f"FETCH FORWARD {int(batch_size)} FROM {_STREAM_CURSOR}"
        while rows := client.execute_sql(fetch):
            yield rows
        client.execute_sql(f"CLOSE {_STREAM_CURSOR}")


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _coerce_requested_at(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    try:
        return parse_api_timestamp(str(value))
    except ValueError:
        logger.warning("ignoring a requested_at that is not a timestamp: %r", value)
        return None


class PendingQueue:
    """The pending part of the queue in one destination dataset."""

    def __init__(
        self,
        pipeline: SupportsPipeline,
        *,
        queue_table: str = QUEUE_TABLE,
        log_table: str = LOG_TABLE,
        shard: Shard | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._shard = shard
        self._client: Any = None
        # The types whose audit table the SQL of the latest page joins (`archived_under`):
        # only for those may a run forget the records it loaded.
        self.recognised_types: frozenset[ObjectType] = frozenset()
        self._queue_table = queue_table
        self._log_table = log_table

    def _sql_client(self) -> Any:
        """One sql_client for every query of this queue, made at the first one.

        Asking the pipeline for a client resolves its configuration (tens of milliseconds),
        and must not happen while another thread loads with `pipeline.run()`: that races dlt's
        run state. The runner makes its first query before any load starts.
        """
        if self._client is None:
            self._client = self._pipeline.sql_client()  # type: ignore[attr-defined]
        return self._client

    def _columns(self, table: str) -> set[str] | None:
        """The lower-cased column names of `table`, or None when it does not exist."""
        with self._sql_client() as client:
            return stored_columns(client, table)

    def _pending_sql(self) -> str:
        queue_columns = self._columns(self._queue_table)
        if queue_columns is None:
            raise QueueError(
                f"there is no queue table `{self._queue_table}` in dataset "
                f"`{self._pipeline.dataset_name}`: add ids with `routera-archive enqueue`, or "
                "create the table with at least a `contact_id` column (or `object_type` and "
                "`object_id`)"
            )
        if not queue_columns & set(ID_COLUMNS):
            raise QueueError(
                f"the queue table `{self._queue_table}` has neither a `contact_id` nor an "
                f"`object_id` column (it has: {', '.join(sorted(queue_columns)) or 'no columns'})"
            )
        log_columns = self._columns(self._log_table) or set()
        found: dict[ObjectType, str] = {}
        with self._sql_client() as client:
            queue = client.make_qualified_table_name(self._queue_table)
            log = client.make_qualified_table_name(self._log_table)
        for kind in ObjectType:
            columns = self._columns(kind.table)
            if columns is not None and {"id", "request_id"} <= columns:
                with self._sql_client() as client:
                    found[kind] = client.make_qualified_table_name(kind.table)
        destination = self._pipeline.destination.destination_name
        shape = QueueShape(
            queue,
            log,
            found,
            queue_columns=frozenset(queue_columns),
            log_is_ready={"request_id", "status"} <= log_columns,
            log_is_typed={"object_type", "object_id"} <= log_columns,
            # BigQuery and Databricks spell the text type STRING; the rest is portable.
            text_type="STRING" if destination in ("bigquery", "databricks") else "VARCHAR",
            # dlt's DuckDB writer drops NUL from text (see `pending_sql`).
            nul_stand_in=destination in ("duckdb", "motherduck"),
        )
        self.recognised_types = frozenset(found)
        return pending_sql(shape)

    def count(self) -> int:
        """How many requests are pending (in this shard)."""
        return self.tally().pending

    def count_by_type(self) -> Counter[str]:
        """How many requests are pending, by the type the queue names (`pending_sql`'s
        `object_type`: its text, which may name no type), from one grouping query; with a
        shard, only its own requests."""
        if self._shard is not None:
            counts: Counter[str] = Counter()
            for standing in self._standing(5000):
                counts.update(queued.object_type for queued, _, _ in standing)
            return counts
        sql = (
            f"SELECT pending.object_type, COUNT(*) FROM ({self._pending_sql()}) pending "
            "GROUP BY pending.object_type"
        )
        with self._sql_client() as client:
            rows = client.execute_sql(sql) or ()
        return Counter({str(kind): int(count) for kind, count in rows})

    def tally(self, settled: Collection[RequestKey] = ()) -> PendingTally:
        """Pending requests and how many of them need the API (a run's guardrails), less the
        `settled` ones: requests whose outcome the run holds and the dataset does not yet (a
        crashed run's journal handed to the source's extract), which the pending SQL still
        finds. Those are counted row by row; without them, as `summary` counts."""
        if not settled:
            return self.summary(limit=None, shown=0).tally()
        summary = PendingSummary()
        for rows in self.stream(5000):
            for row in rows:
                pending = self.to_pending(row)
                if request_key(pending.request) in settled:
                    continue
                identity = self.identity(row)
                summary.add(identity.settled(), True, 1, identity.queued)
        return summary.tally()

    def summary(self, limit: int | None, shown: int, batch_size: int = 5000) -> PendingSummary:
        """Every pending request counted by how it is settled, the first `limit` of them (all,
        for None) apart, and the first `shown` rows, from one run of the pending SQL.

        Paging (`pages`) would run the whole pending SQL once per page: 431 s for a dry run of
        1,000,000 pending requests. On DuckDB (no shard) one statement does the counting
        (`_summary_sql`) under a bounded memory_limit, so its result is tiny and its sorts and
        groupings spill instead of growing: DuckDB would hold a result of a million rows
        whole before the first fetch, and the SQL itself took ~200 MB. Elsewhere, or for a
        shard (whose hash is Python's), the rows are read `batch_size` at a time and counted
        here: only the columns the count needs, unordered, when nothing is to be shown or
        limited, else every row in the run's order (`stream`).
        """
        if self._shard is None and self._pipeline.destination.destination_name == "duckdb":
            return self._summary_in_sql(limit, shown)
        summary = PendingSummary()
        if limit is None and shown == 0:
            for standing in self._standing(batch_size):
                for queued, duplicate, archived in standing:
                    summary.add(settled_without_call(queued, archived, duplicate), True, 1, queued)
            return summary
        for rows in self.stream(batch_size):
            for row in rows:
                identity = self.identity(row)
                planned = limit is None or summary.pending < limit
                summary.add(identity.settled(), planned, 1, identity.queued)
                if planned and len(summary.shown) < shown:
                    summary.shown.append(row)
        return summary

    def _summary_in_sql(self, limit: int | None, shown: int) -> PendingSummary:
        sql = _summary_sql(self._pending_sql(), limit, shown)
        client = self._sql_client()
        with client:
            try:
                with _bounded_memory(client):
                    rows = client.execute_sql(sql)
            except Exception as exc:
                if "Out of Memory" not in str(exc):
                    raise
                # Some part of this query could not spill: the same query unbounded, as
                # before the limit (it holds more memory, but it answers).
                logger.warning("the pending summary ran out of DuckDB's bounded memory: %s", exc)
                rows = client.execute_sql(sql)
        summary = PendingSummary()
        for part, planned, duplicate, archived, count, kind, object_id, clash, *row in rows or ():
            if part == "shown":
                summary.shown.append(tuple(row))
                continue
            queued = Queued(str(kind), _text(object_id), _text(clash))
            settled = settled_without_call(queued, Archived(archived), duplicate)
            summary.add(settled, bool(planned), int(count), queued)
        summary.shown.sort(
            key=lambda row: (str(row[0]), str(row[1]), row[2] is not None, _text(row[2]) or "")
        )
        return summary

    def _standing(self, batch_size: int) -> Iterator[list[tuple[Queued, bool, Archived]]]:
        """Every pending request (in this shard) as what settles it, unordered, read
        `batch_size` rows at a time from one query of only those columns."""
        sql = f"SELECT {_STANDING} FROM ({self._pending_sql()}) pending"
        with self._sql_client() as client, client.execute_query(sql) as cursor:
            while rows := cursor.fetchmany(batch_size):
                batch = []
                for kind, object_id, clash, duplicate, archived in rows:
                    queued = Queued(str(kind), _text(object_id), _text(clash))
                    if self._shard is not None and not self._shard.owns(
                        queued.object_id, queued.object_type
                    ):
                        continue
                    batch.append((queued, bool(duplicate), Archived(archived)))
                yield batch

    def stream(self, batch_size: int) -> Iterator[Sequence[Sequence[Any]]]:
        """Every pending request, in the order of `pages`, from one run of the pending SQL, as
        the rows of `pending_sql` (`identity` and `to_pending` read them).

        For a reader that writes nothing while it reads (the dry run): `pages` runs the whole
        pending SQL again for every page, so that a run sees the outcomes it loaded meanwhile,
        which made a dry run of 1,000,000 pending requests take 431 s (500 pages, each paying
        for the anti-join, the grouping and the window over the whole queue). Here the SQL runs
        once and its rows are read `batch_size` at a time, never all held in Python: DuckDB
        streams them to `fetchmany`; PostgreSQL's driver would fetch the whole result at
        `execute`, so there a server-side cursor (DECLARE ... FETCH) hands them over a batch at
        a time. The SQL is made here, at the call, as `pages` makes its first.
        """
        base = self._pending_sql()
        sql = f"SELECT * FROM ({base}) pending ORDER BY {_PAGE_ORDER}"
        client = self._sql_client()
        if self._pipeline.destination.destination_name == "postgres":
            batches = _fetch_by_cursor(client, sql, batch_size)
        else:
            batches = _fetch_many(client, sql, batch_size)
        for rows in batches:
            if self._shard is not None:
                rows = [row for row in rows if self._owns(row)]
            if rows:
                yield rows

    def _owns(self, row: Sequence[Any]) -> bool:
        shard = self._shard
        return shard is None or shard.owns(_text(row[2]), str(row[1]))

    def pages(self, page_size: int) -> Iterator[list[PendingRequest]]:
        """Pending requests in `request_id` order, `page_size` at a time.

        The first page's SQL is made here, at the call (a missing queue table is an error
        before anything starts), and again for each later page: it depends on which audit
        tables exist, and a first run creates them with its first load. Every query runs on
        this queue's sql_client, which a run reads in a worker thread while another thread
        loads chunks.
        """
        base = self._pending_sql()
        return self._read_pages(self._sql_client(), base, page_size)

    def _read_pages(self, client: Any, base: str, page_size: int) -> Iterator[list[PendingRequest]]:
        record, has_record = _PAGE_RECORD, _PAGE_HAS_RECORD
        last: tuple[str, str, int, str] | None = None
        while True:
            if last is not None:
                base = self._pending_sql()
            after = (
                "pending.request_id > %s OR (pending.request_id = %s AND "
                "(pending.object_type > %s OR (pending.object_type = %s AND "
                f"({has_record} > %s OR ({has_record} = %s AND {record} > %s)))))"
            )
            where = "" if last is None else f"WHERE {after}"
            sql = (
                f"SELECT * FROM ({base}) pending {where} "
                f"ORDER BY {_PAGE_ORDER} LIMIT {int(page_size)}"
            )
            params = (
                ()
                if last is None
                else (last[0], last[0], last[1], last[1], last[2], last[2], last[3])
            )
            with client:
                rows = client.execute_sql(sql, *params)
            if not rows:
                return
            page = [self._to_pending(row) for row in rows]
            final = page[-1]
            queued = final.queued
            has = 0 if queued.object_id is None else 1
            last = (final.request.request_id, queued.object_type, has, queued.object_id or "")
            if self._shard is not None:
                page = [
                    item
                    for item in page
                    if self._shard.owns(item.queued.object_id, item.queued.object_type)
                ]
            if page:
                yield page
            if len(rows) < page_size:
                return

    @staticmethod
    def identity(row: Sequence[Any]) -> "Identity":
        """What settles a row of `pending_sql` without a call (as `to_pending` reads it,
        without the objects)."""
        return Identity(
            request_id=str(row[0]),
            queued=Queued(str(row[1]), _text(row[2]), _text(row[8])),
            first_request_id=str(row[6]),
            archived_under=_text(row[7]),
        )

    @staticmethod
    def to_pending(row: Sequence[Any]) -> PendingRequest:
        """A row of `pending_sql` as a PendingRequest."""
        return PendingQueue._to_pending(row)

    @staticmethod
    def _to_pending(row: Any) -> PendingRequest:
        (request_id, kind, object_id, requested_by, reason, requested_at, first, prior, clash) = row
        queued = Queued(str(kind), _text(object_id), _text(clash))
        parsed = parse_object_type(queued.object_type)
        known = None if isinstance(parsed, NotAnObjectType) else parsed
        request = ArchiveRequest(
            request_id=str(request_id),
            object_type=known,
            object_id=queued.object_id,
            requested_by=_text(requested_by),
            reason=_text(reason),
            requested_at=_coerce_requested_at(requested_at),
            queued_type=None if known is not None else queued.object_type,
            # Only what is wrong with the row itself: an id the API refuses by its own rules
            # is the archiver's to word (`validate_object_id`), as before.
            queue_problem=(
                invalid_reason(queued)
                if known is None or queued.clashing_contact_id is not None
                else None
            ),
        )
        return PendingRequest(
            request=request,
            queued=queued,
            first_request_id=str(first),
            archived_under=_text(prior),
        )


class Identity(NamedTuple):
    """What settles a row of `pending_sql` without a call (`settled_without_call`)."""

    request_id: str
    queued: Queued
    first_request_id: str
    archived_under: str | None

    def settled(self) -> NoCall | None:
        """How the row is settled without a call, if it is."""
        return settled_without_call(
            self.queued,
            Archived.of(self.archived_under, self.request_id),
            self.first_request_id != self.request_id,
        )
