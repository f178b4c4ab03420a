"""The benchmark's smoke version: its own functions on 200 contacts at 5 ms, in seconds.

It asserts what the benchmark's figures rest on, never speed: the connector (a separate process,
against the sandbox in a separate process) archives every queued contact exactly once and loads
one audit row for each; the hand-written baseline archives its own contacts; the raw-load
baseline loads what it is given; the server-side answer times that judge the rate limit count
what the sandbox counts; a run with `properties` makes one snapshot GET per contact and keeps
each configured field where the seeded contact holds it; the CLI start runs every command line
it times and its import check reads python's report of imports; the evidence bench links each
probe run, verifies intact and redacts one contact per redaction at each size; the source's crash
cost archives each contact once in each of its cases, its killed runs die before dlt's load and
their recovery runs load the journal; and the table of configurations gives each its own working
directory. A broken benchmark would otherwise only
show up as odd figures. CI runs it (`--run-extended`); the default suite leaves it out, as it
leaves out the benchmarks.
"""

import json
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import duckdb
import pytest

from bench.cli_start import (
    COMMANDS,
    cli_start,
    command_lines,
    heavy_imports,
    imported_modules,
)
from bench.dry_run_1m import dry_run as bench_dry_run
from bench.dry_run_1m import expected_counts
from bench.harness import BENCH_DIR, clean_env
from bench.measures import Stamp, api_window
from bench.raw_load import archived_records, load
from bench.render import render
from bench.runners import Config, connector, fixed_cost, versus
from bench.sandbox_process import contact_ids, fresh_sandbox, seeded_presence
from bench.scenarios import FULL, PARTS, QUICK, Results, table
from bench.source_crash_cost import source_crash
from bench.verdicts import verdicts

pytestmark = [pytest.mark.e2e, pytest.mark.bench]

CONTACTS = 200
LATENCY_MS = 5.0


def test_connector_and_hand_written_loop_archive_each_contact_once(tmp_path: Path) -> None:
    both = versus(Config("versus", CONTACTS, LATENCY_MS, concurrency=16), tmp_path, {})
    run = both.connector

    assert run.problems() == []
    assert run.process.exit_code == 0
    # One token request, the account probe (a GET proving base_url is Routera's API), then one
    # DELETE per contact; each contact archived once.
    assert run.sandbox_totals["by_method"] == {"POST": 1, "GET": 1, "DELETE": CONTACTS}
    assert run.sandbox_totals["by_status"] == {"200": CONTACTS + 2}
    assert run.requests_sent == CONTACTS + 2
    assert run.deletes_succeeded == CONTACTS
    assert run.contacts_deleted_more_than_once == 0
    # One audit row and one `archived` log row per contact, nothing left pending.
    assert run.audit.archives == run.audit.distinct_archived_ids == CONTACTS
    assert run.audit.log_by_status == {"archived": CONTACTS}
    assert run.audit.queue == CONTACTS
    # The answer times the sandbox wrapper recorded are the same answers the stats count.
    assert run.api.requests == CONTACTS + 2
    assert run.api.by_status == {"200": CONTACTS + 2}
    assert run.api.archive_rps > 0 and run.api.max_in_1s_window > 0
    assert run.log_archive_s is not None
    assert run.process.peak_rss_mb > 0 and run.process.cpu_s > 0

    loop = both.handwritten
    assert loop.process.exit_code == 0, loop.process.stderr[-2000:]
    assert loop.phases["records"] == CONTACTS
    assert loop.deletes_succeeded == CONTACTS
    assert loop.api.by_status == {"200": CONTACTS + 1}  # its token request and its DELETEs

    results = Results(mode="smoke", command="pytest", started="now", versus=both)
    assert [v.target for v in verdicts(results)] == [
        f"{CONTACTS} contacts: hand-written wall / connector wall"
    ]
    assert "versus-connector" in render(results)
    assert results.problems() == []


def test_the_fixed_cost_runs_name_where_a_run_spends_its_time_outside_the_calls(
    tmp_path: Path,
) -> None:
    """A small run, then one with nothing pending: both break down into the named phases the
    run marks (its marks, the worker's, the API's first requests), and the parts add up."""
    found = fixed_cost(Config("fixed", 10, LATENCY_MS, concurrency=16), tmp_path, {})

    assert found.small.problems() == [] and found.problems() == []
    small, idle = found.small.breakdown, found.idle_breakdown
    assert small is not None and small.calls and not idle.calls
    names = [part.name for part in small.start + small.end]
    for wanted in ("both locks taken", "the pending tally", "the last chunk's load"):
        assert wanted in names
    assert "the hash chain's link (and the run row's load)" in names
    assert any(part.name == "call worker configured" for part in small.beside)
    assert sum(p.seconds for p in small.start) == pytest.approx(small.start_s)
    assert sum(p.seconds for p in small.end) == pytest.approx(small.end_s)
    assert 0 < small.fixed_s <= found.small.process.wall_s
    assert sum(p.seconds for p in idle.start) == pytest.approx(found.idle.wall_s)
    results = Results(mode="smoke", command="pytest", started="now", fixed_cost=found)
    assert [v.target for v in verdicts(results)] == [
        "10 contacts @ 5 ms: wall",
        "nothing pending: wall",
    ]
    assert "### A run's time outside its calls (issue 18)" in render(results)


def test_a_run_with_properties_counts_its_snapshots_and_checks_their_fields(
    tmp_path: Path,
) -> None:
    """Against DELETE answers without custom fields: a GET and a DELETE per contact, every row
    a snapshot's, each property's column as full as the seed; the checks see a shortfall."""
    contacts, properties = 100, ("lead_score", "company")
    config = Config(
        "properties",
        contacts,
        LATENCY_MS,
        concurrency=16,
        properties=properties,
        answer_fields="default",
    )

    run = connector(config, tmp_path, {})

    assert run.problems() == []
    assert run.sandbox_totals["by_method"] == {"POST": 1, "GET": contacts + 1, "DELETE": contacts}
    assert run.snapshot_gets == contacts
    assert run.requests_per_contact == 2.0
    assert run.ideal_s == 2 * contacts * LATENCY_MS / 1000 / 16
    assert run.audit.by_record_source == {"snapshot+delete": contacts}
    seeded = seeded_presence(properties, contacts, contacts)
    assert run.audit.filled == seeded and 0 < min(seeded.values()) < contacts
    # A column short of the seed, or a run without snapshots, is reported, not passed.
    short = replace(run, seeded_with={**seeded, "company": seeded["company"] + 1})
    assert short.problems() == [
        f"property 'company' filled in {seeded['company']} rows, seeded in {seeded['company'] + 1}"
    ]
    assert len(replace(run, properties=()).problems()) == 2  # snapshot GETs, record_source
    results = Results(mode="smoke", command="pytest", started="now", properties_headline=run)
    assert [v.passed for v in verdicts(results)][-1]  # 2 requests per contact
    assert "### Snapshots (`properties`)" in render(results)


def test_the_dry_run_bench_reports_the_plan_its_queue_implies(tmp_path: Path) -> None:
    """`bench/dry_run_1m.py` on 20,100 rows (a duplicate every 100th row, invalid ids at 7,
    10,007 and 20,007): the plan it checks is the one the dry run reports."""
    rows = 20_100
    with fresh_sandbox(tmp_path / "sandbox", 50, 0.0) as sandbox:
        workdir = tmp_path / "duckdb"
        workdir.mkdir()
        result = bench_dry_run(rows, "duckdb", workdir, sandbox)

    assert result["problems"] == []
    assert result["plan_counts"] == expected_counts(rows)
    assert expected_counts(rows) == {"archive": 19_896, "duplicate": 201, "invalid": 3}


# The bench's own run records the figures (bench/RESULTS.md); the redaction and the chain are
# tested in tests/e2e/test_redact.py and test_verify.py: this only guards the script itself.
@pytest.mark.slow
def test_the_evidence_bench_links_verifies_and_redacts_at_each_size(tmp_path: Path) -> None:
    """`bench/evidence_bench.py` at 60 and 150 audit rows, one measurement of each kind: what
    its figures rest on (the sizes reached, each probe run linked with its own rows, verify
    intact, one row redacted and the DuckDB file rewritten); the figures are not judged."""
    command = [
        sys.executable,
        str(BENCH_DIR / "evidence_bench.py"),
        *("--sizes", "60,150", "--probe", "20", "--probes", "1", "--verifies", "1"),
        *("--redacts", "1", "--load-waits", "0", "--max-other", "99"),
        *("--out", str(tmp_path), "--name", "smoke"),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, env=clean_env(), timeout=240, check=False
    )

    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads((tmp_path / "smoke.json").read_text(encoding="utf-8"))
    results = data["results"]
    assert [r["audit_rows"] for r in results] == [60, 150]
    for result in results:
        assert [link["digested_rows"] for link in result["links"]] == [40]  # 20 rows + 20 logs
        assert [check["intact"] for check in result["verifies"]] == [True]
        (redaction,) = result["redacts"]
        assert redaction["rows_changed"] == 1
        assert redaction["bytes_before"] > 0 and redaction["bytes_after"] > 0
    assert "| duckdb | 150 |" in (tmp_path / "smoke.md").read_text(encoding="utf-8")


def test_the_source_crash_cases_archive_each_contact_once_and_recover_from_the_journal(
    tmp_path: Path,
) -> None:
    run = source_crash(Config("source-crash", CONTACTS, LATENCY_MS), tmp_path, {})

    assert run.problems() == []
    assert [case.case for case in run.cases] == ["clean", "after-last-answer", "at-a-third"]
    for case in run.cases:
        # Each contact archived once on the server and once in the trail.
        assert case.deletes_succeeded == CONTACTS and case.contacts_deleted_more_than_once == 0
        assert case.audit.archives == case.audit.distinct_archived_ids == CONTACTS
    clean, after_last, at_third = run.cases
    assert clean.first.exit_code == 0 and clean.recovery is None
    assert clean.deletes_sent == CONTACTS and clean.journal_loaded_logged == 0
    assert clean.audit.by_record_source == {"delete": CONTACTS}
    assert clean.audit.log_by_status == after_last.audit.log_by_status == {"archived": CONTACTS}
    for killed in (after_last, at_third):
        assert killed.first.exit_code == -signal.SIGKILL
        assert killed.archived_at_kill >= killed.kill_at > 0
        assert killed.first_audit_rows == 0  # killed before dlt's load
        assert killed.recovery is not None and killed.recovery.exit_code == 0
        assert killed.journal_loaded_logged == killed.journal_rows > 0
        assert killed.cost_s is not None
    # Killed after the last answer: every record comes from the journal, no DELETE sent again.
    assert after_last.deletes_sent == CONTACTS and after_last.by_status.get("404", 0) == 0
    assert after_last.journal_loaded_logged == after_last.journal_rows == CONTACTS
    # Killed at a third: the journal's records, the re-sent calls' (404, then a GET), the rest.
    assert at_third.journal_rows < CONTACTS
    assert 0 <= at_third.resent <= at_third.concurrency
    assert at_third.by_status.get("404", 0) == at_third.resent
    logged = {"archived": CONTACTS - at_third.resent, "already_archived": at_third.resent}
    assert at_third.audit.log_by_status == {status: n for status, n in logged.items() if n}
    results = Results(mode="smoke", command="pytest", started="now", source_crash=run)
    assert "A crash mid-extract through the dlt source" in render(results)
    assert "at-a-third" in render(results)


def test_raw_load_loads_every_record(tmp_path: Path) -> None:
    records = archived_records(CONTACTS)
    database = tmp_path / "raw.duckdb"

    assert load(records, database, chunk=64) > 0

    with duckdb.connect(str(database), read_only=True) as db:
        rows = db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT id) FROM raw_load.contact_archives"
        ).fetchone()
    assert rows == (CONTACTS, CONTACTS)
    assert {r["id"] for r in records} == set(contact_ids(CONTACTS))


def test_api_window_counts_sliding_and_calendar_seconds() -> None:
    # Four answers fall within one second (10.2 to 11.15, or 10.6 to 11.3), yet no calendar
    # second holds more than three: a check by calendar seconds alone would miss the excess.
    # Arrivals (the last element) came shortly before each answer, one 0.7 s before: by
    # arrival, no second holds more than three, which is what a rate limiter would count.
    stamps: list[Stamp] = [
        (10.2, "POST", 200, 10.15),
        (10.6, "DELETE", 200, 10.55),
        (10.8, "DELETE", 429, 10.1),
        (11.15, "DELETE", 200, 11.12),
        (11.3, "DELETE", 200, 11.25),
        (20.0, "DELETE", 200, 19.95),
    ]

    window = api_window(stamps, 10.0, 12.0)

    assert window.requests == 5
    assert window.by_status == {"200": 4, "429": 1}
    assert window.max_in_1s_window == 4
    assert window.max_in_calendar_second == 3
    assert window.max_arrivals_in_1s_window == 3
    assert window.max_arrivals_in_calendar_second == 3
    assert window.first_delete == 10.6 and window.last_delete == 11.3
    assert window.archive_rps == pytest.approx(3 / 0.7)


def test_cli_start_runs_every_command_line_and_sees_its_imports(tmp_path: Path) -> None:
    start = cli_start(Config("cli-start", repeats=1), tmp_path, {})

    assert [line.args for line in start.lines] == [list(args) for args in command_lines()]
    assert {line.args[0] for line in start.lines} >= set(COMMANDS)
    assert start.problems() == []
    for line in start.lines:
        assert line.exit_codes == [0]
        assert len(line.walls_s) == 1 and line.median_s == line.max_s > 0
        # The import check saw the CLI's own imports, so "none of HEAVY" is not vacuous.
        assert line.modules_imported > 20
    results = Results(mode="smoke", command="pytest", started="now", cli_start=start)
    assert [v.target.split(":")[0] for v in verdicts(results)] == [
        f"CLI start, {len(command_lines())} help and version command lines x 1",
        "CLI start",
    ]
    assert "routera-archive run --help" in render(results)


def test_heavy_imports_come_from_python_importtime_report() -> None:
    report = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:       120 |        120 |   _io",
            "import time:       300 |       2100 | typer",
            "import time:        80 |         80 |     dlt.common.typing",
            "import time:        50 |         50 | httpxtras",
            "Usage: routera-archive [OPTIONS] COMMAND [ARGS]...",
        ]
    )

    modules = imported_modules(report)

    assert modules == ["_io", "typer", "dlt.common.typing", "httpxtras"]
    assert heavy_imports(modules) == ["dlt"]
    assert heavy_imports(["duckdb", "httpx._client"]) == ["duckdb", "httpx"]


def test_every_configuration_has_its_own_directory_and_part() -> None:
    for plan in (FULL, QUICK):
        rows = table(plan)
        labels = [row.config.label for row in rows]
        assert len(labels) == len(set(labels)), labels  # each row empties its directory first
        assert {row.part for row in rows} <= set(PARTS)
        assert all(hasattr(Results("", "", ""), row.slot) for row in rows)
    assert {row.part for row in table(FULL)} == set(PARTS)
