"""Dagster: a job that fans out one op per shard (dynamic outputs), with an hourly schedule.

`dagster dev -f pipelines/schedules/dagster_defs.py`; install `routera-archive[dagster]`.
Credentials come from the environment (`SOURCES__ROUTERA__*`, `DESTINATION__*`).
"""

from collections.abc import Iterator

from dagster import (
    Definitions,
    DynamicOut,
    DynamicOutput,
    OpExecutionContext,
    ScheduleDefinition,
    job,
    op,
)

from routera_archive_pipelines.schedules.common import WORKERS, run_shard


@op(out=DynamicOut(int))
def shards() -> Iterator[DynamicOutput[int]]:
    for index in range(WORKERS):
        yield DynamicOutput(index, mapping_key=f"shard_{index}")


@op
def archive_shard(context: OpExecutionContext, index: int) -> dict[str, int]:
    report = run_shard(index, WORKERS)
    context.log.info(f"shard {index}/{WORKERS}: {report.outcome} {dict(report.counts)}")
    return dict(report.counts)


@job(tags={"dagster/max_concurrent_runs": "1"})
def routera_archive_job() -> None:
    shards().map(archive_shard)


defs = Definitions(
    jobs=[routera_archive_job],
    schedules=[ScheduleDefinition(job=routera_archive_job, cron_schedule="0 * * * *")],
)
