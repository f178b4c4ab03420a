"""Airflow with dlt's own helper: the queue drained by `PipelineTasksGroup.add_run`, hourly.

Copy into your DAGs folder; install `routera-archive[airflow]` (Airflow 3) in the worker image.
The task (`routera_archive_dlt_tasks.routera_archive_run`) is one run of the CLI's kind on the
pipeline's destination and dataset, `pipeline.run(routera_archive())` (README, "The dlt
source"), run by dlt's `PythonOperator` task. Destination and dataset come from
`ROUTERA_ARCHIVE_*` (`common.ScheduleSettings`), credentials from the environment
(`SOURCES__ROUTERA__*`, `DESTINATION__*`). One task, one run at a time: for shards, use
`airflow_dag.py`.

What the helper does to the pipeline folder, whatever its settings: `PipelineTasksGroup` points
`DLT_DATA_DIR` at a fresh `dlt_<random>` folder each time the DAG file is parsed (every task
process parses it), and each task starts with `pipeline.drop()`, which empties the pipeline's
folder. The run's journal and a killed task's unloaded packages never reach the next task: the
requests a killed task archived are still queued, and the next run's DELETE answers 404 and
its GET recovers each record (`recovered = true`, one DELETE more each). `wipe_local_data=False`
keeps the folder after the task for a person to look at; it cannot bring it back. Runs of two
tasks at once are refused by the dataset's lock in the destination, as in `airflow_dag.py`.
"""

from datetime import datetime

import dlt
from airflow.sdk import dag
from dlt.helpers.airflow_helper import PipelineTasksGroup

from routera_archive import routera_archive
from routera_archive_pipelines.schedules.common import SETTINGS


@dag(
    schedule="@hourly",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # the next hour waits for this one
    tags=["routera"],
)
def routera_archive_dlt() -> None:
    # Before the pipeline: the helper points dlt's data folder at its own, and refuses a
    # pipeline made before it.
    tasks = PipelineTasksGroup(
        "routera_archive_dlt_tasks", use_data_folder=False, wipe_local_data=False
    )
    # The source before the pipeline, which dlt.pipeline() activates: made while a pipeline is
    # active, it would load that pipeline's pending packages now, while Airflow parses the file.
    source = routera_archive()
    pipeline = dlt.pipeline(
        pipeline_name=f"routera_archive_airflow_{SETTINGS.dataset}",
        destination=SETTINGS.destination,
        dataset_name=SETTINGS.dataset,
    )
    tasks.add_run(
        pipeline,
        source,
        decompose="none",  # one task: the source's run is one resource
        trigger_rule="all_done",
        retries=0,  # a failed run is retried by the next hour's, which finds what is left
    )


routera_archive_dlt()
