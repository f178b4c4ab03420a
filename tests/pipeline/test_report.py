"""`routera_archive.audit.report` on a dataset made by real runs, on DuckDB and PostgreSQL.

One dataset per destination, built once for the module by three runs against a sandbox whose
clock is pinned to three days (with a day without archives between the last two): `archived`,
`already_archived` (recovered), `not_found`, `duplicate`, `invalid`, `failed` twice then
archived, and `failed` still pending; a custom field and a requester whose text is HTML.
Every figure is checked against a direct SQL count, then the filters and the four formats.
"""

import csv
import io
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dlt
import httpx
import pytest
from rich.console import Console

from routera_archive.audit.report import (
    ARCHIVES_BY_ARCHIVED_BY,
    ARCHIVES_BY_REQUESTED_BY,
    ARCHIVES_PER_DAY,
    BACKLOG,
    CUSTOM_FIELDS,
    FAILURES,
    OUTCOMES,
    RUNS,
    SECTION_KEYS,
    AuditReport,
    ReportFilters,
    ReportOptionError,
    build_report,
)
from routera_archive.dataset.enqueue import enqueue
from routera_archive.errors import ExitCode
from routera_archive.run.runner import ArchiveRun, RunOptions
from routera_archive_pipelines.factory import make_pipeline
from routera_archive_pipelines.report_render import (
    csv_columns,
    daily_series,
    print_report,
    render_csv,
    render_html,
    render_json,
)
from routera_archive_sandbox import SandboxConfig, SandboxServer
from routera_archive_sandbox.state import SandboxState
from tests.conftest import POSTGRES_SKIP_REASON, POSTGRES_URL, postgres_available, source_config

DAY_1 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
DAY_2 = datetime(2026, 6, 2, 15, 30, tzinfo=UTC)
DAY_4 = datetime(2026, 6, 4, 23, 50, tzinfo=UTC)  # late in the day: a UTC day, not a local one
EXPECTED_PER_DAY = {DAY_1.date(): 5, DAY_2.date(): 4, DAY_4.date(): 1}
SCRIPT = "<script>alert('pwned')</script>"
HOSTILE_FIELD = f"notes{SCRIPT}"
HOSTILE_REQUESTER = f"<img src=x onerror=alert(1)>{SCRIPT}"
UI_USER = "ui-user@acme.test"


class Clock:
    """The sandbox's wall clock, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class BreakDeletes(httpx.AsyncBaseTransport):
    """The real transport, except that DELETE of the given contacts answers a 200 whose
    `archived` is not a timestamp (a contract break: the outcome is `failed`)."""

    def __init__(self, broken: set[str]) -> None:
        self.broken = broken
        self.real = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        contact = request.url.path.rsplit("/", 1)[-1]
        if request.method == "DELETE" and contact in self.broken:
            return httpx.Response(200, json={"id": contact, "archived": True})
        return await self.real.handle_async_request(request)

    async def aclose(self) -> None:
        await self.real.aclose()


@dataclass
class Built:
    """What the module's dataset holds, and how to reach it again."""

    destination: str
    dataset: str
    duckdb_file: Path
    pipelines_dir: Path
    run_ids: list[str] = field(default_factory=list)
    # Real time between run 2 and run 3 (processed_at comes from the connector's clock).
    between_runs_2_and_3: datetime | None = None
    still_failing: str = ""
    failed_then_archived: str = ""
    recovered: str = ""
    hostile_contact: str = ""
    duplicate_contact: str = ""
    later: list[str] = field(default_factory=list)


def _token(server: SandboxServer) -> str:
    return str(
        httpx.post(
            f"{server.url}/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": server.config.client_id,
                "client_secret": server.config.client_secret,
            },
        ).json()["access_token"]
    )


def _run(pipeline: dlt.Pipeline, server: SandboxServer, broken: set[str]) -> Any:
    return ArchiveRun(
        pipeline,
        source_config(server, max_share=0),
        RunOptions(),
        transport=BreakDeletes(broken),
    ).execute()


def build_dataset(pipeline: dlt.Pipeline, server: SandboxServer, clock: Clock) -> dict[str, Any]:
    """Three runs on three sandbox days; returns the ids the checks need."""
    active = server.state.contact_ids(include_archived=False)
    day1_ids, (still_failing, failed_then_archived), day2_ids = (
        active[:4],
        active[4:6],
        active[6:8],
    )
    recovered, day4_id, later = active[8], active[9], active[10:12]

    # Day 1: four archived + one already archived in the UI (recovered), a duplicate, an id
    # the API does not know, an id that can never be valid, and two contract breaks.
    clock.now = DAY_1
    server.state.archive_contact(recovered, archived_by=UI_USER)
    enqueue(
        pipeline,
        [{"contact_id": cid} for cid in [*day1_ids, recovered, day1_ids[0], "no-such-contact"]]
        + [{"contact_id": still_failing}, {"contact_id": failed_then_archived}],
        requested_by="alice@acme.test",
        reason="gdpr erasure",
    )
    with pipeline.sql_client() as client:
        table = client.make_qualified_table_name("archive_queue")
        client.execute_sql(
            f"INSERT INTO {table} (request_id, contact_id, requested_by, _dlt_load_id, _dlt_id) "
            "VALUES (%s, %s, %s, %s, %s)",
            "by-hand-1",
            "bad\tid",
            "dbt",
            "by-hand",
            uuid.uuid4().hex,
        )
    first = _run(pipeline, server, {still_failing, failed_then_archived})
    assert first.exit_code == ExitCode.FAILED, first.error
    assert first.counts == {
        "archived": 4,
        "already_archived": 1,
        "duplicate": 1,
        "not_found": 1,
        "invalid": 1,
        "failed": 2,
    }

    # Day 2: a requester whose name is HTML, a contact with a custom field whose *name* is a
    # script; one failure heals, the other fails again.
    clock.now = DAY_2
    hostile = httpx.post(
        f"{server.url}/contacts",
        json={"fields": {"email": "h@example.com", HOSTILE_FIELD: SCRIPT}},
        headers={"Authorization": f"Bearer {_token(server)}"},
    ).json()["id"]
    enqueue(
        pipeline,
        [{"contact_id": cid} for cid in [*day2_ids, hostile]],
        requested_by=HOSTILE_REQUESTER,
        reason=SCRIPT,
    )
    second = _run(pipeline, server, {still_failing})
    assert second.exit_code == ExitCode.FAILED, second.error
    assert second.counts == {"archived": 4, "failed": 1}
    between = datetime.now(UTC)

    # Day 4 (nothing on day 3): one more archive; the failure fails a third time.
    clock.now = DAY_4
    enqueue(pipeline, [{"contact_id": day4_id}], requested_by="bob@acme.test")
    third = _run(pipeline, server, {still_failing})
    assert third.counts == {"archived": 1, "failed": 1}

    # Queued after the last run: pending, with the failing request as the oldest; a dry run
    # looks at them (and ends well: exit 0).
    enqueue(pipeline, [{"contact_id": cid} for cid in later], requested_by="carol@acme.test")
    dry = ArchiveRun(
        pipeline, source_config(server, max_share=0), RunOptions(dry_run=True)
    ).execute()
    assert dry.exit_code == ExitCode.OK and dry.plan_counts == {"archive": 3}
    return {
        "run_ids": [first.run_id, second.run_id, third.run_id, dry.run_id],
        "duplicate_contact": day1_ids[0],
        "later": list(later),
        "between_runs_2_and_3": between,
        "still_failing": still_failing,
        "failed_then_archived": failed_then_archived,
        "recovered": recovered,
        "hostile_contact": hostile,
    }


def _pipeline_for(built: Built) -> dlt.Pipeline:
    return make_pipeline(
        built.destination,
        built.dataset,
        duckdb_file=built.duckdb_file if built.destination == "duckdb" else None,
        pipelines_dir=built.pipelines_dir,
    )


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def built(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Built]:
    destination = str(request.param)
    if destination == "postgres" and not postgres_available():
        pytest.skip(POSTGRES_SKIP_REASON)
    base = tmp_path_factory.mktemp(f"report_{destination}")
    result = Built(
        destination=destination,
        dataset=f"ra_report_{uuid.uuid4().hex[:8]}",
        duckdb_file=base / "report.duckdb",
        pipelines_dir=base / "pipelines",
    )
    clock = Clock(DAY_1)
    config = SandboxConfig(port=0, contacts=40, seed=23)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DLT_DATA_DIR", str(base / "dlt_data"))
        if destination == "postgres":
            patch.setenv("DESTINATION__POSTGRES__CREDENTIALS", POSTGRES_URL)
        pipe = _pipeline_for(result)
        state = SandboxState(contacts=config.contacts, seed=config.seed, clock=clock)
        with SandboxServer(config, state) as server:
            facts = build_dataset(pipe, server, clock)
    for name, value in facts.items():
        setattr(result, name, value)
    yield result
    if destination == "postgres":
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("DESTINATION__POSTGRES__CREDENTIALS", POSTGRES_URL)
            with _pipeline_for(result).sql_client() as client:
                for name in (result.dataset, f"{result.dataset}_staging"):
                    client.execute_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def pipeline(built: Built, monkeypatch: pytest.MonkeyPatch) -> dlt.Pipeline:
    if built.destination == "postgres":
        monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", POSTGRES_URL)
    return _pipeline_for(built)


@pytest.fixture
def full(pipeline: dlt.Pipeline) -> AuditReport:
    return build_report(pipeline)


def query(pipeline: dlt.Pipeline, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with pipeline.sql_client() as client:
        sql = sql.replace("{dataset}", client.fully_qualified_dataset_name())
        return [tuple(row) for row in client.execute_sql(sql, *params) or []]


# Latest outcome per request, straight from the log (ties: terminal first).
LATEST = """
    SELECT l.* FROM {dataset}.archive_log l
    WHERE NOT EXISTS (
        SELECT 1 FROM {dataset}.archive_log n
        WHERE n.request_id = l.request_id
          AND (n.processed_at > l.processed_at
               OR (n.processed_at = l.processed_at AND l.status = 'failed'
                   AND n.status <> 'failed')))
"""


def rows_of(report: AuditReport, key: str) -> list[dict[str, Any]]:
    return report.sections[key].rows


# -- every section against direct SQL -----------------------------------------------------------


def test_archives_per_day_match_sql_and_the_sandbox_days(
    pipeline: dlt.Pipeline, full: AuditReport
) -> None:
    got = {row["day"]: row["archives"] for row in rows_of(full, ARCHIVES_PER_DAY)}
    assert got == EXPECTED_PER_DAY
    timestamps = query(pipeline, "SELECT archived FROM {dataset}.contact_archives")
    by_day: dict[date, int] = {}
    for (archived,) in timestamps:
        day = archived.astimezone(UTC).date()
        by_day[day] = by_day.get(day, 0) + 1
    assert got == by_day
    assert (
        sum(got.values())
        == query(pipeline, "SELECT COUNT(*) FROM {dataset}.contact_archives")[0][0]
    )


def test_archives_per_archived_by_and_requested_by_match_sql(
    pipeline: dlt.Pipeline, full: AuditReport, built: Built
) -> None:
    for key, column in (
        (ARCHIVES_BY_ARCHIVED_BY, "archived_by"),
        (ARCHIVES_BY_REQUESTED_BY, "requested_by"),
    ):
        expected = dict(
            query(
                pipeline,
                f"SELECT {column}, COUNT(*) FROM {{dataset}}.contact_archives GROUP BY {column}",
            )
        )
        got = {row[column]: row["archives"] for row in rows_of(full, key)}
        assert got == expected, key
        counts = [row["archives"] for row in rows_of(full, key)]
        assert counts == sorted(counts, reverse=True)
    archived_by = {row["archived_by"]: row for row in rows_of(full, ARCHIVES_BY_ARCHIVED_BY)}
    assert archived_by[UI_USER]["archives"] == 1
    assert archived_by[UI_USER]["first_archived"].date() == DAY_1.date()
    requested_by = {
        row["requested_by"]: row["archives"] for row in rows_of(full, ARCHIVES_BY_REQUESTED_BY)
    }
    # Day 1's five (4 + recovered), the healed failure; day 2's three; day 4's one.
    assert requested_by == {"alice@acme.test": 6, HOSTILE_REQUESTER: 3, "bob@acme.test": 1}


def test_outcomes_count_each_request_once_under_its_latest_status(
    pipeline: dlt.Pipeline, full: AuditReport
) -> None:
    got = {row["status"]: row["requests"] for row in rows_of(full, OUTCOMES)}
    expected = dict(
        query(pipeline, f"SELECT status, COUNT(*) FROM ({LATEST}) latest GROUP BY status")
    )
    assert got == expected
    assert got == {
        "archived": 9,
        "already_archived": 1,
        "duplicate": 1,
        "not_found": 1,
        "invalid": 1,
        "failed": 1,
    }
    requests = query(pipeline, "SELECT COUNT(DISTINCT request_id) FROM {dataset}.archive_log")
    assert sum(got.values()) == requests[0][0]


def test_failures_list_the_requests_still_failing_with_their_reasons(
    pipeline: dlt.Pipeline, full: AuditReport, built: Built
) -> None:
    failures = rows_of(full, FAILURES)
    assert [row["contact_id"] for row in failures] == [built.still_failing]
    row = failures[0]
    log = query(
        pipeline,
        "SELECT request_id, error, attempts, processed_at FROM {dataset}.archive_log "
        "WHERE contact_id = %s ORDER BY processed_at DESC",
        built.still_failing,
    )
    assert len(log) == 3 and row["failed_rows"] == 3
    assert row["request_id"] == log[0][0]
    assert row["error"] == log[0][1] and "archived" in row["error"]
    assert row["attempts"] == log[0][2]
    assert row["last_processed_at"] == log[0][3].astimezone(UTC)
    assert row["http_status"] == 200
    assert row["requested_by"] == "alice@acme.test"
    # The request that failed twice, then was archived, is not a failure.
    assert built.failed_then_archived not in {r["contact_id"] for r in failures}


def test_backlog_counts_pending_requests_and_ages_the_oldest(
    pipeline: dlt.Pipeline, full: AuditReport, built: Built
) -> None:
    backlog = full.backlog
    assert backlog["pending"] == 3  # the failing one and the two queued after the last run
    oldest = query(
        pipeline,
        "SELECT requested_at FROM {dataset}.archive_queue WHERE contact_id = %s",
        built.still_failing,
    )[0][0].astimezone(UTC)
    assert backlog["oldest_requested_at"] == oldest
    hours = (full.generated_at - oldest).total_seconds() / 3600
    assert backlog["oldest_age_hours"] == pytest.approx(hours, abs=0.06)


def test_custom_fields_say_when_each_field_first_appeared(
    pipeline: dlt.Pipeline, full: AuditReport, built: Built
) -> None:
    fields = {row["field_key"]: row for row in rows_of(full, CUSTOM_FIELDS)}
    expected = query(
        pipeline, "SELECT field_key, column_name, first_seen_run_id FROM {dataset}.custom_fields"
    )
    assert {(k, r["column_name"], r["first_seen_run_id"]) for k, r in fields.items()} == set(
        expected
    )
    hostile = fields[HOSTILE_FIELD]
    assert hostile["first_seen_run_id"] == built.run_ids[1]
    assert hostile["first_seen_contact_id"] == built.hostile_contact
    assert all(
        r["first_seen_run_id"] == built.run_ids[0] for k, r in fields.items() if k != HOSTILE_FIELD
    )
    seen = [r["first_seen_at"] for r in rows_of(full, CUSTOM_FIELDS)]
    assert seen == sorted(seen)


def test_runs_are_listed_newest_first(full: AuditReport, built: Built) -> None:
    runs = rows_of(full, RUNS)
    assert [r["run_id"] for r in runs] == built.run_ids[::-1]
    # The dry run ended well; each real run had a failure.
    assert [(r["mode"], r["exit_code"]) for r in runs] == [("dry-run", 0)] + [("run", 1)] * 3
    assert [r["pending_at_start"] for r in runs] == [3, 2, 5, 10]
    assert all(isinstance(r["started_at"], datetime) for r in runs)
    assert build_report(_reopen(built), last_runs=2).sections[RUNS].rows == runs[:2]


def _reopen(built: Built) -> dlt.Pipeline:
    return _pipeline_for(built)


# -- filters ------------------------------------------------------------------------------------


def test_since_and_until_dates_filter_archives_by_archived_day(pipeline: dlt.Pipeline) -> None:
    report = build_report(pipeline, ReportFilters.from_options("2026-06-02", "2026-06-03"))
    assert {r["day"]: r["archives"] for r in rows_of(report, ARCHIVES_PER_DAY)} == {DAY_2.date(): 4}
    assert sum(r["archives"] for r in rows_of(report, ARCHIVES_BY_ARCHIVED_BY)) == 4
    only_day_4 = build_report(pipeline, ReportFilters.from_options("2026-06-04T23:50:00Z", None))
    assert {r["day"]: r["archives"] for r in rows_of(only_day_4, ARCHIVES_PER_DAY)} == {
        DAY_4.date(): 1
    }
    until_day_1 = build_report(pipeline, ReportFilters.from_options(None, "2026-06-01"))
    assert [r["archives"] for r in rows_of(until_day_1, ARCHIVES_PER_DAY)] == [5]


def test_a_window_filters_outcomes_by_processed_at(pipeline: dlt.Pipeline, built: Built) -> None:
    assert built.between_runs_2_and_3 is not None
    mark = built.between_runs_2_and_3.isoformat()
    before = build_report(pipeline, ReportFilters.from_options(None, mark))
    after = build_report(pipeline, ReportFilters.from_options(mark, None))
    # Up to run 2: its four archives and day 1's, and the request still failing.
    assert {r["status"]: r["requests"] for r in rows_of(before, OUTCOMES)} == {
        "archived": 8,
        "already_archived": 1,
        "duplicate": 1,
        "not_found": 1,
        "invalid": 1,
        "failed": 1,
    }
    assert {r["status"]: r["requests"] for r in rows_of(after, OUTCOMES)} == {
        "archived": 1,
        "failed": 1,
    }
    assert [r["failed_rows"] for r in rows_of(after, FAILURES)] == [1]
    assert [r["failed_rows"] for r in rows_of(before, FAILURES)] == [2]
    expected_after = query(
        pipeline,
        "SELECT COUNT(DISTINCT request_id) FROM {dataset}.archive_log WHERE processed_at >= %s",
        built.between_runs_2_and_3,
    )[0][0]
    assert sum(r["requests"] for r in rows_of(after, OUTCOMES)) == expected_after


def test_status_filters_outcomes_and_failures(pipeline: dlt.Pipeline) -> None:
    report = build_report(
        pipeline, ReportFilters.from_options(None, None, ["not_found", "Duplicate"])
    )
    assert {r["status"]: r["requests"] for r in rows_of(report, OUTCOMES)} == {
        "duplicate": 1,
        "not_found": 1,
    }
    assert rows_of(report, FAILURES) == []
    assert "failed" in (report.sections[FAILURES].note or "")
    failed = build_report(pipeline, ReportFilters.from_options(None, None, ["failed"]))
    assert [r["status"] for r in rows_of(failed, OUTCOMES)] == ["failed"]
    assert len(rows_of(failed, FAILURES)) == 1
    # The archives sections are not filtered by status.
    assert sum(r["archives"] for r in rows_of(failed, ARCHIVES_PER_DAY)) == 10


@pytest.mark.parametrize(
    ("since", "until", "statuses", "message"),
    [
        ("2026-06-03", "2026-06-02", (), "after --until"),
        ("2026-06-02T10:00:00Z", "2026-06-02T09:00:00Z", (), "after --until"),
        ("yesterday", None, (), "--since 'yesterday'"),
        (None, "2026-13-01", (), "--until '2026-13-01'"),
        (None, None, ("archivd",), "--status 'archivd'"),
    ],
)
def test_bad_options_are_refused_with_a_clear_message(
    since: str | None, until: str | None, statuses: tuple[str, ...], message: str
) -> None:
    with pytest.raises(ReportOptionError, match=re.escape(message)):
        ReportFilters.from_options(since, until, statuses)


def test_until_a_date_includes_that_whole_day_and_a_timestamp_itself() -> None:
    day = ReportFilters.from_options("2026-06-01", "2026-06-01")
    assert (day.since, day.before) == (DAY_1.replace(hour=0), DAY_1.replace(hour=0) + timedelta(1))
    stamp = ReportFilters.from_options(None, "2026-06-01T12:00:00+02:00")
    assert stamp.before == datetime(2026, 6, 1, 10, 0, 0, 1, tzinfo=UTC)


def test_an_empty_dataset_gives_empty_sections_not_errors(
    built: Built, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if built.destination == "postgres":
        monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", POSTGRES_URL)
    empty = make_pipeline(
        built.destination,
        f"ra_empty_{uuid.uuid4().hex[:8]}",
        duckdb_file=tmp_path / "empty.duckdb" if built.destination == "duckdb" else None,
        pipelines_dir=tmp_path / "pipelines",
    )
    report = build_report(empty)
    assert all(report.sections[key].rows == [] for key in SECTION_KEYS)
    assert "no queue table" in (report.sections[BACKLOG].note or "")
    assert "archive_runs" in (report.sections[RUNS].note or "")
    assert json.loads(render_json(report))["backlog"]["pending"] is None
    assert "No archives in this window" in render_html(report)


# -- formats ------------------------------------------------------------------------------------


def test_json_is_one_object_with_a_key_per_section_and_iso_timestamps(
    full: AuditReport, built: Built
) -> None:
    data = json.loads(render_json(full))
    assert list(data) == ["report", *SECTION_KEYS]
    assert data["report"]["dataset"] == built.dataset
    assert datetime.fromisoformat(data["report"]["generated_at"]) == full.generated_at
    assert {r["day"]: r["archives"] for r in data[ARCHIVES_PER_DAY]} == {
        d.isoformat(): n for d, n in EXPECTED_PER_DAY.items()
    }
    assert {r["status"]: r["requests"] for r in data[OUTCOMES]} == {
        r["status"]: r["requests"] for r in rows_of(full, OUTCOMES)
    }
    assert data[BACKLOG]["pending"] == 3
    assert datetime.fromisoformat(data[BACKLOG]["oldest_requested_at"]).tzinfo is not None
    assert [r["run_id"] for r in data[RUNS]] == built.run_ids[::-1]
    failure = data[FAILURES][0]
    assert (
        datetime.fromisoformat(failure["last_processed_at"])
        == rows_of(full, FAILURES)[0]["last_processed_at"]
    )
    assert HOSTILE_FIELD in {r["field_key"] for r in data[CUSTOM_FIELDS]}


def test_csv_has_a_section_column_first_and_one_row_per_section_row(full: AuditReport) -> None:
    text = render_csv(full)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert next(csv.reader(io.StringIO(text)))[0] == "section"
    assert list(rows[0]) == csv_columns(full)
    assert rows[0]["section"] == "report"
    for key in SECTION_KEYS:
        assert len([r for r in rows if r["section"] == key]) == len(rows_of(full, key)), key
    per_day = {r["day"]: int(r["archives"]) for r in rows if r["section"] == ARCHIVES_PER_DAY}
    assert per_day == {d.isoformat(): n for d, n in EXPECTED_PER_DAY.items()}
    requesters = {r["requested_by"] for r in rows if r["section"] == ARCHIVES_BY_REQUESTED_BY}
    assert HOSTILE_REQUESTER in requesters  # carried exactly; CSV is data


def _bars(page: str) -> dict[str, int]:
    bars = re.findall(
        r'<g class="bar" data-day="([0-9-]+)" data-count="(\d+)"><title>([^<]*)</title>', page
    )
    for day, count, title in bars:
        assert title.startswith(f"{day}: {count} archive")
    return {day: int(count) for day, count, _ in bars}


def test_html_is_one_offline_file_with_a_bar_per_day_and_everything_escaped(
    full: AuditReport,
) -> None:
    page = render_html(full)
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 1
    # One bar per calendar day from the first to the last, day 3 at zero.
    assert _bars(page) == {
        "2026-06-01": 5,
        "2026-06-02": 4,
        "2026-06-03": 0,
        "2026-06-04": 1,
    }
    assert [d.isoformat() for d, _ in daily_series(full.sections[ARCHIVES_PER_DAY])] == list(
        _bars(page)
    )
    # Axis labels: dates and counts.
    assert ">2026-06-01</text>" in page and ">2026-06-04</text>" in page
    assert re.search(r'class="ytick"[^>]*>5</text>', page)
    # Nothing outside the file, no script of any kind.
    assert "http://" not in page and "https://" not in page
    tags = re.findall(r"<[A-Za-z][^>]*>", page)
    assert not [t for t in tags if re.search(r"\s(src|href|xlink:href)\s*=", t, re.I)]
    assert not re.search(r"url\(|@import", page, re.I)
    assert "<script" not in page.lower()
    assert "script-src" not in page and "default-src 'none'" in page
    # The hostile field name and requester are shown, escaped.
    assert html_escaped(HOSTILE_FIELD) in page
    assert html_escaped(HOSTILE_REQUESTER) in page
    assert "<img" not in page
    for key in SECTION_KEYS:
        assert f'<h2 id="{key}">' in page


def html_escaped(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def test_the_terminal_tables_show_values_as_text_not_markup(full: AuditReport) -> None:
    console = Console(record=True, width=240, force_terminal=False)
    print_report(console, full)
    text = console.export_text()
    for key in SECTION_KEYS:
        assert full.sections[key].title in text, key
    assert HOSTILE_FIELD in text and "2026-06-02" in text
    assert "pending" in text


def test_days_are_utc_days_whatever_the_session_time_zone(
    built: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    if built.destination != "postgres":
        pytest.skip("dlt opens DuckDB sessions in UTC; PostgreSQL's follows the client (PGTZ)")
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", POSTGRES_URL)
    monkeypatch.setenv("PGTZ", "Pacific/Kiritimati")  # UTC+14: DAY_4 23:50 is June 5th there
    pipe = _pipeline_for(built)
    assert query(pipe, "SHOW timezone") == [("Pacific/Kiritimati",)]
    report = build_report(pipe, ReportFilters.from_options("2026-06-04", "2026-06-04"))
    assert {r["day"]: r["archives"] for r in rows_of(report, ARCHIVES_PER_DAY)} == {DAY_4.date(): 1}
    assert rows_of(report, ARCHIVES_BY_ARCHIVED_BY)[0]["last_archived"].tzinfo == UTC
