"""`report`, `status` and the shipped SQL by object type, on DuckDB and PostgreSQL (issue 14).

One dataset per destination, made once for the module by one run against a sandbox whose clock
is pinned: contacts and companies archived, a company whose DELETE breaks the contract (still
failing), a contact Routera does not know, and, queued after the run, a contact, a company and
a ticket. No deal is ever queued: deals are absent from every section, and their table exists,
empty (a run makes every type's table), so the shipped SQL that names it runs.

Then the release's own dataset (a log without `object_type`, `custom_fields` without it):
`report` and `status` read it by type as contacts, writing nothing.
"""

import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pytest
from rich.console import Console

from routera_archive.audit.report import (
    ARCHIVES_BY_ARCHIVED_BY,
    ARCHIVES_BY_ARCHIVED_BY_AND_TYPE,
    ARCHIVES_BY_REQUESTED_BY,
    ARCHIVES_BY_REQUESTED_BY_AND_TYPE,
    ARCHIVES_PER_DAY,
    ARCHIVES_PER_DAY_BY_TYPE,
    BACKLOG,
    BACKLOG_BY_TYPE,
    CUSTOM_FIELDS,
    FAILURES,
    OUTCOMES,
    OUTCOMES_BY_TYPE,
    AuditReport,
    build_report,
)
from routera_archive.audit.status import dataset_status
from routera_archive.dataset.enqueue import enqueue
from routera_archive.errors import ExitCode
from routera_archive.objects import ObjectType
from routera_archive.run.runner import ArchiveRun, RunOptions
from routera_archive_pipelines.console import print_status
from routera_archive_pipelines.factory import make_pipeline
from routera_archive_pipelines.report_render import render_csv, render_html, render_json
from routera_archive_sandbox import SandboxConfig, SandboxServer
from routera_archive_sandbox.state import SandboxState
from tests.conftest import POSTGRES_SKIP_REASON, POSTGRES_URL, postgres_available, source_config
from tests.pipeline.test_audit_sql import AUDIT_DIR, with_params
from tests.pipeline.test_report import BreakDeletes, Clock

DAY = datetime(2026, 7, 1, 10, 0, tzinfo=UTC)
ARCHIVER = "sandbox-client"  # who archives in the sandbox: its OAuth client


@dataclass
class Mixed:
    destination: str
    dataset: str
    duckdb_file: Path
    pipelines_dir: Path
    contacts: list[str]
    companies: list[str]
    failing_company: str
    run_id: str

    def pipeline(self) -> dlt.Pipeline:
        return make_pipeline(
            self.destination,
            self.dataset,
            duckdb_file=self.duckdb_file if self.destination == "duckdb" else None,
            pipelines_dir=self.pipelines_dir,
        )

    def shipped(self, name: str, **params: str) -> list[tuple[Any, ...]]:
        """A shipped query's rows, as a user runs it (DuckDB: the file's text as is)."""
        return self.run(with_params((AUDIT_DIR / name).read_text(encoding="utf-8"), **params))

    def run(self, sql: str) -> list[tuple[Any, ...]]:
        """SQL that names the dataset `routera_archive`, as a user runs it."""
        if self.destination == "duckdb":
            with duckdb.connect(str(self.duckdb_file), read_only=True) as db:
                return [tuple(row) for row in db.execute(sql).fetchall()]
        import psycopg2

        named = sql.replace("routera_archive.", f'"{self.dataset}".')
        connection = psycopg2.connect(POSTGRES_URL.replace(":trust", ""))
        try:
            with connection.cursor() as cursor:
                cursor.execute(named)
                return [tuple(row) for row in cursor.fetchall()]
        finally:
            connection.close()


def _build(pipe: dlt.Pipeline, server: SandboxServer) -> dict[str, Any]:
    state = server.state
    contacts = state.object_ids("contacts", include_archived=False)[:4]
    companies = state.object_ids("companies", include_archived=False)[:4]
    tickets = state.object_ids("tickets", include_archived=False)[:1]
    failing = companies[2]
    enqueue(pipe, [{"contact_id": cid} for cid in [*contacts[:2], "no-such-contact"]])
    enqueue(
        pipe,
        [{"contact_id": oid} for oid in companies[:3]],
        object_type=ObjectType.COMPANIES,
        requested_by="crm-cleanup",
    )
    first = ArchiveRun(
        pipe, source_config(server, max_share=0), RunOptions(), transport=BreakDeletes({failing})
    ).execute()
    assert first.exit_code == ExitCode.FAILED, first.error
    assert first.counts == {"archived": 4, "not_found": 1, "failed": 1}
    # Queued after the run: pending, with the failing company.
    enqueue(pipe, [{"contact_id": contacts[2]}])
    enqueue(pipe, [{"contact_id": companies[3]}], object_type=ObjectType.COMPANIES)
    enqueue(pipe, [{"contact_id": tickets[0]}], object_type=ObjectType.TICKETS)
    return {
        "contacts": contacts[:2],
        "companies": companies[:2],
        "failing_company": failing,
        "run_id": first.run_id,
    }


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def mixed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Mixed]:
    destination = str(request.param)
    if destination == "postgres" and not postgres_available():
        pytest.skip(POSTGRES_SKIP_REASON)
    base = tmp_path_factory.mktemp(f"by_type_{destination}")
    # The shipped SQL names `routera_archive`: DuckDB keeps that name, in a file of another.
    dataset = "routera_archive" if destination == "duckdb" else f"ra_types_{uuid.uuid4().hex[:8]}"
    config = SandboxConfig(port=0, contacts=10, companies=6, deals=3, tickets=3, seed=41)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DLT_DATA_DIR", str(base / "dlt_data"))
        patch.setenv("DESTINATION__POSTGRES__CREDENTIALS", POSTGRES_URL)
        built = Mixed(destination, dataset, base / "by_type.duckdb", base / "pipelines",
                      [], [], "", "")  # fmt: skip
        state = SandboxState(
            contacts=10, companies=6, deals=3, tickets=3, seed=41, clock=Clock(DAY)
        )
        with SandboxServer(config, state) as server:
            for name, value in _build(built.pipeline(), server).items():
                setattr(built, name, value)
        yield built
        if destination == "postgres":
            with built.pipeline().sql_client() as client:
                for name in (dataset, f"{dataset}_staging"):
                    client.execute_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture(scope="module")
def report(mixed: Mixed) -> AuditReport:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DESTINATION__POSTGRES__CREDENTIALS", POSTGRES_URL)
        return build_report(mixed.pipeline())


def rows(report: AuditReport, key: str) -> list[dict[str, Any]]:
    return report.sections[key].rows


def test_archives_are_counted_per_day_and_type_and_person_and_type(
    report: AuditReport,
) -> None:
    assert [(r["day"], r["archives"]) for r in rows(report, ARCHIVES_PER_DAY)] == [(DAY.date(), 4)]
    per_day = rows(report, ARCHIVES_PER_DAY_BY_TYPE)
    assert [(r["day"], r["object_type"], r["archives"]) for r in per_day] == [
        (DAY.date(), "companies", 2),
        (DAY.date(), "contacts", 2),
    ]
    archived_by = {
        (r["archived_by"], r["object_type"]): r["archives"]
        for r in rows(report, ARCHIVES_BY_ARCHIVED_BY_AND_TYPE)
    }
    assert archived_by == {(ARCHIVER, "companies"): 2, (ARCHIVER, "contacts"): 2}
    requested_by = {
        (r["requested_by"], r["object_type"]): r["archives"]
        for r in rows(report, ARCHIVES_BY_REQUESTED_BY_AND_TYPE)
    }
    assert requested_by == {("crm-cleanup", "companies"): 2, (None, "contacts"): 2}
    # The per-person lists stay totals, as before types existed.
    assert {r["archived_by"]: r["archives"] for r in rows(report, ARCHIVES_BY_ARCHIVED_BY)} == {
        ARCHIVER: 4
    }
    assert {r["requested_by"]: r["archives"] for r in rows(report, ARCHIVES_BY_REQUESTED_BY)} == {
        "crm-cleanup": 2,
        None: 2,
    }


def test_outcomes_by_type_add_up_to_the_outcomes(report: AuditReport) -> None:
    by_type = {
        (r["object_type"], r["status"]): r["requests"] for r in rows(report, OUTCOMES_BY_TYPE)
    }
    assert by_type == {
        ("companies", "archived"): 2,
        ("companies", "failed"): 1,
        ("contacts", "archived"): 2,
        ("contacts", "not_found"): 1,
    }  # fmt: skip
    totals = {r["status"]: r["requests"] for r in rows(report, OUTCOMES)}
    assert totals == {"archived": 4, "failed": 1, "not_found": 1}


def test_failures_name_their_type_and_object_id(report: AuditReport, mixed: Mixed) -> None:
    [failure] = rows(report, FAILURES)
    assert (failure["object_type"], failure["object_id"]) == ("companies", mixed.failing_company)
    assert failure["contact_id"] is None  # a company is no contact
    assert failure["failed_rows"] == 1 and "archived" in failure["error"]


def test_the_backlog_is_counted_by_type(report: AuditReport) -> None:
    by_type = {r["object_type"]: r["pending"] for r in rows(report, BACKLOG_BY_TYPE)}
    assert by_type == {"companies": 2, "contacts": 1, "tickets": 1}
    assert report.backlog["pending"] == 4
    oldest = min(r["oldest_requested_at"] for r in rows(report, BACKLOG_BY_TYPE))
    assert report.backlog["oldest_requested_at"] == oldest
    assert BACKLOG in report.sections


def test_custom_fields_carry_their_type(report: AuditReport, mixed: Mixed) -> None:
    fields = rows(report, CUSTOM_FIELDS)
    assert {r["object_type"] for r in fields} == {"contacts", "companies"}
    first_seen = {r["first_seen_object_id"] for r in fields if r["object_type"] == "companies"}
    assert first_seen <= set(mixed.companies)
    assert all(
        r["first_seen_contact_id"] is None for r in fields if r["object_type"] == "companies"
    )


def test_every_format_carries_the_sections_by_type(report: AuditReport) -> None:
    import json

    data = json.loads(render_json(report))
    assert {r["object_type"] for r in data[OUTCOMES_BY_TYPE]} == {"companies", "contacts"}
    assert data[BACKLOG]["pending"] == 4 and len(data[BACKLOG_BY_TYPE]) == 3
    assert "outcomes_by_type,,,,,,,companies" not in render_csv(report)  # rows fill their columns
    csv_rows = [
        line for line in render_csv(report).splitlines() if line.startswith("backlog_by_type,")
    ]
    assert len(csv_rows) == 3
    page = render_html(report)
    assert '<h2 id="archives_per_day_by_type">' in page
    day = DAY.date().isoformat()
    assert f"<title>{day}: 4 archives</title><desc>companies 2, contacts 2</desc>" in page


def test_status_counts_pending_and_latest_statuses_by_type(mixed: Mixed) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DESTINATION__POSTGRES__CREDENTIALS", POSTGRES_URL)
        status = dataset_status(mixed.pipeline())
    assert status.pending == 4
    assert status.pending_by_type == Counter({"companies": 2, "contacts": 1, "tickets": 1})
    assert status.statuses_by_type == {
        "companies": Counter({"archived": 2, "failed": 1}),
        "contacts": Counter({"archived": 2, "not_found": 1}),
    }
    assert status.statuses == Counter({"archived": 4, "failed": 1, "not_found": 1})
    console = Console(record=True, width=200, force_terminal=False)
    print_status(console, status)
    text = console.export_text()
    assert "pending requests: 4" in text
    lines = {line.split("│")[0].strip(): line for line in text.splitlines() if "│" in line}
    assert [cell.strip() for cell in lines["companies"].split("│")] == [
        "companies",
        "2",
        "3",
        "2",
        "1",
        "0",
    ]
    tickets = [cell.strip() for cell in lines["tickets"].split("│")]
    assert tickets == ["tickets", "1", "0", "0", "0", "0"]


def test_the_shipped_sql_covers_every_type(mixed: Mixed) -> None:
    who = mixed.shipped("01_who_archived_what.sql")
    assert Counter(r[0] for r in who) == Counter({"contacts": 2, "companies": 2})
    assert {r[1] for r in who} == {*mixed.contacts, *mixed.companies}
    assert mixed.shipped("11_archives_per_day.sql") == [
        (DAY.date(), "companies", 2),
        (DAY.date(), "contacts", 2),
    ]
    assert {(r[0], r[1]) for r in mixed.shipped("13_pending_backlog_age.sql")} == {
        ("companies", 2),
        ("contacts", 1),
        ("tickets", 1),
    }
    assert len(mixed.shipped("14_all_archives.sql")) == 4
    company = mixed.companies[0]
    [row] = mixed.shipped(
        "05_who_archived_a_record.sql", object_type="companies", object_id=company
    )
    assert row[:2] == ("companies", company) and row[4] == "crm-cleanup"
    assert (
        mixed.shipped("05_who_archived_a_record.sql", object_type="contacts", object_id=company)
        == []
    )
    history = mixed.shipped(
        "06_history_of_a_record.sql", object_type="companies", object_id=mixed.failing_company
    )
    assert [r[2] for r in history] == ["failed"]
    assert {r[1:] for r in mixed.shipped("03_outcomes_per_run.sql")} == {
        ("companies", "archived", 2),
        ("companies", "failed", 1),
        ("contacts", "archived", 2),
        ("contacts", "not_found", 1),
    }
    [failing] = mixed.shipped("10_requests_still_failing.sql")
    assert failing[10:] == ("companies", mixed.failing_company)
    assert {r[0] for r in mixed.shipped("12_custom_fields_first_seen.sql")} == {
        "contacts",
        "companies",
    }
    # Every type's table exists, those with no record of their type empty.
    for kind in (ObjectType.DEALS, ObjectType.TICKETS):
        assert mixed.run(f"SELECT COUNT(*) FROM routera_archive.{kind.table}") == [(0,)]


# -- a dataset of the previous release -----------------------------------------------------------


@pytest.fixture(params=["duckdb", "postgres"])
def release(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dlt.Pipeline]:
    """The release's own dataset (tests/fixtures/release_dataset), opened in this process."""
    from tests.e2e.cli_support import DB_FILE
    from tests.e2e.test_release_upgrade import release_dataset

    destination = str(request.param)
    if destination == "postgres" and not postgres_available():
        pytest.skip(POSTGRES_SKIP_REASON)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DESTINATION__POSTGRES__CREDENTIALS", POSTGRES_URL)
        with release_dataset(destination, tmp_path) as target:
            yield make_pipeline(
                destination,
                target.dataset,
                duckdb_file=tmp_path / DB_FILE if destination == "duckdb" else None,
                pipelines_dir=tmp_path / "pipelines",
            )


def test_a_dataset_of_the_previous_release_reports_by_type_as_contacts(
    release: dlt.Pipeline,
) -> None:
    from tests.e2e.test_release_upgrade import MANIFEST

    expected = MANIFEST["destinations"][release.destination.destination_name]
    with release.sql_client() as client:
        log = client.make_qualified_table_name("archive_log")
        before = client.execute_sql(f"SELECT * FROM {log} WHERE 1 = 0") is not None
    report = build_report(release)
    by_type = {
        (r["object_type"], r["status"]): r["requests"] for r in rows(report, OUTCOMES_BY_TYPE)
    }
    assert by_type == {("contacts", status): n for status, n in expected["statuses"].items()}
    assert [(r["object_type"], r["pending"]) for r in rows(report, BACKLOG_BY_TYPE)] == [
        ("contacts", 10)
    ]
    per_type = {r["object_type"] for r in rows(report, ARCHIVES_PER_DAY_BY_TYPE)}
    assert per_type == {"contacts"}
    assert (
        sum(r["archives"] for r in rows(report, ARCHIVES_PER_DAY))
        == expected["counts"]["contact_archives"]
    )
    fields = rows(report, CUSTOM_FIELDS)
    assert len(fields) == expected["counts"]["custom_fields"]
    assert {r["object_type"] for r in fields} == {"contacts"}
    assert all(r["first_seen_object_id"] == r["first_seen_contact_id"] for r in fields)
    status = dataset_status(release)
    assert status.pending_by_type == Counter({"contacts": 10})
    assert status.statuses_by_type == {"contacts": Counter(expected["statuses"])}
    # Reading wrote nothing: the log still has no `object_type`.
    with release.sql_client() as client:
        columns = client.execute_sql(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = 'archive_log'",
            release.dataset_name,
        )
    assert before and "object_type" not in {name for (name,) in columns}
