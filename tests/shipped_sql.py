"""The shipped audit queries that speak of pending requests, made from the connector's own
pending SQL (`routera_archive.dataset.queue.pending_sql`) for the queue `enqueue` makes, in the
dataset `routera_archive`: `tests/pipeline/test_latest_outcome.py` checks the files hold
exactly this, and `python -m tests.shipped_sql` writes them again after the SQL changed.

Written for DuckDB and PostgreSQL alike: the text type is VARCHAR, and the stand-in for a NUL in
an id that a run on DuckDB adds (`CHR(0)`, which PostgreSQL refuses) is left out: `enqueue`
refuses such ids, so only a hand-made queue can hold one.
"""

from pathlib import Path

from routera_archive.dataset.queue import QueueShape, pending_sql
from routera_archive.dataset.tables import QUEUE_COLUMNS
from routera_archive.objects import ObjectType

AUDIT_DIR = Path(__file__).resolve().parents[1] / "connector" / "routera_archive" / "audit" / "sql"
DATASET = "routera_archive"
SHAPE = QueueShape(
    f"{DATASET}.archive_queue",
    f"{DATASET}.archive_log",
    # Only `contact_archives`, which every dataset that archived has: the other types' tables
    # exist once a record of theirs was loaded, and a static query cannot name a table that
    # may not exist. Which requests are pending does not depend on it (only `archived_under`
    # of another type's request, which the run itself reads from its table).
    {ObjectType.CONTACTS: f"{DATASET}.contact_archives"},
    queue_columns=frozenset(QUEUE_COLUMNS),
    log_is_ready=True,
)
ORIGIN = """-- The connector's own definition, word for word: made from its pending SQL
-- (routera_archive/dataset/queue.py) for the queue `enqueue` makes, and kept equal to it by
-- the tests (python -m tests.shipped_sql writes it again). A request's id is derived as
-- `cid:<contact_id>` where the queue has none."""


def pending_query() -> str:
    return f"""-- Requests still pending: no terminal outcome yet (every status but `failed` is
-- terminal; a `failed` request is tried again by the next run). A request is its id and its
-- contact: an id used again for another contact is another request. `first_request_id`: the
-- request that stands for a contact asked for twice; `archived_under`: the request the contact
-- is already in the audit trail under.
{ORIGIN}
SELECT pending.* FROM ({pending_sql(SHAPE).strip()}
) pending
ORDER BY pending.request_id;
"""


def backlog_query() -> str:
    return f"""-- How big and how old the backlog is: pending requests (no terminal outcome yet, as
-- in 02_pending_requests.sql) and the oldest `requested_at` among them. The age is
-- `now() - oldest_requested_at`.
{ORIGIN}
SELECT COUNT(*) AS pending, MIN(pending.requested_at) AS oldest_requested_at
FROM ({pending_sql(SHAPE).strip()}
) pending;
"""


SHIPPED = {
    "02_pending_requests.sql": pending_query,
    "13_pending_backlog_age.sql": backlog_query,
}


if __name__ == "__main__":
    for name, render in SHIPPED.items():
        (AUDIT_DIR / name).write_text(render(), encoding="utf-8")
