"""Redaction by age, on DuckDB and PostgreSQL: `--older-than` leaves rows archived within the
window alone and redacts the older ones; `redact_after_days` does it at the end of each run,
as a redaction of its own linked after the run; `verify` stays intact through both."""

from datetime import UTC, datetime, timedelta

import dlt
import pytest

from routera_archive.audit.verify import verify_dataset
from routera_archive.dataset.enqueue import enqueue
from routera_archive.dataset.redact import REDACT_MODE, RedactionRequest
from routera_archive.errors import ExitCode
from routera_archive.run.retention import redact_dataset
from routera_archive.run.runner import ArchiveRun, RunOptions
from routera_archive_sandbox import SandboxServer
from tests.conftest import TWINNED, source_config
from tests.pipeline.test_run import active_ids, query


def emails(pipeline: dlt.Pipeline) -> dict[str, str | None]:
    rows = query(pipeline, "SELECT id, email FROM {dataset}.contact_archives")
    return {str(record_id): email for record_id, email in rows}


@pytest.mark.parametrize("destination", TWINNED, indirect=True)
def test_older_than_redacts_only_rows_archived_before_the_window(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    ids = active_ids(sandbox_server, 5)
    enqueue(pipeline, [{"contact_id": i} for i in ids])
    assert ArchiveRun(pipeline, source_config(sandbox_server)).execute().exit_code == 0

    (within,) = redact_dataset(pipeline, RedactionRequest(older_than_days=30))
    assert within.row_count == 0 and within.link is None
    assert all(email is not None for email in emails(pipeline).values())

    later = datetime.now(UTC) + timedelta(days=31)
    (dry,) = redact_dataset(pipeline, RedactionRequest(older_than_days=30), now=later, dry_run=True)
    assert dry.rows == {"contact_archives": sorted(ids)}
    assert all(email is not None for email in emails(pipeline).values())

    (done,) = redact_dataset(pipeline, RedactionRequest(older_than_days=30), now=later)
    assert done.rows == {"contact_archives": sorted(ids)}
    assert done.request.why() == "retention: archived more than 30 days ago"
    assert set(emails(pipeline).values()) == {None}
    result = verify_dataset(pipeline)
    assert result.intact, result.findings


@pytest.mark.parametrize("destination", TWINNED, indirect=True)
def test_redact_after_days_redacts_at_the_end_of_a_run(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    first, second = active_ids(sandbox_server, 6)[:3], active_ids(sandbox_server, 6)[3:]
    enqueue(pipeline, [{"contact_id": i} for i in first])
    config = source_config(sandbox_server, redact_after_days=30)
    assert ArchiveRun(pipeline, config).execute().exit_code == 0
    assert all(email is not None for email in emails(pipeline).values())  # all within 30 days

    enqueue(pipeline, [{"contact_id": i} for i in second])
    later = datetime.now(UTC) + timedelta(days=31)
    report = ArchiveRun(pipeline, config, clock=lambda: later).execute()
    assert report.exit_code == ExitCode.OK, report.error
    assert [item["row_count"] for item in report.retention] == [6]
    assert set(emails(pipeline).values()) == {None}
    modes = query(pipeline, "SELECT run_id, mode FROM {dataset}.archive_runs ORDER BY started_at")
    assert modes[-1] == (f"{report.run_id}-retention", REDACT_MODE)
    assert verify_dataset(pipeline).intact

    dry = ArchiveRun(pipeline, config, RunOptions(dry_run=True), clock=lambda: later).execute()
    assert dry.retention == []  # a dry run changes nothing
