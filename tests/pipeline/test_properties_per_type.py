"""`properties` and the share check per type, in a run against the sandbox (issue 14): company
custom fields kept by a snapshot when the DELETE answer holds only defaults, a company name
Routera refuses stopping the run before any DELETE of any type, and companies held to their
own share of the account while contacts are well within theirs.

DuckDB only: what is tested here is the run's order of calls, not the destination (the typed
run on PostgreSQL is test_object_types_run's)."""

from collections.abc import Iterator

import dlt
import pytest

from routera_archive.dataset.enqueue import enqueue
from routera_archive.errors import ExitCode
from routera_archive.objects import ObjectType
from routera_archive.run.runner import ArchiveRun, RunOptions, RunReport
from routera_archive_sandbox import SandboxConfig, SandboxServer
from tests.conftest import source_config
from tests.pipeline.test_run import deletes, query

pytestmark = pytest.mark.parametrize("destination", ["duckdb"], indirect=True)

COMPANY_FIELDS = ["tier", "employee_count", "HQ Country"]


@pytest.fixture
def defaults_only() -> Iterator[SandboxServer]:
    """A sandbox that answers as Routera's reference reads: a DELETE holds only defaults."""
    config = SandboxConfig(
        port=0, contacts=30, companies=6, deals=0, tickets=0, seed=14, answer_fields="default"
    )
    with SandboxServer(config) as server:
        yield server


def active(server: SandboxServer, kind: ObjectType, count: int) -> list[str]:
    return server.state.object_ids(kind.value, include_archived=False)[:count]


def queue(pipeline: dlt.Pipeline, server: SandboxServer, contacts: int, companies: int) -> None:
    contact_ids = active(server, ObjectType.CONTACTS, contacts)
    enqueue(pipeline, [{"contact_id": cid} for cid in contact_ids])
    company_ids = active(server, ObjectType.COMPANIES, companies)
    enqueue(
        pipeline, [{"contact_id": oid} for oid in company_ids], object_type=ObjectType.COMPANIES
    )


def run(
    pipeline: dlt.Pipeline, server: SandboxServer, *, dry_run: bool = False, **settings: object
) -> RunReport:
    config = source_config(server, **settings)
    return ArchiveRun(pipeline, config, RunOptions(dry_run=dry_run)).execute()


def test_companies_are_archived_with_their_custom_fields_from_a_snapshot(
    pipeline: dlt.Pipeline, defaults_only: SandboxServer
) -> None:
    server = defaults_only
    queue(pipeline, server, contacts=1, companies=2)
    before = {
        oid: server.state.get_object("companies", oid)
        for oid in active(server, ObjectType.COMPANIES, 2)
    }

    report = run(pipeline, server, max_share=0, properties={"companies": COMPANY_FIELDS})

    assert report.exit_code == ExitCode.OK, report.error
    assert report.counts == {"archived": 3}
    rows = query(
        pipeline,
        "SELECT id, tier, employee_count, record_source, snapshot_response IS NOT NULL "
        "FROM {dataset}.company_archives ORDER BY id",
    )
    assert [row[0] for row in rows] == sorted(before)
    for object_id, tier, employees, source, snapshotted in rows:
        record = before[object_id] or {}
        assert (tier, employees) == (record.get("tier"), record.get("employee_count"))
        assert (source, snapshotted) == ("snapshot+delete", True)
    assert any(row[1] is not None for row in rows), "the seed gave no tier: pick another"
    # Each company read once with its own names, then archived.
    for object_id in before:
        assert server.state.object_calls("companies")[object_id] == ["GET 200", "DELETE 200"]
    # The contact had no names set: its DELETE answer alone, and a note saying so.
    [(contact_source,)] = query(pipeline, "SELECT record_source FROM {dataset}.contact_archives")
    assert contact_source == "delete"
    assert any(
        note.startswith("the contact answers held only Routera's default properties")
        and "set `properties`" in note
        for note in report.notes
    ), report.notes


def test_a_company_property_routera_refuses_stops_the_run_before_any_delete(
    pipeline: dlt.Pipeline, defaults_only: SandboxServer
) -> None:
    server = defaults_only
    queue(pipeline, server, contacts=2, companies=2)

    report = run(
        pipeline,
        server,
        max_share=0,
        properties={"contacts": ["lead_score"], "companies": ["tier", "no_such_field"]},
    )

    assert report.exit_code == ExitCode.CONFIGURATION, report.error
    assert "Routera refused the properties setting (tier, no_such_field) for companies" in (
        report.error or ""
    )
    assert "nothing was archived" in (report.error or "")
    assert deletes(server) == 0
    assert server.state.object_calls("companies") == {}  # not even a snapshot


def test_the_share_check_refuses_companies_over_their_share_while_contacts_are_within(
    pipeline: dlt.Pipeline, defaults_only: SandboxServer
) -> None:
    """4 of 6 companies is more than half of them; 2 of 30 contacts is not, and 6 of 30 (every
    request held to the contacts' figure, as before types) would have passed."""
    server = defaults_only
    queue(pipeline, server, contacts=2, companies=4)
    expected = (
        "refused: this run would archive 4 of 6 active companies, more than max_share 50% "
        "(by type: contacts 2 to call of 30 active, companies 4 to call of 6 active)"
    )

    dry = run(pipeline, server, dry_run=True, max_share=0.5)
    real = run(pipeline, server, max_share=0.5)

    assert (dry.exit_code, real.exit_code) == (ExitCode.GUARDRAIL, ExitCode.GUARDRAIL)
    assert dry.guardrail == real.guardrail == expected
    assert deletes(server) == 0
    forced = ArchiveRun(
        pipeline, source_config(server, max_share=0.5), RunOptions(force=True)
    ).execute()
    assert forced.exit_code == ExitCode.OK and forced.counts == {"archived": 6}
