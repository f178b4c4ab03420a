"""`routera-archive report` as a separate process, on a dataset the CLI itself made (`enqueue` +
`run` against the sandbox over loopback), in every format: once in the DuckDB file, once in a
PostgreSQL dataset. The option checks and the DuckDB file's own errors run on DuckDB only."""

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from routera_archive_sandbox import SandboxConfig, SandboxServer
from tests.conftest import POSTGRES_URL
from tests.e2e.cli_support import (
    DESTINATIONS,
    Result,
    Target,
    assert_one_line,
    cli_env,
    open_target,
    run_cli,
)

pytestmark = pytest.mark.e2e

CLIENT_SECRET = "e2e-report-secret-W2m"


@dataclass
class Workspace:
    path: Path
    server: SandboxServer
    target: Target
    run_ids: list[str]
    archived: list[str]

    def cli(self, *args: str, env: dict[str, str] | None = None) -> Result:
        environment = cli_env(self.server, self.path, self.target.env, {"COLUMNS": "200"}, env)
        return run_cli(self.path, environment, *self.target.command(*args), timeout=120)

    def sql(self, sql: str) -> list[tuple[Any, ...]]:
        return self.target.query(sql)


# One workspace per destination for the whole module: building it is most of the module's time.
@pytest.fixture(scope="module", params=DESTINATIONS)
def workspace(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Workspace]:
    path = tmp_path_factory.mktemp(f"report_cli_{request.param}")
    config = SandboxConfig(port=0, contacts=30, seed=7, client_secret=CLIENT_SECRET)
    with open_target(request.param, path) as target, SandboxServer(config) as server:
        ws = Workspace(path, server, target, [], [])
        ids = server.state.contact_ids(include_archived=False)
        server.state.archive_contact(ids[5], archived_by="ui-user")  # recovered by GET
        first = [*ids[:5], ids[5], ids[0], "no-such-contact"]
        (ws.path / "first.txt").write_text("\n".join(first) + "\n", encoding="utf-8")
        (ws.path / "second.txt").write_text("\n".join(ids[6:9]) + "\n", encoding="utf-8")
        (ws.path / "pending.txt").write_text(ids[9] + "\n", encoding="utf-8")
        for args in (
            ("enqueue", "first.txt", "--requested-by", "alice", "--reason", "<b>gdpr</b>"),
            ("run",),
            ("enqueue", "second.txt", "--requested-by", "bob"),
            ("run",),
            ("enqueue", "pending.txt", "--requested-by", "carol"),
        ):
            result = ws.cli(*args)
            assert result.code == 0, result.output
        ws.run_ids = [r[0] for r in ws.sql("SELECT run_id FROM archive_runs")]
        ws.archived = [*ids[:6], *ids[6:9]]
        yield ws


def test_table_format_prints_every_section(workspace: Workspace) -> None:
    result = workspace.cli("report")

    assert result.code == 0, result.output
    for title in (
        "Archives per day (UTC)",
        "Archives per archived_by",
        "Archives per requested_by",
        "Outcomes by latest status",
        "Failures",
        "Pending backlog",
        "Custom fields",
        "Last 20 runs",
    ):
        assert title in result.stdout, title
    today = datetime.now(UTC).date().isoformat()
    assert today in result.stdout and "ui-user" in result.stdout
    assert "Traceback" not in result.output


def test_json_to_stdout_matches_the_database(workspace: Workspace) -> None:
    result = workspace.cli("report", "--format", "json")

    assert result.code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["report"]["dataset"] == workspace.target.dataset
    assert data["report"]["destination"] == workspace.target.destination
    per_day = workspace.sql(
        "SELECT CAST(archived AT TIME ZONE 'UTC' AS DATE), COUNT(*) "
        "FROM contact_archives GROUP BY 1"
    )
    assert {r["day"]: r["archives"] for r in data["archives_per_day"]} == {
        d.isoformat(): n for d, n in per_day
    }
    assert sum(n for _, n in per_day) == 9
    assert {r["status"]: r["requests"] for r in data["outcomes"]} == {
        "archived": 8,
        "already_archived": 1,
        "duplicate": 1,
        "not_found": 1,
    }
    assert {r["requested_by"]: r["archives"] for r in data["archives_by_requested_by"]} == {
        "alice": 6,
        "bob": 3,
    }
    assert data["failures"] == []
    assert data["backlog"]["pending"] == 1
    oldest = datetime.fromisoformat(data["backlog"]["oldest_requested_at"])
    assert timedelta(0) <= datetime.now(UTC) - oldest < timedelta(minutes=10)
    assert sorted(r["run_id"] for r in data["runs"]) == sorted(workspace.run_ids)
    assert data["custom_fields"] and all(r["first_seen_run_id"] for r in data["custom_fields"])


def test_json_and_csv_to_a_file(workspace: Workspace) -> None:
    for fmt in ("json", "csv"):
        result = workspace.cli("report", "--format", fmt, "--output", f"out.{fmt}")
        assert result.code == 0, result.output
        assert result.stdout == ""
        assert (workspace.path / f"out.{fmt}").stat().st_size > 0
    json.loads((workspace.path / "out.json").read_text("utf-8"))
    rows = list(csv.DictReader(io.StringIO((workspace.path / "out.csv").read_text("utf-8"))))
    assert rows[0]["section"] == "report"
    assert sum(int(r["archives"]) for r in rows if r["section"] == "archives_per_day") == 9
    runs = {r["run_id"] for r in rows if r["section"] == "runs"}
    assert runs == set(workspace.run_ids)


def test_csv_to_stdout_with_filters(workspace: Workspace) -> None:
    result = workspace.cli(
        "report", "--format", "csv", "--status", "not_found", "--status", "duplicate"
    )

    assert result.code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {(r["status"], r["requests"]) for r in rows if r["section"] == "outcomes"} == {
        ("not_found", "1"),
        ("duplicate", "1"),
    }
    assert not [r for r in rows if r["section"] == "failures"]
    assert rows[0]["statuses"] == "not_found duplicate"


def test_since_tomorrow_leaves_archives_and_outcomes_empty(workspace: Workspace) -> None:
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    result = workspace.cli("report", "--format", "json", "--since", tomorrow)

    assert result.code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["archives_per_day"] == [] and data["outcomes"] == []
    assert data["backlog"]["pending"] == 1  # the backlog is now, whatever the window
    assert data["report"]["filters"]["since"].startswith(tomorrow)


def test_the_widest_window_a_timestamp_holds_counts_everything(workspace: Workspace) -> None:
    """Bounds at the first and last days a timestamp can hold reach the destination as is."""
    result = workspace.cli(
        "report", "--format", "json", "--since", "0001-01-01", "--until", "9999-12-30"
    )

    assert result.code == 0, result.output
    data = json.loads(result.stdout)
    assert sum(r["archives"] for r in data["archives_per_day"]) == 9
    assert data["report"]["filters"]["before"].startswith("9999-12-31")


def test_html_report_is_one_offline_file_with_the_chart(workspace: Workspace) -> None:
    result = workspace.cli("report", "--format", "html", "--output", "report.html")

    assert result.code == 0, result.output
    page = (workspace.path / "report.html").read_text("utf-8")
    today = datetime.now(UTC).date().isoformat()
    bars = re.findall(r'<g class="bar" data-day="([0-9-]+)" data-count="(\d+)">', page)
    assert bars == [(today, "9")]
    assert f"<title>{today}: 9 archives</title>" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page


# DuckDB only: the options are refused before the report opens any destination.
@pytest.mark.parametrize("workspace", ["duckdb"], indirect=True)
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "2026-06-03", "--until", "2026-06-02"], "after --until"),
        (["--since", "last tuesday"], "neither a date"),
        (["--until", "2026-02-30"], "neither a date"),
        (["--status", "archivd"], "is not a status"),
        (["--format", "xml"], "--format 'xml'"),
        (["--format", "html"], "needs --output"),
        (["--output", "x.txt"], "--output needs --format"),
        (["--format", "json", "--output", "no/such/dir/x.json"], "no directory"),
        # Bounds beyond the years 1-9999 a timestamp holds, in UTC (before: OverflowError, exit 1)
        (
            ["--until", "9999-12-31"],  # the whole day: up to 10000-01-01, exclusive
            "--until '9999-12-31' reaches past 9999-12-31T23:59:59.999999Z, the range of a "
            "timestamp; leave --until out to include everything",
        ),
        (
            ["--until", "9999-12-31T23:59:59.999999Z"],
            "reaches past 9999-12-31T23:59:59.999999Z",
        ),
        (
            ["--since", "0001-01-01T00:00:00+05:00"],  # 0000-12-31T19:00:00Z
            "--since '0001-01-01T00:00:00+05:00' reaches before 0001-01-01T00:00:00Z, the range "
            "of a timestamp; leave --since out to include everything",
        ),
        (["--since", "9999-12-31T23:00:00-05:00"], "reaches past 9999-12-31T23:59:59.999999Z"),
        (["--until", "0001-01-01T04:00:00+05:00"], "the window is empty"),
    ],
)
def test_bad_options_exit_2_with_a_message(
    workspace: Workspace, args: list[str], message: str
) -> None:
    result = workspace.cli("report", *args)

    assert_one_line(result, 2, message, "fix this, then run again")


def test_a_destination_that_cannot_be_the_dataset_exits_2_in_one_line(
    workspace: Workspace, tmp_path: Path
) -> None:
    """A file that is not a DuckDB database, a PostgreSQL database that does not exist: the
    configuration points at the wrong place, so retrying cannot help (exit 2, not 1)."""
    if workspace.target.destination == "duckdb":
        garbage = tmp_path / "garbage.duckdb"
        garbage.write_text("this is not a database", encoding="utf-8")
        broken = {"DESTINATION__DUCKDB__CREDENTIALS": str(garbage)}
        why = 'garbage.duckdb" exists, but it is not a valid DuckDB database file'
    else:
        server_url = POSTGRES_URL.rsplit("/", 1)[0]
        broken = {"DESTINATION__POSTGRES__CREDENTIALS": f"{server_url}/ra_no_such_database"}
        why = '"ra_no_such_database" does not exist'

    result = workspace.cli("report", env=broken)

    assert result.code == 2, result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
    assert why in result.stderr
    assert "Traceback" not in result.output
