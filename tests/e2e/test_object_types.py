"""A mixed queue of contacts, companies, deals and tickets, through the real CLI against the
sandbox on loopback, on DuckDB and on PostgreSQL (issue 14's "done when").

The queue is written the three ways a user writes one: `enqueue --object-type companies` with
an ids file, `enqueue` with a CSV that has an `object_type` column, and plain SQL rows no
enqueue would write (an unknown type, a `contact_id` and an `object_id` that differ, hostile
ids under each type). It holds duplicates within a type and the same id under two types (a
company id queued as a contact). Afterwards: the four audit tables hold each archived record
once, each request has one terminal outcome, the sandbox performed one successful DELETE per
record on its own type's path and none elsewhere, untrusted text is printed as text, and a
second run sends no DELETE.

Kept small (a few records per type, one module-wide sandbox per destination): the default
suite's time is tight.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest

from routera_archive_sandbox import SandboxConfig, SandboxServer
from tests.e2e.cli_support import (
    DESTINATIONS,
    Result,
    Target,
    cli_runner,
    deletes_sent,
    open_target,
    printed_counts,
)

pytestmark = pytest.mark.e2e

TYPES = ("contacts", "companies", "deals", "tickets")
TABLES = {
    "contacts": "contact_archives",
    "companies": "company_archives",
    "deals": "deal_archives",
    "tickets": "ticket_archives",
}
TERMINAL = {"archived", "already_archived", "not_found", "invalid", "duplicate"}
CLIENT_SECRET = "types-secret-Kq7"
CLI_TIMEOUT_S = 120
# Awkward ids planted as real records under one type each (and, for `a/b`, two): archiving
# them proves each went out as exactly one encoded segment of its own type's path.
PLANTED = {
    "contacts": ["a/b"],
    "companies": ["a/b", "[bold]x[/]"],
    "deals": ["x?y"],
    "tickets": ["#t 1"],
}


@dataclass
class Mixed:
    """One destination's mixed queue, run twice: what was queued and what each run printed."""

    target: Target
    server: SandboxServer
    # (type, id) -> every status its requests must end with, in any order.
    expected: dict[tuple[str, str], list[str]]
    # SQL rows by request id -> the status each must end with.
    by_sql: dict[str, str]
    archived: dict[str, set[str]]  # per type, the records the run must archive
    plan: Result  # `run --dry-run` before the first run
    first: Result
    second: Result
    deletes_before_second: int
    verified: Result  # `verify` after the second run


def sql_rows(destination: str, company: str, deal: str) -> list[tuple[Any, ...]]:
    """(request_id, object_type, object_id, contact_id, expected status): queue rows written
    by hand, past enqueue's checks."""
    # PostgreSQL text cannot hold a NUL: no queue there can contain one; a control char can.
    nul = "n\x00ul" if destination == "duckdb" else "n\x01ul"
    return [
        ("sql-widget", "widgets", company, None, "invalid"),
        ("sql-clash", "deals", deal, "c-other", "invalid"),
        ("sql-dot-companies", "companies", "..", None, "invalid"),
        ("sql-dot-contacts", None, None, "..", "invalid"),
        ("sql-oauth-deals", "deals", "../oauth2/token", None, "not_found"),
        ("sql-oauth-tickets", "tickets", "../oauth2/token", None, "not_found"),
        ("sql-query-contacts", "contacts", "x?y", None, "not_found"),
        ("sql-slash-tickets", "tickets", "a/b", None, "not_found"),
        ("sql-nul-tickets", "tickets", nul, None, "invalid"),
        ("sql-ctrl-companies", "companies", "tab\tid", None, "invalid"),
        ("sql-markup-deals", "deals", "[bold]x[/]", None, "not_found"),
        ("sql-markup-contacts", None, None, "[red]unclosed", "not_found"),
    ]


def run_mixed(target: Target, workdir: Path) -> Mixed:
    config = SandboxConfig(
        port=0,
        contacts=60,
        companies=30,
        deals=30,
        tickets=30,
        seed=1414,
        client_secret=CLIENT_SECRET,
    )
    with SandboxServer(config) as server:
        state = server.state
        for kind, ids in PLANTED.items():
            for planted in ids:
                state.create_object(kind, {}, object_id=planted)
        state.reset_stats()
        active = {kind: state.object_ids(kind, include_archived=False)[:3] for kind in TYPES}
        contacts, companies = active["contacts"], active["companies"]
        deals, tickets = active["deals"], active["tickets"]
        cli = cli_runner(server, workdir, {"COLUMNS": "250"}, timeout=CLI_TIMEOUT_S, target=target)
        expected: dict[tuple[str, str], list[str]] = {}

        def expect(kind: str, object_id: str, status: str) -> None:
            expected.setdefault((kind, object_id), []).append(status)

        # 1. An ids file with --object-type: companies, one twice, a planted awkward one.
        lines = [*companies, companies[0], *PLANTED["companies"]]
        (workdir / "companies.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        for company in companies + PLANTED["companies"]:
            expect("companies", company, "archived")
        expect("companies", companies[0], "duplicate")
        # 2. A CSV with an object_type column: a blank type is the file's default (contacts);
        # a company id queued as a contact names no contact.
        csv_rows = [("", cid) for cid in contacts] + [("contacts", "a/b")]
        csv_rows += [("deals", d) for d in [*deals, deals[1], *PLANTED["deals"]]]
        csv_rows += [("tickets", t) for t in [*tickets, *PLANTED["tickets"], tickets[2]]]
        csv_rows += [("contacts", companies[1])]
        for kind, ids in (("contacts", [*contacts, "a/b"]), ("deals", [*deals, "x?y"])):
            for object_id in ids:
                expect(kind, object_id, "archived")
        for ticket in [*tickets, *PLANTED["tickets"]]:
            expect("tickets", ticket, "archived")
        expect("deals", deals[1], "duplicate")
        expect("tickets", tickets[2], "duplicate")
        expect("contacts", companies[1], "not_found")
        text = "object_type,object_id\n" + "".join(f'{k},"{i}"\n' for k, i in csv_rows)
        (workdir / "mixed.csv").write_text(text, encoding="utf-8")

        enqueued = cli("enqueue", "--object-type", "companies", "companies.txt")
        assert enqueued.code == 0, enqueued.output
        assert f"enqueued {len(lines)} requests" in enqueued.stdout, enqueued.stdout
        enqueued = cli("enqueue", "mixed.csv", "--requested-by", "[bold]ops[/]")
        assert enqueued.code == 0, enqueued.output
        assert f"enqueued {len(csv_rows)} requests" in enqueued.stdout, enqueued.stdout
        # 3. Rows by hand (the queue now has object_type and object_id: enqueue added them).
        rows = sql_rows(target.destination, companies[2], deals[2])
        target.executemany(
            "INSERT INTO archive_queue (request_id, object_type, object_id, contact_id, "
            "_dlt_load_id, _dlt_id) VALUES (?, ?, ?, ?, 'by-hand', ?)",
            [(*row[:4], f"hand-{n}") for n, row in enumerate(rows)],
        )
        by_sql = {row[0]: row[4] for row in rows}

        plan = cli("run", "--dry-run")
        first = cli("run")
        before = deletes_sent(server)
        second = cli("run")
        verified = cli("verify")
        archived = {
            kind: {
                oid
                for (k, oid), statuses in expected.items()
                if k == kind and "archived" in statuses
            }
            for kind in TYPES
        }
        return Mixed(
            target, server, expected, by_sql, archived, plan, first, second, before, verified
        )


@pytest.fixture(scope="module", params=DESTINATIONS)
def mixed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Mixed]:
    """The mixed queue enqueued and run twice, once per destination, for every test below."""
    workdir = tmp_path_factory.mktemp(f"mixed-{request.param}")
    with open_target(request.param, workdir) as target:
        yield run_mixed(target, workdir)


def test_the_run_ends_cleanly_and_prints_untrusted_text_as_text(mixed: Mixed) -> None:
    first = mixed.first
    assert first.code == 0, first.output
    for result in (first, mixed.second):
        assert "Traceback" not in result.output
        assert CLIENT_SECRET not in result.output
    log = mixed.target.query("SELECT status, COUNT(*) FROM archive_log GROUP BY status")
    assert printed_counts(first.stdout) == {status: int(n) for status, n in log}


def test_the_dry_run_plan_names_each_requests_type_and_prints_ids_as_text(mixed: Mixed) -> None:
    """The plan is what a person checks before a destructive run: each row says which type's
    path its id goes to (one id can be a contact's and a company's), ids shown as they are
    (markup as text, a control character escaped)."""
    plan = mixed.plan
    assert plan.code == 0, plan.output
    assert "Traceback" not in plan.output
    queue = mixed.target.query(
        "SELECT request_id, COALESCE(object_type, 'contacts'), COALESCE(object_id, contact_id) "
        "FROM archive_queue"
    )
    rows = {}
    for line in plan.stdout.splitlines():
        cells = [cell.strip() for cell in line.split("│")]
        if len(cells) == 5:
            rows[cells[0]] = (cells[1], cells[2])
    assert len(rows) == len(queue), plan.stdout
    for request_id, kind, object_id in queue:
        shown_kind = kind if kind in TYPES else repr(kind)
        assert rows[request_id] == (shown_kind, repr(object_id)), (request_id, plan.stdout)
    for text in ("'[bold]x[/]'", "'[red]unclosed'", "'../oauth2/token'", "'widgets'"):
        assert text in plan.stdout, text


def test_each_record_is_archived_once_into_its_own_types_table(mixed: Mixed) -> None:
    for kind, table in TABLES.items():
        rows = mixed.target.query(f"SELECT id, COUNT(*) FROM {table} GROUP BY id")
        assert dict(rows) == dict.fromkeys(mixed.archived[kind], 1), kind
        # The records a run archived hold its own answer, not a recovered one.
        flags = mixed.target.query(f"SELECT DISTINCT recovered, archived_by FROM {table}")
        assert flags == [(False, mixed.server.config.client_id)], (kind, flags)


def test_each_request_has_one_terminal_outcome_with_its_type(mixed: Mixed) -> None:
    target = mixed.target
    queue = target.query(
        "SELECT request_id, COALESCE(object_type, 'contacts'), COALESCE(object_id, contact_id) "
        "FROM archive_queue"
    )
    assert len(queue) == sum(map(len, mixed.expected.values())) + len(mixed.by_sql)
    log = target.query(
        "SELECT request_id, object_type, object_id, contact_id, status, error FROM archive_log"
    )
    assert all(row[4] in TERMINAL for row in log), [row for row in log if row[4] not in TERMINAL]
    assert Counter(row[0] for row in log) == Counter(row[0] for row in queue), "one per request"
    by_request = {row[0]: row for row in log}
    # The requests enqueue wrote: their (type, id) and statuses, duplicates included.
    outcomes: dict[tuple[str, str], list[str]] = {}
    for request_id, kind, object_id in queue:
        if request_id not in mixed.by_sql:
            row = by_request[request_id]
            assert (row[1], row[2]) == (kind, object_id), row
            outcomes.setdefault((kind, object_id), []).append(row[4])
    assert {key: sorted(v) for key, v in outcomes.items()} == {
        key: sorted(v) for key, v in mixed.expected.items()
    }
    # The rows written by hand, each as it must end.
    got = {rid: by_request[rid][4] for rid in mixed.by_sql}
    assert got == mixed.by_sql, {
        rid: by_request[rid] for rid in got if got[rid] != mixed.by_sql[rid]
    }
    assert by_request["sql-widget"][1] == "widgets"
    assert "differ" in by_request["sql-clash"][5]
    # contact_id is a contact's only.
    for request_id, kind, object_id, contact_id, _, _ in log:
        if kind == "contacts":
            assert contact_id == object_id or request_id == "sql-dot-contacts", request_id
        elif request_id != "sql-clash":
            assert contact_id is None, request_id


def test_one_successful_delete_per_record_on_its_own_path_and_none_elsewhere(
    mixed: Mixed,
) -> None:
    stats = mixed.server.state.stats()
    done = stats["deletes_succeeded_by_type"]
    for kind in TYPES:
        assert done.get(kind, {}) == dict.fromkeys(mixed.archived[kind], 1), kind
    # Every request went to the token route, a type's collection (the share check's list
    # call) or exactly one encoded segment under a type's path, for an id queued under it.
    well_formed = {key for key, statuses in mixed.expected.items()}
    well_formed |= {
        (kind or "contacts", object_id or contact_id)
        for rid, kind, object_id, contact_id, status in sql_rows(mixed.target.destination, "", "")
        if status != "invalid"
    }
    deletes: Counter[tuple[str, str]] = Counter()
    ok: Counter[tuple[str, str]] = Counter()
    for entry in stats["requests"]:
        method, path = entry["method"], entry["path"]
        if path == "/oauth2/token":
            assert method == "POST", entry
            continue
        kind, _, segment = path.lstrip("/").partition("/")
        assert kind in TYPES, entry
        if not segment:
            assert method == "GET", entry
            continue
        assert "/" not in segment, entry
        decoded = unquote(segment, errors="strict")
        assert quote(decoded, safe="") == segment, f"not exactly one encoded segment: {entry}"
        assert (kind, decoded) in well_formed, f"a call for an id not queued under {kind}: {entry}"
        assert method in ("DELETE", "GET"), entry
        if method == "DELETE":
            deletes[(kind, decoded)] += entry["count"]
            if entry["status"] == 200:
                ok[(kind, decoded)] += entry["count"]
    assert deletes == dict.fromkeys(well_formed, 1), "one DELETE per well-formed (type, id)"
    assert ok == {(kind, oid): 1 for kind in TYPES for oid in mixed.archived[kind]}


def test_a_second_run_sends_no_delete(mixed: Mixed) -> None:
    second = mixed.second
    assert second.code == 0, second.output
    assert "pending at start: 0" in second.stdout, second.stdout
    assert deletes_sent(mixed.server) == mixed.deletes_before_second


def test_the_trail_of_every_type_and_hostile_id_verifies_intact(mixed: Mixed) -> None:
    """Hostile ids as row keys, four audit tables, a dry run's link and two runs': intact."""
    assert mixed.verified.code == 0, mixed.verified.output
    assert "chain: 3 links" in mixed.verified.stdout and "intact" in mixed.verified.stdout
