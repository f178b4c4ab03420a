"""A dataset written by the release is read and extended in place by the code under test.

The dataset is a fixture made once by the release itself (`tests/fixtures/release_dataset/`,
made by its `make.py` at commit dde2037, routera-archive 0.1.0; see its README): a DuckDB file
and a PostgreSQL dump holding one finished run and 10 requests enqueued after it, never run.
The test opens it with the code under test, through the real CLI against the sandbox, with a
fresh pipeline folder (dlt restores its state and schemas from the destination, as on a new
machine or a scheduler's fresh container): `status` reads it, `run` archives exactly the pending
requests and leaves every row the release wrote as it was, and a second run calls nothing.

`upgraded_dataset()` is the one way in: a test of a later change (a mixed queue of object types
added to the release's dataset, say) opens the dataset with it, adds its own requests with
`upgraded.target.execute(...)` or `upgraded.cli("enqueue", ...)`, runs the CLI and compares.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from routera_archive.names import DATASET_NAME
from routera_archive_sandbox import SandboxConfig, SandboxServer
from tests.conftest import POSTGRES_HOST, POSTGRES_PORT, POSTGRES_SKIP_REASON, POSTGRES_URL
from tests.e2e.cli_support import (
    DB_FILE,
    DESTINATIONS,
    OUTCOME_ROW,
    RunCli,
    Target,
    cli_runner,
    deletes_sent,
    drop_postgres_dataset,
    postgres_answers,
)

pytestmark = pytest.mark.e2e

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "release_dataset"
MANIFEST: dict[str, Any] = json.loads((FIXTURE / "manifest.json").read_text(encoding="utf-8"))
# Who archived in the sandbox the release's run talked to: its default OAuth client.
RELEASE_ARCHIVED_BY = "sandbox-client"
# The tables the release wrote, and the column that keys each one's rows.
RELEASE_TABLES = {
    "archive_queue": "request_id",
    "archive_log": "outcome_id",
    "contact_archives": "id",
    "archive_runs": "run_id",
    "custom_fields": "field_key",
}
# Held while a test has the PostgreSQL fixture restored: its schemas have fixed names.
POSTGRES_LOCK_KEY = 0x726F75746572  # "router"


@dataclass
class Upgraded:
    """The release's dataset, opened by the code under test.

    `target` reads and writes the dataset (the tests' usual `Target`), `cli` runs the CLI on it
    against `server`, whose contacts are the ones the release's requests name, as the release
    left them (those it archived are archived), plus the seeded ones of `server.config`.
    `release` is the manifest's section for this destination (`counts`, `statuses`, `run_ids`,
    `pending`, ...); `MANIFEST` holds the rest.
    """

    target: Target
    server: SandboxServer
    cli: RunCli
    release: Mapping[str, Any]

    def rows(self, table: str, columns: list[str] | None = None) -> dict[Any, tuple[Any, ...]]:
        """Every row of `table`, by its key (`RELEASE_TABLES`), with `columns` (default: all)."""
        names = columns if columns is not None else self.columns(table)
        key = RELEASE_TABLES[table]
        listed = ", ".join(_quoted(name) for name in [key, *names])
        return {row[0]: row[1:] for row in self.target.query(f"SELECT {listed} FROM {table}")}

    def columns(self, table: str) -> list[str]:
        """The columns `table` has now, in their order."""
        rows = self.target.query(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            self.target.dataset,
            table,
        )
        return [name for (name,) in rows]

    def calls(self, object_type: str = "contacts") -> dict[str, list[str]]:
        """The calls made on each record's own path since the dataset was opened, per id."""
        return self.server.state.object_calls(object_type)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def release_sandbox(config: SandboxConfig | None = None) -> SandboxServer:
    """A sandbox (not started) serving the contacts the release's requests name, as the release
    left them: the ones its run archived (and the one archived before it) are archived.

    They are planted from `sandbox_contacts.json`, so the test does not depend on the sandbox's
    seeding staying what it was; `config` seeds the rest (by default 200 other contacts, so the
    run's share guardrail sees an account of a realistic size).
    """
    config = config or SandboxConfig(port=0, contacts=200, seed=1014)
    server = SandboxServer(config)
    records = json.loads((FIXTURE / MANIFEST["contacts_file"]).read_text(encoding="utf-8"))
    for record in records:
        server.state.create_contact(record, contact_id=record["id"])
    for contact_id in MANIFEST["archived_in_routera"]:
        assert server.state.archive_contact(contact_id, RELEASE_ARCHIVED_BY) is not None
    server.state.reset_stats()
    return server


@contextmanager
def release_dataset(destination: str, workdir: Path) -> Iterator[Target]:
    """The release's dataset on `destination`, for a CLI working in `workdir`.

    DuckDB: the release's file, unzipped to the CLI's default file in `workdir` (default
    dataset). PostgreSQL: the release's dump restored under its own schema names (the pipeline
    name, and so dlt's state rows, are derived from the dataset name), dropped afterwards; a
    PostgreSQL advisory lock keeps two tests from restoring it at once. Skips, saying why,
    where there is no PostgreSQL server or no `psql`.
    """
    section = MANIFEST["destinations"][destination]
    if destination == "duckdb":
        with (
            gzip.open(FIXTURE / section["file"], "rb") as packed,
            open(workdir / DB_FILE, "wb") as out,
        ):
            shutil.copyfileobj(packed, out)
        assert section["dataset"] == DATASET_NAME
        yield Target("duckdb", DATASET_NAME, workdir)
        return
    if not postgres_answers():
        pytest.skip(POSTGRES_SKIP_REASON)
    psql = shutil.which("psql")
    if psql is None:
        pytest.skip("no `psql` on PATH: the release's PostgreSQL dump is restored with it")
    dataset = section["dataset"]
    with closing(psycopg2.connect(POSTGRES_URL.replace(":trust", ""), connect_timeout=5)) as lock:
        lock.autocommit = True
        with lock.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", (POSTGRES_LOCK_KEY,))
        try:
            drop_postgres_dataset(dataset)
            restore = [psql, "-h", POSTGRES_HOST, "-p", str(POSTGRES_PORT), "-U", "postgres"]
            restore += ["-d", "test", "-q", "-v", "ON_ERROR_STOP=1", "-f", section["file"]]
            done = subprocess.run(restore, cwd=FIXTURE, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
            yield Target(
                "postgres",
                dataset,
                workdir,
                ("--destination", "postgres", "--dataset", dataset),
                {"DESTINATION__POSTGRES__CREDENTIALS": POSTGRES_URL},
            )
        finally:
            drop_postgres_dataset(dataset)


@contextmanager
def upgraded_dataset(
    destination: str, workdir: Path, *, sandbox: SandboxConfig | None = None
) -> Iterator[Upgraded]:
    """Open the release's dataset on `destination` with the code under test, and a CLI to run
    on it against a sandbox that holds the release's contacts (`release_sandbox(sandbox)`).

    The CLI works in `workdir` with a pipeline folder of its own there, empty at the start.
    """
    with release_dataset(destination, workdir) as target, release_sandbox(sandbox) as server:
        yield Upgraded(
            target=target,
            server=server,
            cli=cli_runner(server, workdir, timeout=180, target=target),
            release=MANIFEST["destinations"][destination],
        )


@pytest.fixture(params=DESTINATIONS)
def upgraded(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Upgraded]:
    with upgraded_dataset(request.param, tmp_path) as opened:
        yield opened


def latest_statuses(stdout: str) -> dict[str, int]:
    """`status`'s table of requests by latest status."""
    return {name: int(count) for name, count in OUTCOME_ROW.findall(stdout)}


def test_the_release_dataset_is_read_and_extended_in_place(upgraded: Upgraded) -> None:
    release, cli, target = upgraded.release, upgraded.cli, upgraded.target
    pending = {row["contact_id"]: row["request_id"] for row in release["pending"]}
    new = set(MANIFEST["pending_new"])
    unknown, in_trail = MANIFEST["pending_unknown"], MANIFEST["pending_in_trail"]
    assert set(pending) == {*new, unknown, in_trail} and len(pending) == 10

    # The fixture as opened is the one the manifest describes.
    columns = {table: upgraded.columns(table) for table in RELEASE_TABLES}
    before = {table: upgraded.rows(table, columns[table]) for table in RELEASE_TABLES}
    assert {table: len(rows) for table, rows in before.items()} == {
        table: release["counts"][table] for table in RELEASE_TABLES
    }
    assert sorted(before["archive_runs"]) == release["run_ids"]
    assert in_trail in before["contact_archives"]

    status = cli("status")
    assert status.code == 0, status.output
    assert "pending requests: 10" in status.stdout
    assert latest_statuses(status.stdout) == release["statuses"], status.stdout

    run = cli("run")
    assert run.code == 0, run.output
    assert "pending at start: 10" in run.stdout
    # Exactly the pending contacts were called: each new one archived once, the unknown one
    # asked (DELETE 404, GET 404); none the release archived, the one asked again included.
    stats = upgraded.server.state.stats()
    assert stats["deletes_succeeded"] == dict.fromkeys(new, 1)
    assert set(upgraded.calls()) == {*new, unknown}
    assert upgraded.calls()[unknown] == ["DELETE 404", "GET 404"]
    assert deletes_sent(upgraded.server) == len(new) + 1

    # Every row the release wrote is as it was, in every column it had.
    after = {table: upgraded.rows(table, columns[table]) for table in RELEASE_TABLES}
    for table, rows in before.items():
        assert {key: after[table].get(key) for key in rows} == rows, table
    # And the run added its own: one outcome per pending request, a trail row per archive.
    log = upgraded.rows("archive_log", ["request_id", "contact_id", "status", "run_id"])
    added = {row for key, row in log.items() if key not in before["archive_log"]}
    (run_id,) = {row[3] for row in added}
    assert run_id not in release["run_ids"]
    expected = {(pending[cid], cid, "archived", run_id) for cid in new}
    expected |= {(pending[unknown], unknown, "not_found", run_id)}
    expected |= {(pending[in_trail], in_trail, "duplicate", run_id)}
    assert added == expected
    trail = upgraded.rows("contact_archives", ["run_id"])
    assert {key for key in trail if key not in before["contact_archives"]} == new
    assert len(after["archive_runs"]) == len(release["run_ids"]) + 1
    # The trail keeps the release's first row of the contact asked for again.
    assert trail[in_trail] == (release["run_ids"][0],)

    done = cli("status")
    assert done.code == 0, done.output
    assert "pending requests: 0" in done.stdout

    calls = deletes_sent(upgraded.server)
    second = cli("run")
    assert second.code == 0, second.output
    assert "pending at start: 0" in second.stdout
    assert deletes_sent(upgraded.server) == calls
    assert target.query("SELECT COUNT(*) FROM contact_archives") == [
        (release["counts"]["contact_archives"] + len(new),)
    ]

    # Then a mixed queue appended to the upgraded dataset (issue 14): the other types' tables
    # are created in place, the release's rows stay as they were, a second run calls nothing.
    archive_a_mixed_queue(upgraded, columns, before)


OTHER_TABLES = {
    "companies": "company_archives",
    "deals": "deal_archives",
    "tickets": "ticket_archives",
}


def archive_a_mixed_queue(
    upgraded: Upgraded,
    columns: dict[str, list[str]],
    before: dict[str, dict[Any, tuple[Any, ...]]],
) -> None:
    """Two records of each other type (one company twice) and a company id queued as a
    contact, in a CSV with an `object_type` column, enqueued into the release's queue table."""
    cli, target, state = upgraded.cli, upgraded.target, upgraded.server.state
    others = {kind: state.object_ids(kind, include_archived=False)[:2] for kind in OTHER_TABLES}
    company = others["companies"][0]
    rows = [(kind, oid) for kind, oids in others.items() for oid in oids]
    rows += [("companies", company), ("contacts", company)]
    text = "object_type,object_id\n" + "".join(f"{kind},{oid}\n" for kind, oid in rows)
    (target.workdir / "mixed.csv").write_text(text, encoding="utf-8")
    enqueued = cli("enqueue", "mixed.csv")
    assert enqueued.code == 0, enqueued.output
    state.reset_stats()

    run = cli("run")

    assert run.code == 0, run.output
    assert f"pending at start: {len(rows)}" in run.stdout, run.stdout
    # custom_fields' key gained object_type: expected, and not worded by dlt as a failure.
    assert "may not be added" not in run.output, run.output
    done = state.stats()["deletes_succeeded_by_type"]
    assert done["contacts"] == {}
    for kind, table in OTHER_TABLES.items():
        assert done[kind] == dict.fromkeys(others[kind], 1), kind
        trail = target.query(f"SELECT id, COUNT(*) FROM {table} GROUP BY id")
        assert dict(trail) == dict.fromkeys(others[kind], 1), kind
    assert upgraded.calls("contacts") == {company: ["DELETE 404", "GET 404"]}
    log = target.query(
        "SELECT object_type, object_id, status FROM archive_log WHERE run_id = ?",
        run_id_of(run.stdout),
    )
    expected = [(kind, oid, "archived") for kind, oids in others.items() for oid in oids]
    expected += [("companies", company, "duplicate"), ("contacts", company, "not_found")]
    assert sorted(log) == sorted(expected)
    # The release's rows, in the columns they had, are as the release wrote them (looked up
    # as whole rows: `custom_fields` now holds a company's `lead_source` by a contact's).
    for table, rows_before in before.items():
        listed = ", ".join(_quoted(name) for name in [RELEASE_TABLES[table], *columns[table]])
        now = target.query(f"SELECT {listed} FROM {table}")
        changed = [key for key, row in rows_before.items() if (key, *row) not in now]
        assert not changed, (table, changed)

    calls = deletes_sent(upgraded.server)
    second = cli("run")
    assert second.code == 0, second.output
    assert "pending at start: 0" in second.stdout
    assert deletes_sent(upgraded.server) == calls
    # The release's rows and runs, adopted by this release's first run, verify with the rest.
    verified = cli("verify", "--format", "json")
    assert verified.code == 0, verified.output
    result = json.loads(verified.stdout)
    assert result["intact"] and result["links"] == 4, result
    first_link = target.query("SELECT adopted_run_ids FROM archive_chain WHERE chain_seq = 1")
    assert set(upgraded.release["run_ids"]) <= set(json.loads(first_link[0][0])), first_link


def run_id_of(stdout: str) -> str:
    """The run id in the summary's title."""
    title = stdout.split("routera-archive run ", 1)[1]
    return title.split(":", 1)[0]
