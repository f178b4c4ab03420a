"""One definition of a request's latest outcome, and of pending: the queue, `status`, `report`
and the shipped audit queries all agree, even on outcomes that tie on `processed_at`.

`status` once took the newest row by `processed_at` alone and `report` put a terminal row
first only on a tie, so a request with a `failed` row and a terminal one at the same instant
(two shards, a journal replayed) was `failed` in one and settled in the other, and pending
for neither or both.
"""

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from routera_archive.audit.report import FAILURES, OUTCOMES, build_report
from routera_archive.audit.status import dataset_status
from routera_archive.dataset.enqueue import enqueue
from routera_archive.dataset.loading import load_fresh
from routera_archive.dataset.outcomes import failed_rows, newest_rank
from routera_archive.dataset.queue import PendingQueue
from routera_archive.dataset.rows import log_row
from routera_archive.dataset.tables import AuditRows, audit_trail, unmade_archives
from routera_archive.models import ArchiveOutcome, ArchiveRequest, Status
from routera_archive.objects import ObjectType
from routera_archive_pipelines.factory import make_pipeline
from tests.conftest import POSTGRES_SKIP_REASON, POSTGRES_URL, postgres_available
from tests.pipeline.test_audit_sql import AUDIT_DIR, normalized
from tests.shipped_sql import SHIPPED

AT = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
# request -> its log rows (status, seconds after AT, outcome_id, error)
HISTORY: dict[str, list[tuple[Status, int, str, str | None]]] = {
    # a failure and a success in the same microsecond: settled, archived
    "tie-terminal": [(Status.FAILED, 0, "f" * 32, "502"), (Status.ARCHIVED, 0, "0" * 32, None)],
    # two failures in the same microsecond: pending, the larger outcome_id is the latest
    "tie-failed": [(Status.FAILED, 0, "a" * 32, "first"), (Status.FAILED, 0, "b" * 32, "second")],
    # a failure recorded after a terminal row (a clock behind): still settled
    "terminal-then-failed": [
        (Status.NOT_FOUND, 0, "1" * 32, None),
        (Status.FAILED, 60, "2" * 32, "x"),
    ],
    "failed-only": [(Status.FAILED, 30, "3" * 32, "timeout")],
    "untouched": [],
}
PENDING = {"tie-failed", "failed-only", "untouched"}
DUCKDB_FILES: dict[str, str] = {}
LATEST = {
    "tie-terminal": "archived",
    "tie-failed": "failed",
    "terminal-then-failed": "not_found",
    "failed-only": "failed",
}


def outcome(request_id: str, status: Status, seconds: int, outcome_id: str, error: Any) -> Any:
    request = ArchiveRequest(request_id=request_id, contact_id=f"contact-{request_id}")
    return ArchiveOutcome(
        request=request,
        status=status,
        outcome_id=outcome_id,
        error=error,
        processed_at=AT + timedelta(seconds=seconds),
    )


@pytest.fixture(params=["duckdb", "postgres"])
def dataset(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Any, str]]:
    destination = str(request.param)
    if destination == "postgres":
        if not postgres_available():
            pytest.skip(POSTGRES_SKIP_REASON)
        monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", POSTGRES_URL)
    # The shipped queries name the dataset `routera_archive`; PostgreSQL is shared, so there
    # the dataset has a name of its own, put in for `routera_archive.` as in test_audit_sql.
    schema = "routera_archive" if destination == "duckdb" else f"ra_latest_{uuid.uuid4().hex[:8]}"
    DUCKDB_FILES[schema] = str(tmp_path / "latest.duckdb")
    pipeline = make_pipeline(
        destination,
        schema,
        duckdb_file=tmp_path / "latest.duckdb" if destination == "duckdb" else None,
        pipelines_dir=tmp_path / "pipelines",
    )
    enqueue(pipeline, [{"contact_id": f"contact-{rid}", "request_id": rid} for rid in HISTORY])
    rows = [
        log_row(outcome(rid, *entry), "r-1")
        for rid, entries in HISTORY.items()
        for entry in entries
    ]
    # The archived request's record, as a run would have loaded it with its log row.
    record = {"id": "contact-tie-terminal", "archived": AT, "request_id": "tie-terminal"}
    trail = AuditRows(archives={ObjectType.CONTACTS: [record]}, log=rows, fields=[])
    # As a run loads it: every type's table made at the first load (`empty_archives`).
    load_fresh(pipeline, audit_trail(trail, make_tables=unmade_archives(pipeline)))
    yield pipeline, schema
    if destination == "postgres":
        with pipeline.sql_client() as client:
            for name in (schema, f"{schema}_staging"):
                client.execute_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def shipped(pipeline: Any, schema: str, name: str) -> list[tuple[Any, ...]]:
    """The rows of a shipped query as a user gets them: on DuckDB, the file's text as is."""
    sql = (AUDIT_DIR / name).read_text(encoding="utf-8")
    if pipeline.destination.destination_name == "duckdb":
        with duckdb.connect(DUCKDB_FILES[schema], read_only=True) as db:
            return [tuple(row) for row in db.execute(sql).fetchall()]
    with pipeline.sql_client() as client:
        named = sql.replace("routera_archive.", f'"{schema}".').rstrip().rstrip(";")
        return [tuple(row) for row in client.execute_sql(named)]


def test_queue_status_report_and_shipped_sql_agree_on_ties(dataset: tuple[Any, str]) -> None:
    pipeline, schema = dataset
    queue = PendingQueue(pipeline)
    pending = {item.request.request_id for page in queue.pages(100) for item in page}
    assert pending == PENDING
    assert queue.count() == len(PENDING)

    latest_counts: dict[str, int] = {}
    for status in LATEST.values():
        latest_counts[status] = latest_counts.get(status, 0) + 1
    assert dict(dataset_status(pipeline).statuses) == latest_counts

    report = build_report(pipeline)
    outcomes = {row["status"]: row["requests"] for row in report.section(OUTCOMES).rows}
    assert outcomes == latest_counts
    failing = {row["request_id"]: row["error"] for row in report.section(FAILURES).rows}
    assert failing == {"tie-failed": "second", "failed-only": "timeout"}
    assert report.backlog["pending"] == len(PENDING)

    still_failing = shipped(pipeline, schema, "10_requests_still_failing.sql")
    assert {(row[0], row[2]) for row in still_failing} == set(failing.items())
    (backlog,) = shipped(pipeline, schema, "13_pending_backlog_age.sql")
    assert backlog[:2] == ("contacts", len(PENDING))


def test_the_shipped_pending_query_returns_the_queue_s_pending_requests(
    dataset: tuple[Any, str],
) -> None:
    pipeline, schema = dataset
    rows = shipped(pipeline, schema, "02_pending_requests.sql")
    assert {row[0] for row in rows} == PENDING


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_the_shipped_pending_queries_are_the_connector_s_own_sql(name: str) -> None:
    """Word for word: `python -m tests.shipped_sql` writes them again after the SQL changed."""
    assert (AUDIT_DIR / name).read_text(encoding="utf-8") == SHIPPED[name](), (
        f"{name} is not the connector's pending SQL any more: run python -m tests.shipped_sql"
    )


def test_the_shipped_failing_query_holds_the_latest_outcome_word_for_word() -> None:
    text = normalized((AUDIT_DIR / "10_requests_still_failing.sql").read_text(encoding="utf-8"))
    for snippet in (newest_rank("l"), failed_rows("l")):
        assert normalized(snippet) in text, (
            f"10_requests_still_failing.sql must contain:\n{snippet}"
        )
