"""What a dataset holds: the backlog, the outcomes so far and the last runs."""

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import dlt
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from routera_archive.dataset.loading import stored_columns
from routera_archive.dataset.outcomes import ranked_outcomes
from routera_archive.dataset.queue import PendingQueue
from routera_archive.errors import QueueError
from routera_archive.names import LOG_TABLE, QUEUE_TABLE, RUNS_TABLE


@dataclass
class DatasetStatus:
    pending: int | None
    queue_error: str | None
    # The latest status of every request that has one.
    statuses: Counter[str] = field(default_factory=Counter)
    runs: list[dict[str, Any]] = field(default_factory=list)


def dataset_status(
    pipeline: dlt.Pipeline, *, queue_table: str = QUEUE_TABLE, last_runs: int = 10
) -> DatasetStatus:
    try:
        pending: int | None = PendingQueue(pipeline, queue_table=queue_table).count()
        queue_error = None
    except QueueError as exc:
        pending, queue_error = None, str(exc)
    status = DatasetStatus(pending=pending, queue_error=queue_error)
    with pipeline.sql_client() as client:
        log = client.make_qualified_table_name(LOG_TABLE)
        runs = client.make_qualified_table_name(RUNS_TABLE)
        typed = {"object_type", "object_id"} <= (stored_columns(client, LOG_TABLE) or set())
        try:
            rows = client.execute_sql(
                f"SELECT status, COUNT(*) FROM ({ranked_outcomes(log, typed=typed)}) ranked "
                "WHERE newest = 1 GROUP BY status"
            )
            status.statuses.update({str(s): int(n) for s, n in rows or ()})
        except DatabaseUndefinedRelation:
            pass
        try:
            with client.execute_query(
                f"SELECT run_id, mode, started_at, finished_at, outcome, exit_code, "
                f"pending_at_start FROM {runs} ORDER BY started_at DESC LIMIT {int(last_runs)}"
            ) as cursor:
                names = [col[0] for col in cursor.description]
                status.runs = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        except DatabaseUndefinedRelation:
            pass
    return status
