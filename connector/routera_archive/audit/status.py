"""What a dataset holds: the backlog, the outcomes so far and the last runs, in all and by type.

By type: the pending requests by the type the queue names (its text: one that names no type is
pending until a run settles it `invalid`), and each request's latest status by its type as the
log holds it (a row of the previous release has none: a contact's).
"""

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
    # Pending requests by queued type (empty when the queue cannot be read).
    pending_by_type: Counter[str] = field(default_factory=Counter)
    # The latest statuses (as `statuses`) by request type.
    statuses_by_type: dict[str, Counter[str]] = field(default_factory=dict)
    # The dlt pipeline read, and its folder (for `dlt pipeline NAME info`, ...).
    pipeline_name: str | None = None
    pipeline_folder: str | None = None


def status_dict(status: DatasetStatus) -> dict[str, Any]:
    """`status --format json`: the same figures as the text, for a scheduler."""
    return {
        "pending": status.pending,
        "queue_error": status.queue_error,
        "pending_by_type": dict(sorted(status.pending_by_type.items())),
        "statuses": dict(sorted(status.statuses.items())),
        "statuses_by_type": {
            kind: dict(sorted(counts.items()))
            for kind, counts in sorted(status.statuses_by_type.items())
        },
        "runs": status.runs,
        "pipeline": status.pipeline_name,
        "pipeline_folder": status.pipeline_folder,
    }


def dataset_status(
    pipeline: dlt.Pipeline, *, queue_table: str = QUEUE_TABLE, last_runs: int = 10
) -> DatasetStatus:
    try:
        by_type = PendingQueue(pipeline, queue_table=queue_table).count_by_type()
    except QueueError as exc:
        status = DatasetStatus(pending=None, queue_error=str(exc))
    else:
        status = DatasetStatus(
            pending=sum(by_type.values()), queue_error=None, pending_by_type=by_type
        )
    status.pipeline_name = pipeline.pipeline_name
    status.pipeline_folder = str(pipeline.working_dir)
    with pipeline.sql_client() as client:
        _read_statuses(client, status)
        _read_runs(client, status, last_runs)
    return status


def _read_statuses(client: Any, status: DatasetStatus) -> None:
    """Each request's latest status, by the one definition (`ranked_outcomes`), by type."""
    log = client.make_qualified_table_name(LOG_TABLE)
    typed = {"object_type", "object_id"} <= (stored_columns(client, LOG_TABLE) or set())
    try:
        rows = client.execute_sql(
            f"SELECT kind, status, COUNT(*) FROM ({ranked_outcomes(log, typed=typed)}) ranked "
            "WHERE newest = 1 GROUP BY kind, status"
        )
    except DatabaseUndefinedRelation:
        return
    for kind, name, count in rows or ():
        status.statuses[str(name)] += int(count)
        status.statuses_by_type.setdefault(str(kind), Counter())[str(name)] += int(count)


def _read_runs(client: Any, status: DatasetStatus, last_runs: int) -> None:
    runs = client.make_qualified_table_name(RUNS_TABLE)
    try:
        with client.execute_query(
            f"SELECT run_id, mode, started_at, finished_at, outcome, exit_code, "
            f"pending_at_start FROM {runs} ORDER BY started_at DESC LIMIT {int(last_runs)}"
        ) as cursor:
            names = [col[0] for col in cursor.description]
            status.runs = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    except DatabaseUndefinedRelation:
        pass
