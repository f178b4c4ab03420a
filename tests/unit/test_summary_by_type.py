"""The run's summary speaks of types once a run handled more than contacts (issue 14)."""

from datetime import UTC, datetime

from rich.console import Console

from routera_archive.models import ArchiveOutcome, ArchiveRequest, Status
from routera_archive.objects import ObjectType
from routera_archive.run.result import NO_TYPE, PlannedRequest, RunReport
from routera_archive_pipelines.console import print_report


def report(mode: str = "run") -> RunReport:
    return RunReport(
        run_id="r-1",
        mode=mode,
        started_at=datetime.now(UTC),
        base_url="http://127.0.0.1:1",
        destination="duckdb",
        dataset="d",
    )


def printed(run: RunReport) -> str:
    console = Console(width=200, record=True, force_terminal=True)
    print_report(console, run)
    return console.export_text()


def outcome(status: Status, kind: ObjectType | None, queued: str | None = None) -> ArchiveOutcome:
    request = ArchiveRequest(request_id="q", object_type=kind, object_id="x", queued_type=queued)
    return ArchiveOutcome(request=request, status=status)


def test_a_contact_only_run_prints_no_type_lines() -> None:
    run = report()
    run.count(outcome(Status.ARCHIVED, ObjectType.CONTACTS))
    assert "contacts:" not in printed(run)


def test_a_mixed_run_prints_each_type_s_outcomes_and_names_no_queued_text() -> None:
    run = report()
    for status, kind in [
        (Status.ARCHIVED, ObjectType.CONTACTS),
        (Status.ARCHIVED, ObjectType.COMPANIES),
        (Status.DUPLICATE, ObjectType.COMPANIES),
    ]:
        run.count(outcome(status, kind))
    run.count(outcome(Status.INVALID, None, queued="[red]widgets[/red]"))

    text = printed(run)

    assert "companies: archived 1, duplicate 1" in text
    assert "contacts: archived 1" in text
    assert f"{NO_TYPE}: invalid 1" in text and "widgets" not in text
    assert run.run_row()["counts_by_type"] == {
        NO_TYPE: {"invalid": 1},
        "companies": {"archived": 1, "duplicate": 1},
        "contacts": {"archived": 1},
    }


def test_a_dry_run_plan_shows_each_request_s_type_as_queued_and_as_text() -> None:
    run = report("dry-run")
    run.plan_counts["archive"] = 2
    for kind, queued in [(ObjectType.COMPANIES, None), (None, "[bold]Deals[/bold]")]:
        request = ArchiveRequest(
            request_id="q", object_type=kind, object_id="x", queued_type=queued
        )
        run.plan.append(PlannedRequest(request, "archive"))

    text = printed(run)

    assert "object_type" in text and " companies " in text and "'companies'" not in text
    assert "'[bold]Deals[/bold]'" in text
