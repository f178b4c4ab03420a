"""Dagster: a job that fans out one op per shard (dynamic outputs), with an hourly schedule.

`dagster dev -m routera_archive_pipelines.schedules.dagster_defs`; install
`routera-archive[dagster]` (tested on the versions `scripts/constraints-schedulers.txt` pins).
Destination, dataset and shard count come from `ROUTERA_ARCHIVE_*` (`common.ScheduleSettings`);
credentials from the environment (`SOURCES__ROUTERA__*`, `DESTINATION__*`).

Overlap, three ways, each honoured by Dagster 1.13:
- the schedule skips its tick while a run of the job is queued or in progress (`hourly`, below:
  Dagster's documented pattern; a `dagster/max_concurrent_runs` tag is not a Dagster setting);
- a deployment can also cap the job's runs in its `dagster.yaml`, by the `routera_archive/dataset`
  tag the job carries: `concurrency: {runs: {tag_concurrency_limits: [{key:
  routera_archive/dataset, value: {applyLimitPerUniqueValue: true}, limit: 1}]}}` (the daemon's
  run queue honours it; `execute_in_process` and `dagster job execute` do not pass through it);
- whatever starts a second run (a person's launch, a backfill), the dataset's lock refuses each
  of its shards: the op fails with "another run holds dataset" and archives nothing.
"""

from collections.abc import Iterator

from dagster import (
    DagsterRunStatus,
    Definitions,
    DynamicOut,
    DynamicOutput,
    OpExecutionContext,
    RunRequest,
    RunsFilter,
    ScheduleEvaluationContext,
    SkipReason,
    job,
    op,
    schedule,
)

from routera_archive_pipelines.schedules.common import SETTINGS, WORKERS, run_shard

# A run in one of these states still holds, or is about to take, the dataset's shards.
IN_PROGRESS = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]


@op(out=DynamicOut(int))
def shards() -> Iterator[DynamicOutput[int]]:
    for index in range(WORKERS):
        yield DynamicOutput(index, mapping_key=f"shard_{index}")


@op
def archive_shard(context: OpExecutionContext, index: int) -> dict[str, int]:
    report = run_shard(index, WORKERS)
    context.log.info(f"shard {index}/{WORKERS}: {report.outcome} {dict(report.counts)}")
    return dict(report.counts)


@job(tags={"routera_archive/dataset": f"{SETTINGS.destination}.{SETTINGS.dataset}"})
def routera_archive_job() -> None:
    shards().map(archive_shard)


@schedule(job=routera_archive_job, cron_schedule="0 * * * *")
def hourly(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
    running = context.instance.get_run_records(
        RunsFilter(job_name=routera_archive_job.name, statuses=IN_PROGRESS), limit=1
    )
    if running:
        return SkipReason(f"run {running[0].dagster_run.run_id} of this job is still in progress")
    return RunRequest()


defs = Definitions(jobs=[routera_archive_job], schedules=[hourly])
