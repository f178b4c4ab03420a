"""Dagster with dagster-dlt: the queue drained as a dlt asset, `pipeline.run(routera_archive())`.

`dagster dev -m routera_archive_pipelines.schedules.dagster_dlt_assets`; install
`routera-archive[dagster]`. The asset is the dlt source's one resource (`archive_run`): each
materialization is one run of the CLI's kind on the pipeline's destination and dataset (the
lock, the journal, the guardrails; README, "The dlt source"), loaded by dagster-dlt's
`DagsterDltResource`. Destination and dataset come from `ROUTERA_ARCHIVE_*`
(`common.ScheduleSettings`), credentials from the environment (`SOURCES__ROUTERA__*`,
`DESTINATION__*`). One asset, one run at a time: for shards, use `dagster_defs.py`.

dagster-dlt's resource drops the pipeline's local folder (`pipeline.drop()`) before each run
unless the pipeline restores nothing from its destination, and only its pending packages then:
the run's journal lives in that folder, so a killed materialization's answers would be lost to
the next one, which would send each record's DELETE again (answered 404) and read it back with
a GET. So the pipeline here restores nothing from the destination (it needs nothing: the
source keeps all it knows in the dataset's tables), and the asset first repairs what a killed
materialization left (`recover_pipeline_folder`: its unloaded packages, loaded the runner's
way before dagster-dlt would drop them, and a schema file dlt left half-written). The source is
made when Dagster loads this file, before its pipeline, so it does not do that itself.
"""

from collections.abc import Iterator
from typing import Any

import dlt
from dagster import AssetExecutionContext, Definitions
from dagster_dlt import DagsterDltResource, dlt_assets

from routera_archive import recover_pipeline_folder, routera_archive
from routera_archive_pipelines.schedules.common import SETTINGS

# Made before the pipeline, which dlt.pipeline() activates: made inside it, the source would
# repair the folder here, while Dagster loads this file, where the run's credentials may not be.
SOURCE = routera_archive()
PIPELINE = dlt.pipeline(
    pipeline_name=f"routera_archive_dagster_{SETTINGS.dataset}",
    destination=SETTINGS.destination,
    dataset_name=SETTINGS.dataset,
)
# Or dagster-dlt wipes the folder, and the journal with it, before each run (see above).
PIPELINE.config.restore_from_destination = False


@dlt_assets(
    dlt_source=SOURCE,
    dlt_pipeline=PIPELINE,
    name="routera_archive",
    group_name="routera",
)
def routera_archive_assets(
    context: AssetExecutionContext, dlt: DagsterDltResource
) -> Iterator[Any]:
    recover_pipeline_folder(PIPELINE)
    yield from dlt.run(context=context)


defs = Definitions(assets=[routera_archive_assets], resources={"dlt": DagsterDltResource()})
