"""Airflow: one mapped task per shard (dynamic task mapping), hourly, never overlapping itself.

Copy into your DAGs folder; install `routera-archive[airflow]` (Airflow 3, tested on the version
`scripts/constraints-schedulers.txt` pins) in the worker image. Destination, dataset and shard
count come from `ROUTERA_ARCHIVE_*` (`common.ScheduleSettings`); credentials from the
environment (`SOURCES__ROUTERA__*`, `DESTINATION__POSTGRES__CREDENTIALS`), e.g. from an Airflow
connection or secrets backend exported by the deployment.

Overlap: `max_active_runs=1` makes the scheduler start the next hour's run only once this one
has ended, so two runs' workers never share a shard. A run started outside the scheduler
(`airflow dags test`, a second deployment) is still refused shard by shard by the dataset's lock:
its tasks fail with "another run holds dataset" and archive nothing.
"""

from datetime import datetime, timedelta

from airflow.sdk import dag, task

from routera_archive_pipelines.schedules.common import WORKERS, run_shard


@dag(
    schedule="@hourly",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # the next hour waits for this one: workers never overlap a shard
    default_args={"retries": 0, "execution_timeout": timedelta(hours=1)},
    tags=["routera"],
)
def routera_archive() -> None:
    @task
    def archive_shard(index: int) -> dict[str, int]:
        return dict(run_shard(index, WORKERS).counts)

    archive_shard.expand(index=list(range(WORKERS)))


routera_archive()
