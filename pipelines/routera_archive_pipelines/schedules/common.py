"""What every scheduler example does for one worker: one run of one shard, failing loudly.

Exit codes a scheduler should alert on: 1 (some requests failed; the next run retries them),
2 (configuration or credentials), 3 (a guardrail refused the run: a person must look), 130
(stopped by a signal). 0 is the only success.
"""

import os
from dataclasses import dataclass

from routera_archive.config import resolve_source_config
from routera_archive.dataset.queue import Shard
from routera_archive.errors import ConfigurationError
from routera_archive.names import DATASET_NAME
from routera_archive.run.runner import ArchiveRun, RunOptions, RunReport
from routera_archive_pipelines.factory import make_pipeline


@dataclass(frozen=True)
class ScheduleSettings:
    """Where the scheduled runs write and how many workers share the queue, from the
    environment of the scheduler's workers (read when the job or DAG is loaded):
    `ROUTERA_ARCHIVE_DESTINATION` (default `postgres`: shard workers run side by side, and a
    DuckDB file takes one process at a time), `ROUTERA_ARCHIVE_DATASET` and
    `ROUTERA_ARCHIVE_SHARDS` (default 4)."""

    destination: str = "postgres"
    dataset: str = DATASET_NAME
    shards: int = 4

    @classmethod
    def from_environment(cls) -> "ScheduleSettings":
        found = cls()
        shards = os.environ.get("ROUTERA_ARCHIVE_SHARDS", str(found.shards)).strip()
        if not shards.isdigit() or not 1 <= int(shards) <= 256:
            raise ConfigurationError(
                f"ROUTERA_ARCHIVE_SHARDS must be a whole number from 1 to 256, got {shards!r}"
            )
        return cls(
            destination=os.environ.get("ROUTERA_ARCHIVE_DESTINATION", found.destination).strip()
            or found.destination,
            dataset=os.environ.get("ROUTERA_ARCHIVE_DATASET", found.dataset).strip()
            or found.dataset,
            shards=int(shards),
        )


SETTINGS = ScheduleSettings.from_environment()
WORKERS = SETTINGS.shards


class ArchiveRunFailed(RuntimeError):
    """Raised so the scheduler marks the task failed; the message is the run's own account."""


def run_shard(index: int, count: int = WORKERS, settings: ScheduleSettings = SETTINGS) -> RunReport:
    shard = Shard(index, count)
    pipeline = make_pipeline(settings.destination, settings.dataset, shard=shard)
    report = ArchiveRun(pipeline, resolve_source_config(), RunOptions(shard=shard)).execute()
    if report.exit_code != 0:
        raise ArchiveRunFailed(
            f"shard {index}/{count}, run {report.run_id}: {report.outcome} "
            f"(exit {report.exit_code}): {report.error or dict(report.counts)}"
        )
    return report
