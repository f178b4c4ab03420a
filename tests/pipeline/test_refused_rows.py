"""Rows the destination refuses never block a later run, and never cost a record.

Values every destination holds are made so where answers are read
(tests/e2e/test_poison_records.py); this is the safety net behind it, for whatever else a
destination may refuse. Here PostgreSQL refuses rows by a CHECK constraint a user added to the
trail: a load the rows themselves fail would fail the same way for ever, and be retried first
by every later run. Now that package is aborted and its records are loaded with their own
fields held back (`fields_held_back` says why, `raw_response` keeps every value), in the run
that met it or, after a crash, in the next one, from the journal. PostgreSQL only: DuckDB cannot
add a constraint to an existing table.
"""

from pathlib import Path
from typing import Any

import dlt
import pytest

from routera_archive.dataset.enqueue import enqueue
from routera_archive.dataset.tables import audit_trail, build_audit_rows
from routera_archive.errors import ExitCode
from routera_archive.journal import OutcomeJournal
from routera_archive.models import ArchiveOutcome, ArchiveRequest, Status
from routera_archive.run.runner import ArchiveRun, RunOptions
from routera_archive_sandbox import SandboxServer
from tests.conftest import source_config
from tests.pipeline.test_custom_fields import create_contacts
from tests.pipeline.test_run import query

pytestmark = pytest.mark.postgres


@pytest.fixture
def refusing(pipeline: dlt.Pipeline, sandbox_server: SandboxServer) -> dlt.Pipeline:
    """A trail that refuses any `lead_score` of 1,000 or more."""
    if pipeline.destination.destination_name != "postgres":
        pytest.skip("DuckDB cannot add a CHECK constraint to an existing table")
    (first,) = create_contacts(sandbox_server, {"lead_score": 1})
    enqueue(pipeline, [{"contact_id": first}])
    assert ArchiveRun(pipeline, settings(sandbox_server), RunOptions()).execute().exit_code == 0
    with pipeline.sql_client() as client:
        table = client.make_qualified_table_name("contact_archives")
        client.execute_sql(f"ALTER TABLE {table} ADD CONSTRAINT refuse CHECK (lead_score < 1000)")
    return pipeline


def settings(server: SandboxServer) -> Any:
    return source_config(server, max_share=0, chunk_size=2)


def test_a_chunk_the_destination_refuses_loads_with_its_fields_held_back(
    refusing: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    big, small = create_contacts(sandbox_server, {"lead_score": 5000}, {"lead_score": 7})
    enqueue(refusing, [{"contact_id": big}, {"contact_id": small}])

    report = ArchiveRun(refusing, settings(sandbox_server), RunOptions()).execute()

    assert report.exit_code == ExitCode.OK, report.error
    assert sorted(report.held_back_records) == sorted([big, small])  # one chunk of two
    assert "refuse" in report.held_back_reasons[0]
    rows = dict(query(refusing, "SELECT id, fields_held_back FROM {dataset}.contact_archives"))
    assert "violates check constraint" in rows[big] and rows[small] == rows[big]
    raw = query(
        refusing, f"SELECT raw_response FROM {{dataset}}.contact_archives WHERE id = '{big}'"
    )
    assert '"lead_score":5000' in raw[0][0]
    log = query(refusing, "SELECT contact_id, status FROM {dataset}.archive_log")
    assert {(big, "archived"), (small, "archived")} <= set(log)
    assert not refusing.has_pending_data


def test_a_refused_package_left_by_a_crash_is_aborted_and_loaded_from_the_journal(
    refusing: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    """A run killed after extracting a package the destination refuses: the next run aborts
    the package instead of being stopped by it, and loads the records from the journal."""
    record = {"id": "c-crashed", "archived": "2026-06-01T10:00:00Z", "lead_score": 9000}
    outcome = ArchiveOutcome(
        request=ArchiveRequest(request_id="r-crashed", contact_id="c-crashed"),
        status=Status.ARCHIVED,
        record=record,
        raw_response='{"id": "c-crashed", "lead_score": 9000}',
        record_source="delete",
    )
    journal = OutcomeJournal(Path(refusing.working_dir) / "journal", "20260601T000000Z-crashed")
    journal.append(outcome)
    journal.close()
    refusing.extract(audit_trail(build_audit_rows([outcome], "20260601T000000Z-crashed")))
    refusing.normalize()
    assert refusing.has_pending_data

    report = ArchiveRun(refusing, settings(sandbox_server), RunOptions()).execute()

    assert report.exit_code == ExitCode.OK, report.error
    assert report.aborted_packages == 1
    assert report.held_back_records == ["c-crashed"]
    held = query(
        refusing,
        "SELECT fields_held_back, raw_response, recovered FROM {dataset}.contact_archives "
        "WHERE id = 'c-crashed'",
    )
    assert held and held[0][1] == outcome.raw_response and held[0][2] is True
    assert not refusing.has_pending_data
    assert ArchiveRun(refusing, settings(sandbox_server), RunOptions()).execute().exit_code == 0
