"""Reports for investigating (issue 16 item 7), on DuckDB and PostgreSQL: the archived
records in the window (who, why, which run; capped, the cap said), each run's outcomes, new
columns and failures, `--run-id` for one run, and column headers in words."""

import dlt

from routera_archive.audit.report import (
    ARCHIVED_RECORDS,
    RUN_DETAILS,
    ReportFilters,
    build_report,
)
from routera_archive.dataset.enqueue import enqueue
from routera_archive.run.runner import ArchiveRun
from routera_archive_pipelines.report_render import render_html
from routera_archive_sandbox import SandboxServer
from tests.conftest import source_config
from tests.pipeline.test_run import active_ids

MISSING = "00000000-0000-4000-8000-0000000000bb"


def test_records_and_runs_for_investigating(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    first, second = active_ids(sandbox_server, 3)[:2], active_ids(sandbox_server, 3)[2:]
    enqueue(pipeline, [{"contact_id": i} for i in first], requested_by="dpo", reason="DSR-1")
    one = ArchiveRun(pipeline, source_config(sandbox_server)).execute()
    enqueue(pipeline, [{"contact_id": i} for i in [*second, MISSING]], reason="cleanup")
    two = ArchiveRun(pipeline, source_config(sandbox_server)).execute()

    report = build_report(pipeline)
    records = report.sections[ARCHIVED_RECORDS].rows
    assert {row["id"] for row in records} == {*first, *second}
    by_id = {row["id"]: row for row in records}
    emails = {i: sandbox_server.state.get_contact(i)["email"] for i in first}  # type: ignore[index]
    for contact in first:
        row = by_id[contact]
        assert (row["name"], row["requested_by"], row["reason"], row["run_id"]) == (
            emails[contact],
            "dpo",
            "DSR-1",
            one.run_id,
        )
        assert row["archived_by"] == sandbox_server.config.client_id
    details = {row["run_id"]: row for row in report.sections[RUN_DETAILS].rows}
    assert "archived 2" in details[one.run_id]["counts"]
    assert "archived 1" in details[two.run_id]["counts"]
    assert "not_found 1" in details[two.run_id]["counts"]
    assert details[two.run_id]["failed_outcomes"] == 0

    only = build_report(pipeline, ReportFilters(run_id=two.run_id))
    assert [row["id"] for row in only.sections[ARCHIVED_RECORDS].rows] == second
    assert list({row["run_id"] for row in only.sections[RUN_DETAILS].rows}) == [two.run_id]
    assert {row["status"]: row["requests"] for row in only.sections["outcomes"].rows} == {
        "archived": 1,
        "not_found": 1,
    }

    capped = build_report(pipeline, max_records=2)
    assert len(capped.sections[ARCHIVED_RECORDS].rows) == 2
    assert capped.sections[ARCHIVED_RECORDS].note == "the newest 2 of 3 (--max-records)"

    page = render_html(report)
    assert ">archived by</th>" in page and ">requested by</th>" in page
    assert ">archived_by</th>" not in page
