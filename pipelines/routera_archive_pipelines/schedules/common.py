"""What every scheduler example does for one worker: one run of one shard, failing loudly.

Exit codes a scheduler should alert on: 1 (some requests failed; the next run retries them),
2 (configuration or credentials), 3 (a guardrail refused the run: a person must look), 130
(stopped by a signal). 0 is the only success.
"""

from routera_archive.config import resolve_source_config
from routera_archive.dataset.queue import Shard
from routera_archive.run.runner import ArchiveRun, RunOptions, RunReport
from routera_archive_pipelines.factory import make_pipeline

WORKERS = 4
DESTINATION = "postgres"
DATASET = "routera_archive"


class ArchiveRunFailed(RuntimeError):
    """Raised so the scheduler marks the task failed; the message is the run's own account."""


def run_shard(index: int, count: int = WORKERS) -> RunReport:
    shard = Shard(index, count)
    pipeline = make_pipeline(DESTINATION, DATASET, shard=shard)
    report = ArchiveRun(pipeline, resolve_source_config(), RunOptions(shard=shard)).execute()
    if report.exit_code != 0:
        raise ArchiveRunFailed(
            f"shard {index}/{count}, run {report.run_id}: {report.outcome} "
            f"(exit {report.exit_code}): {report.error or dict(report.counts)}"
        )
    return report
