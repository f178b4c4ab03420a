"""Runnable examples of using the connector from Python, as a dlt verified source would ship.

    python -m routera_archive_pipelines.routera_archive_pipeline           # drains the queue
    python -m routera_archive_pipelines.routera_archive_pipeline a1 b2 c3  # these ids, no queue

Credentials come from `.dlt/secrets.toml` or `SOURCES__ROUTERA__*` environment variables.
"""

import sys

import dlt

from routera_archive.config import resolve_source_config
from routera_archive.run.runner import ArchiveRun, RunOptions, RunReport
from routera_archive.source import routera_archive
from routera_archive_pipelines.factory import make_pipeline


def drain_queue(destination: str = "duckdb", dataset: str = "routera_archive") -> RunReport:
    """The production path: lock, pending requests from the queue table, guardrails, chunks."""
    pipeline = make_pipeline(destination, dataset)
    return ArchiveRun(pipeline, resolve_source_config(), RunOptions()).execute()


def archive_ids(contact_ids: list[str]) -> dlt.common.pipeline.LoadInfo:
    """The dlt-native source on its own: no queue table, the ids come from the caller."""
    pipeline = make_pipeline(pipeline_name="routera_archive_ids")
    return pipeline.run(routera_archive(contact_ids))


if __name__ == "__main__":
    if len(sys.argv) > 1:
        print(archive_ids(sys.argv[1:]))  # noqa: T201 - an example script talks to its user
    else:
        report = drain_queue()
        print(report.outcome, dict(report.counts))  # noqa: T201
        sys.exit(report.exit_code)
