"""The shipped audit queries made from the connector's own SQL, in the dataset `routera_archive`:
the pending requests (`routera_archive.dataset.queue.pending_sql`, for the queue `enqueue`
makes) and `all_archives` (`routera_archive.audit.all_archives`, every type's audit table as
one). `tests/pipeline/test_latest_outcome.py` checks the files hold exactly this, and
`python -m tests.shipped_sql` writes them again after the SQL changed.

Written for DuckDB and PostgreSQL alike: the text type is VARCHAR, and the stand-in for a NUL in
an id that a run on DuckDB adds (`CHR(0)`, which PostgreSQL refuses) is left out: `enqueue`
refuses such ids, so only a hand-made queue can hold one.

They name all four types' audit tables: a run makes every type's table at its first load
(`routera_archive.dataset.tables.empty_archives`), so a static query may name them all on any
dataset this release has loaded (one of the previous release: once this release ran on it).
"""

from pathlib import Path

from routera_archive.audit.all_archives import all_archives_sql
from routera_archive.dataset.queue import QueueShape, pending_sql
from routera_archive.dataset.tables import QUEUE_COLUMNS
from routera_archive.objects import ObjectType

AUDIT_DIR = Path(__file__).resolve().parents[1] / "connector" / "routera_archive" / "audit" / "sql"
DATASET = "routera_archive"
TABLES = {kind: f"{DATASET}.{kind.table}" for kind in ObjectType}
SHAPE = QueueShape(
    f"{DATASET}.archive_queue",
    f"{DATASET}.archive_log",
    TABLES,
    queue_columns=frozenset(QUEUE_COLUMNS),
    log_is_ready=True,
)
ORIGIN = """-- The connector's own definition, word for word: made from its pending SQL
-- (routera_archive/dataset/queue.py) for the queue `enqueue` makes, and kept equal to it by
-- the tests (python -m tests.shipped_sql writes it again). A request's id is derived as
-- `cid:<contact_id>` (a contact) or `<object_type>:<object_id>` where the queue has none."""
ALL_ARCHIVES_ORIGIN = """-- `all_archives` is every type's audit table as one (contact_archives,
-- company_archives, deal_archives, ticket_archives), with the columns they share and the type
-- as `object_type`: the connector's own definition, word for word
-- (routera_archive/audit/all_archives.py; python -m tests.shipped_sql writes it again). A run
-- makes all four tables at its first load, so it runs on any dataset this release has loaded
-- (one of the previous release: after this release's first run on it)."""


def all_archives_cte() -> str:
    return f"all_archives AS (\n{all_archives_sql(TABLES)}\n)"


def pending_query() -> str:
    return f"""-- Requests still pending: no terminal outcome yet (every status but `failed` is
-- terminal; a `failed` request is tried again by the next run). A request is its id, its type
-- and its record's id: an id used again for another record is another request.
-- `first_request_id`: the request that stands for a record asked for twice (per type and id);
-- `archived_under`: the request the record is already in its type's audit table under.
{ORIGIN}
SELECT pending.* FROM ({pending_sql(SHAPE).strip()}
) pending
ORDER BY pending.request_id, pending.object_type, pending.object_id;
"""


def backlog_query() -> str:
    return f"""-- How big and how old the backlog is, per object type: pending requests (no terminal
-- outcome yet, as in 02_pending_requests.sql) and the oldest `requested_at` among them. The
-- age is `now() - oldest_requested_at`. A type is the queue's text: one that names no type is
-- pending until a run settles it `invalid`.
{ORIGIN}
SELECT pending.object_type, COUNT(*) AS pending, MIN(pending.requested_at) AS oldest_requested_at
FROM ({pending_sql(SHAPE).strip()}
) pending
GROUP BY pending.object_type
ORDER BY pending.object_type;
"""


def who_archived_what() -> str:
    return f"""-- Who archived what, when, and at whose request.
-- One row per archived record of every type, newest first.
{ALL_ARCHIVES_ORIGIN}
WITH {all_archives_cte()}
SELECT object_type, id, archived, archived_by, requested_by, reason
FROM all_archives ORDER BY archived DESC, object_type, id;
"""


def recovered_records() -> str:
    return f"""-- Records recovered after a lost answer, of every type.
-- `recovered` records were not taken from the run's own DELETE answer: read back with GET after
-- a 404 (`record_source = 'get'`, e.g. archived in the UI or by a crashed run) or from the
-- journal of a crashed run (`record_source = 'journal'`).
{ALL_ARCHIVES_ORIGIN}
WITH {all_archives_cte()}
SELECT object_type, id, archived, archived_by, record_source
FROM all_archives WHERE recovered ORDER BY archived, object_type, id;
"""


def who_archived_a_record() -> str:
    return f"""-- Who archived a given record: when, by whom, at whose request and why, in which
-- run, and whether the record was recovered. No row: the record is not in the audit trail.
-- Parameters in `params`: its type (contacts, companies, deals or tickets) and its id.
{ALL_ARCHIVES_ORIGIN}
WITH params AS (
  SELECT 'OBJECT-TYPE' AS object_type, 'OBJECT-ID' AS object_id
), {all_archives_cte()}
SELECT a.object_type, a.id, a.archived, a.archived_by, a.requested_by, a.reason,
       a.requested_at, a.request_id, a.run_id, a.recovered, a.record_source
FROM all_archives a
JOIN params p ON a.object_type = p.object_type AND a.id = p.object_id;
"""


def archives_by_requester_in_range() -> str:
    return f"""-- Archives in a date range, per requester and type: how many records of each type
-- each requester had archived, and the first and last archive time, with `archived` from `since`
-- (inclusive) to `before` (exclusive). Parameters: the range in `params` (timestamps with
-- their UTC offset).
{ALL_ARCHIVES_ORIGIN}
WITH params AS (
  SELECT CAST('2026-01-01 00:00:00+00' AS TIMESTAMP WITH TIME ZONE) AS since,
         CAST('2027-01-01 00:00:00+00' AS TIMESTAMP WITH TIME ZONE) AS before
), {all_archives_cte()}
SELECT a.requested_by, a.object_type, COUNT(*) AS archives,
       MIN(a.archived) AS first_archived, MAX(a.archived) AS last_archived
FROM all_archives a
JOIN params p ON a.archived >= p.since AND a.archived < p.before
GROUP BY a.requested_by, a.object_type
ORDER BY archives DESC, a.requested_by, a.object_type;
"""


def archives_per_day() -> str:
    return f"""-- Archives per day (UTC days, whatever the session's time zone) and type, oldest
-- first.
-- `AT TIME ZONE 'UTC'` is DuckDB and PostgreSQL syntax; other warehouses have their own
-- (Snowflake, Databricks, Redshift: CAST(CONVERT_TIMEZONE('UTC', archived) AS DATE);
-- BigQuery: DATE(archived, 'UTC')), as `routera-archive report` writes them.
{ALL_ARCHIVES_ORIGIN}
WITH {all_archives_cte()}
SELECT CAST(archived AT TIME ZONE 'UTC' AS DATE) AS day, object_type, COUNT(*) AS archives
FROM all_archives
GROUP BY CAST(archived AT TIME ZONE 'UTC' AS DATE), object_type
ORDER BY day, object_type;
"""


def all_archives() -> str:
    return f"""-- Every archived record of every type, with the columns all four audit tables share:
-- the base for questions across types (select from it, or keep it as a model or view of your own).
-- It is a query, not a view the connector makes: on PostgreSQL a view makes `DROP TABLE` of
-- the tables it reads fail (dlt drops tables that way: `dlt pipeline drop`, `refresh`), so a
-- view of your own must be dropped before dlt drops a table, and made again after.
{ALL_ARCHIVES_ORIGIN}
WITH {all_archives_cte()}
SELECT * FROM all_archives ORDER BY archived, object_type, id;
"""


SHIPPED = {
    "01_who_archived_what.sql": who_archived_what,
    "02_pending_requests.sql": pending_query,
    "04_recovered_records.sql": recovered_records,
    "05_who_archived_a_record.sql": who_archived_a_record,
    "07_archives_by_requester_in_range.sql": archives_by_requester_in_range,
    "11_archives_per_day.sql": archives_per_day,
    "13_pending_backlog_age.sql": backlog_query,
    "14_all_archives.sql": all_archives,
}


if __name__ == "__main__":
    for name, render in SHIPPED.items():
        (AUDIT_DIR / name).write_text(render(), encoding="utf-8")
