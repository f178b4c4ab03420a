"""Dagster with dagster-dlt: the queue drained as a dlt asset, `pipeline.run(routera_archive())`.

`dagster dev -m routera_archive_pipelines.schedules.dagster_dlt_assets`; install
`routera-archive[dagster]`. The asset is the dlt source's one resource (`archive_run`): each
materialization is one run of the CLI's kind on the pipeline's destination and dataset (the
lock, the journal, the guardrails; README, "The dlt source"), loaded by dagster-dlt's
`DagsterDltResource`. Destination and dataset come from `ROUTERA_ARCHIVE_*`
(`common.ScheduleSettings`), credentials from the environment (`SOURCES__ROUTERA__*`,
`DESTINATION__*`). One asset, one run at a time: for shards, use `dagster_defs.py`.

The source is made when Dagster loads this file, before its pipeline is active: a package a
killed materialization left is then loaded by dlt's run() on the next materialization, which
archives nothing that time, and by the one after (README, "Pending packages").
"""

from collections.abc import Iterator
from typing import Any

import dlt
from dagster import AssetExecutionContext, Definitions
from dagster_dlt import DagsterDltResource, dlt_assets

from routera_archive import routera_archive
from routera_archive_pipelines.schedules.common import SETTINGS


@dlt_assets(
    dlt_source=routera_archive(),
    dlt_pipeline=dlt.pipeline(
        pipeline_name=f"routera_archive_dagster_{SETTINGS.dataset}",
        destination=SETTINGS.destination,
        dataset_name=SETTINGS.dataset,
    ),
    name="routera_archive",
    group_name="routera",
)
def routera_archive_assets(
    context: AssetExecutionContext, dlt: DagsterDltResource
) -> Iterator[Any]:
    yield from dlt.run(context=context)


defs = Definitions(assets=[routera_archive_assets], resources={"dlt": DagsterDltResource()})
