"""Hostile queue input, through the real CLI (a separate process) against the sandbox on loopback.

A queue table is anyone's SQL. Whatever it holds, a run must end with a sensible terminal outcome
for every request, print no traceback, and send nothing but the token call, the share check's
list call and `/contacts/{exactly one percent-encoded segment}` whose decoded segment is a queued
id: no id may ever reach another route.

Each test runs on DuckDB and on PostgreSQL (the `target` fixture), the queue written there by
plain SQL; the few that stay on DuckDB say why.
"""

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest

from routera_archive_sandbox import SandboxConfig, SandboxServer
from tests.e2e.cli_support import (
    Result,
    RunCli,
    Target,
    api_requests,
    cli_runner,
    printed_counts,
)

pytestmark = pytest.mark.e2e

CLIENT_SECRET = "hostile-secret-Zt41"
CLI_TIMEOUT_S = 120

# Ids that can never be Routera ids: the run answers `invalid` and sends nothing for them.
INVALID_IDS: list[str | None] = [
    ".",
    "..",
    " lead",
    "trail ",
    "\u00a0nbsp-lead",
    "a\tb",
    "a\nb",
    "a\rb",
    "\x7f",
    "a\x00b",
    "a\x1cb",
    "zero\u200bwidth",
    "\ufeffbom",
    "rtl\u202eoverride",
    "👩\u200d💻",
    "",
    "   ",
    None,
    "x" * 257,
    "y" * 10_000,
]
# Ids a path could be tricked with, and odd-but-possible ids: well-formed, so they are sent,
# percent-encoded as one segment; none of them exists in the sandbox, so each is `not_found`.
UNKNOWN_IDS = [
    "../oauth2/token",
    "../../_sandbox/revoke",
    "./contacts",
    "?x=1",
    "?archived=true&limit=100",
    "%2F",
    "%252F",
    "%",
    "%zz",
    "+plus+",
    "é",
    "e\u0301",
    "😀",
    "🦄🌈",
    "名前-unknown",
    "a;b=c",
    "'; DROP TABLE routera_archive.archive_queue; --",
    '"quoted"',
    "<script>",
    "back\\slash",
    "line\u2028sep",
    "z" * 256,
]
# Awkward ids planted in the sandbox as real contacts: archiving them proves the id went through
# exactly (a wrong encoding would answer 404, or archive another contact).
PLANTED_IDS = ["a/b", "#frag", "a b", "名前", "%2F%2E", "100%", "ünï-cødé", "tab-like\\t"]


@pytest.fixture
def server() -> Iterator[SandboxServer]:
    config = SandboxConfig(port=0, contacts=300, seed=17, client_secret=CLIENT_SECRET)
    with SandboxServer(config) as running:
        for contact_id in PLANTED_IDS:
            running.state.create_contact({"first_name": "Planted"}, contact_id=contact_id)
        yield running


@pytest.fixture
def cli(tmp_path: Path, server: SandboxServer, target: Target) -> RunCli:
    """Run the CLI in `tmp_path` with OAuth credentials for the sandbox in its environment, on
    each destination in turn."""
    return cli_runner(server, tmp_path, {"COLUMNS": "250"}, timeout=CLI_TIMEOUT_S, target=target)


# -- helpers --------------------------------------------------------------------------------------


def create_queue(target: Target, ddl: str, rows: list[tuple[Any, ...]]) -> None:
    """Create the queue table by plain SQL, as a dbt model or an analyst would."""
    target.execute(f"CREATE TABLE archive_queue ({ddl})")
    if rows:
        marks = ", ".join(["?"] * len(rows[0]))
        target.executemany(f"INSERT INTO archive_queue VALUES ({marks})", rows)


def latest_statuses(target: Target) -> dict[str, tuple[str, str | None, str | None]]:
    """request_id -> (status, contact_id, duplicate_of), one row per request or the test fails
    (the request id `shared`, used for two contacts, is two requests: read apart)."""
    rows = target.query(
        "SELECT request_id, status, contact_id, duplicate_of FROM archive_log "
        "WHERE request_id <> 'shared'"
    )
    counted = Counter(row[0] for row in rows)
    assert max(counted.values()) == 1, [r for r, n in counted.items() if n > 1][:5]
    return {row[0]: (row[1], row[2], row[3]) for row in rows}


def assert_only_expected_paths(server: SandboxServer, queued: set[str]) -> Counter[str]:
    """Every request the sandbox saw went to an allowed route; returns DELETEs by decoded id."""
    deletes: Counter[str] = Counter()
    for entry in server.state.stats()["requests"]:
        method, path = entry["method"], entry["path"]
        if path == "/oauth2/token":
            assert method == "POST", entry
            continue
        if path == "/contacts":  # the share guardrail's list call
            assert method == "GET", entry
            continue
        assert path.startswith("/contacts/"), entry
        segment = path[len("/contacts/") :]
        assert segment and "/" not in segment, entry
        decoded = unquote(segment, errors="strict")
        assert quote(decoded, safe="") == segment, f"not exactly one encoded segment: {entry}"
        assert decoded in queued, f"a request for an id nobody queued: {entry}"
        assert method in ("DELETE", "GET"), entry
        if method == "DELETE":
            deletes[decoded] += entry["count"]
    return deletes


def assert_clean(result: Result, code: int = 0) -> None:
    assert result.code == code, result.output
    assert "Traceback" not in result.output
    assert CLIENT_SECRET not in result.output


# -- the queue by plain SQL -----------------------------------------------------------------------


def test_hostile_ids_by_sql_get_sensible_outcomes_and_reach_only_their_own_path(
    cli: RunCli, server: SandboxServer, target: Target
) -> None:
    real = server.state.contact_ids(include_archived=False)[:5]
    repeated = server.state.contact_ids(include_archived=False)[5]
    other_two = server.state.contact_ids(include_archived=False)[6:8]
    rows: list[tuple[Any, ...]] = []
    expected: dict[str, str] = {}

    def add(contact_id: str | None, status: str, note: str = "") -> None:
        request_id = f"r{len(rows):03d}"
        rows.append((contact_id, request_id, len(rows), note))
        expected[request_id] = status

    for contact_id in INVALID_IDS:
        if target.destination == "postgres" and "\x00" in (contact_id or ""):
            continue  # PostgreSQL text cannot hold a NUL: no queue there can contain one
        add(contact_id, "invalid", "can never be an id")
    for contact_id in UNKNOWN_IDS:
        add(contact_id, "not_found", "hostile but well-formed")
    for contact_id in PLANTED_IDS + real:
        add(contact_id, "archived", "real")
    for _ in range(50):
        add(repeated, "repeat", "same contact 50 times")
    # One request id for two different contacts: two requests (a request is its id and its
    # contact), each archived once.
    rows.append((other_two[0], "shared", 0, "two contacts, one request id"))
    rows.append((other_two[1], "shared", 0, "two contacts, one request id"))
    create_queue(
        target, "contact_id VARCHAR, request_id VARCHAR, priority INTEGER, note VARCHAR", rows
    )

    result = cli("run")

    assert_clean(result)
    statuses = latest_statuses(target)
    assert set(statuses) == set(expected), "every request has exactly one outcome"
    repeats = {rid: statuses[rid] for rid, want in expected.items() if want == "repeat"}
    assert Counter(status for status, _, _ in repeats.values()) == {"archived": 1, "duplicate": 49}
    first = next(rid for rid, (status, _, _) in repeats.items() if status == "archived")
    assert {dup for status, _, dup in repeats.values() if status == "duplicate"} == {first}
    wrong = {
        rid: (statuses[rid], want)
        for rid, want in expected.items()
        if want != "repeat" and statuses[rid][0] != want
    }
    assert not wrong, wrong
    # The contact ids in the log are the queued ones, exactly (no trimming, no normalisation);
    # a NUL is the exception, see test_a_nul_in_an_id_is_kept_and_its_request_settled_once.
    queued = {rid: cid for cid, rid, _, _ in rows if rid != "shared" and "\x00" not in str(cid)}
    assert {rid: statuses[rid][1] for rid in queued} == queued

    shared = target.query("SELECT contact_id, status FROM archive_log WHERE request_id = 'shared'")
    assert sorted(shared) == sorted((cid, "archived") for cid in other_two)
    archived_ids = {row[0] for row in target.query("SELECT id FROM contact_archives")}
    assert archived_ids == {*PLANTED_IDS, *real, repeated, *other_two}
    done = server.state.stats()["deletes_succeeded"]
    assert done == dict.fromkeys(archived_ids, 1)
    well_formed = {*UNKNOWN_IDS, *PLANTED_IDS, *real, repeated, *other_two}
    deletes = assert_only_expected_paths(server, well_formed)
    assert deletes == dict.fromkeys(well_formed, 1), "one DELETE per well-formed contact"
    assert "exit code 0" in result.stdout
    assert printed_counts(result.stdout) == Counter(s for s, _, _ in statuses.values()) + Counter(
        archived=len(other_two)
    )
    # A second run finds nothing pending and calls nothing.
    calls = api_requests(server)
    again = cli("run")
    assert_clean(again)
    assert "pending at start: 0" in again.stdout
    assert api_requests(server) == calls


# DuckDB only: PostgreSQL text cannot hold a NUL at all (the INSERT itself is refused), so no
# queue there can contain one.
@pytest.mark.parametrize("target", ["duckdb"], indirect=True)
def test_a_nul_in_an_id_is_shown_and_its_request_settled_once(
    cli: RunCli, server: SandboxServer, target: Target
) -> None:
    real = server.state.contact_ids(include_archived=False)[0]
    create_queue(
        target,
        "contact_id VARCHAR, request_id VARCHAR",
        [(real, "req\x00one"), ("a\x00b", None), ("c\x00d", "plain")],
    )

    first = cli("run")
    second = cli("run")

    assert_clean(first)
    assert_clean(second)
    assert server.state.stats()["deletes_succeeded"] == {real: 1}
    assert "pending at start: 0" in second.stdout, second.stdout
    log = target.query("SELECT request_id, contact_id, status FROM archive_log")
    # dlt cannot store a NUL in text: the log shows it as the visible stand-in `\x00`.
    assert sorted(log) == sorted(
        [
            ("req\\x00one", real, "archived"),
            ("cid:a\\x00b", "a\\x00b", "invalid"),
            ("plain", "c\\x00d", "invalid"),
        ]
    )


def test_an_integer_contact_id_column_with_odd_extra_columns(
    cli: RunCli, server: SandboxServer, target: Target
) -> None:
    for number in ("1001", "1002", "0"):
        server.state.create_contact({"first_name": "Numeric"}, contact_id=number)
    if target.destination == "duckdb":
        odd = "tags INTEGER[], extra STRUCT(k VARCHAR), blob BLOB, score DOUBLE"
        extra: list[Any] = [{"k": "v"}, {"k": None}]
    else:  # PostgreSQL has no STRUCT and no BLOB: JSONB and BYTEA hold the same values
        odd = "tags INTEGER[], extra JSONB, blob BYTEA, score DOUBLE PRECISION"
        extra = ['{"k": "v"}', '{"k": null}']
    rows = [
        (1001, "not a date", [1, 2], extra[0], b"\x00\xff", 3.5),
        (1002, None, [], extra[1], None, None),
        (1002, None, None, None, None, None),  # the same contact twice: derived request ids
        (0, "2026-01-01", None, None, None, None),
        (-5, None, None, None, None, None),
        (9_223_372_036_854_775_807, None, None, None, None, None),
        (None, None, None, None, None, None),
    ]
    create_queue(target, f"contact_id BIGINT, requested_at VARCHAR, {odd}", rows)

    result = cli("run")

    assert_clean(result)
    statuses = latest_statuses(target)
    # Without a request_id column, one contact is one request (`cid:<contact_id>`).
    assert {rid: status for rid, (status, _, _) in statuses.items()} == {
        "cid:1001": "archived",
        "cid:1002": "archived",
        "cid:0": "archived",
        "cid:-5": "not_found",
        "cid:9223372036854775807": "not_found",
        "cid-null": "invalid",
    }
    assert server.state.stats()["deletes_succeeded"] == {"1001": 1, "1002": 1, "0": 1}
    assert_only_expected_paths(server, {"1001", "1002", "0", "-5", "9223372036854775807"})


def test_null_request_ids_are_derived_and_hostile_ids_stay_one_request(
    cli: RunCli, server: SandboxServer, target: Target
) -> None:
    real = server.state.contact_ids(include_archived=False)[0]
    rows = [
        (real, None),
        (real, None),  # the same contact, same derived request: one request, archived once
        ("a/b", None),
        ("../oauth2/token", None),
        ("", None),
        (None, None),
        (None, None),
        (" lead", None),
    ]
    create_queue(target, "contact_id VARCHAR, request_id VARCHAR", rows)

    result = cli("run")

    assert_clean(result)
    statuses = {rid: status for rid, (status, _, _) in latest_statuses(target).items()}
    assert statuses == {
        f"cid:{real}": "archived",
        "cid:a/b": "archived",
        "cid:../oauth2/token": "not_found",
        "cid:": "invalid",
        "cid-null": "invalid",
        "cid: lead": "invalid",
    }
    assert_only_expected_paths(server, {real, "a/b", "../oauth2/token"})


def test_an_empty_queue_table_is_a_run_with_nothing_to_do(
    cli: RunCli, server: SandboxServer, target: Target
) -> None:
    create_queue(target, "contact_id VARCHAR, whatever JSON", [])

    result = cli("run")

    assert_clean(result)
    assert "pending at start: 0" in result.stdout
    assert api_requests(server) == 0


def test_junk_in_the_queue_does_not_trip_the_share_guardrail(
    cli: RunCli, server: SandboxServer, target: Target
) -> None:
    active = len(server.state.contact_ids(include_archived=False))
    real = server.state.contact_ids(include_archived=False)[0]
    junk = [(f"bad\t{n}", f"j{n:04d}") for n in range(active // 2 + 10)]
    create_queue(target, "contact_id VARCHAR, request_id VARCHAR", [(real, "real"), *junk])

    result = cli("run")

    # One contact of several hundred is archived; the rest can never be ids and are not sent.
    assert result.code == 0, result.output
    assert server.state.stats()["deletes_succeeded"] == {real: 1}


# -- the queue through `routera-archive enqueue` ---------------------------------------------------


def test_enqueue_refuses_the_invalid_ids_and_the_run_handles_the_rest(
    cli: RunCli, server: SandboxServer, tmp_path: Path, target: Target
) -> None:
    real = server.state.contact_ids(include_archived=False)[:3]
    lines = [*UNKNOWN_IDS, *PLANTED_IDS, *real, real[0], real[0]]
    lines = [line for line in lines if "\u2028" not in line]  # a line break in a text file
    bad = ["..", ".", "a\tb", "\x7f", "zero\u200bwidth", "y" * 10_000]
    (tmp_path / "ids.txt").write_text("\n".join(lines + bad) + "\n", encoding="utf-8")

    refused = cli("enqueue", "ids.txt")

    assert_clean(refused, 2)
    assert "nothing was enqueued" in refused.stderr
    assert "6 ids can never be" in refused.stderr
    assert "archive_queue" not in target.tables()

    queued = cli("enqueue", "ids.txt", "--skip-invalid", "--requested-by", "ops")
    assert_clean(queued)
    assert f"enqueued {len(lines)} requests" in queued.stdout
    # Surrounding whitespace in a line is file formatting: stripped, as documented.
    (tmp_path / "more.txt").write_text(" padded-unknown \n\ttabbed-unknown\n", encoding="utf-8")
    assert_clean(cli("enqueue", "more.txt"))
    result = cli("run")

    assert_clean(result)
    statuses = latest_statuses(target)
    by_contact: dict[str, Counter[str]] = {}
    for status, contact_id, _ in statuses.values():
        by_contact.setdefault(str(contact_id), Counter())[status] += 1
    for contact_id in [*UNKNOWN_IDS, "padded-unknown", "tabbed-unknown"]:
        if "\u2028" not in contact_id:
            assert by_contact[contact_id] == {"not_found": 1}, contact_id
    for contact_id in [*PLANTED_IDS, *real[1:]]:
        assert by_contact[contact_id] == {"archived": 1}, contact_id
    assert by_contact[real[0]] == {"archived": 1, "duplicate": 2}
    assert len(statuses) == len(lines) + 2
    assert_only_expected_paths(server, {*lines, "padded-unknown", "tabbed-unknown"})
    assert server.state.stats()["deletes_succeeded"] == dict.fromkeys([*PLANTED_IDS, *real], 1)


def test_enqueue_csv_with_quoted_hostile_values(
    cli: RunCli, server: SandboxServer, tmp_path: Path, target: Target
) -> None:
    real = server.state.contact_ids(include_archived=False)[0]
    csv_text = (
        "contact_id,reason,ignored\n"
        f'{real},"reason, with comma",x\n'
        '"a,b","has a comma",\n'
        '"say ""hi""",quotes,\n'
        '"../oauth2/token",path,\n'
        '"a/b",planted,\n'
    )
    (tmp_path / "ids.csv").write_text(csv_text, encoding="utf-8")
    # A quoted field may hold a line break: that id can never be valid, so it is refused.
    (tmp_path / "newline.csv").write_text('contact_id\n"a\nb"\nok-id\n', encoding="utf-8")

    assert_clean(cli("enqueue", "newline.csv"), 2)
    assert_clean(cli("enqueue", "ids.csv"))
    result = cli("run")

    assert_clean(result)
    by_contact = {cid: status for status, cid, _ in latest_statuses(target).values()}
    assert by_contact == {
        real: "archived",
        "a,b": "not_found",
        'say "hi"': "not_found",
        "../oauth2/token": "not_found",
        "a/b": "archived",
    }
    reasons = target.query("SELECT reason FROM contact_archives WHERE id = ?", real)
    assert reasons == [("reason, with comma",)]
    assert_only_expected_paths(server, set(by_contact))


# DuckDB only: the ids are refused before anything is written to any destination (the test
# above refuses a file on PostgreSQL too).
@pytest.mark.parametrize("target", ["duckdb"], indirect=True)
def test_enqueue_does_not_split_an_id_at_an_unusual_line_separator(
    cli: RunCli, server: SandboxServer, tmp_path: Path, target: Target
) -> None:
    first, second = server.state.contact_ids(include_archived=False)[:2]
    (tmp_path / "ids.txt").write_text(f"{first}\x1c{second}\n", encoding="utf-8")

    result = cli("enqueue", "ids.txt")

    # One line, one id, with a control character: it can never be valid, so nothing is queued.
    assert result.code == 2, result.output
    assert "nothing was enqueued" in result.stderr
    assert "archive_queue" not in target.tables()


# -- no usable queue or configuration -------------------------------------------------------------


def test_no_queue_table_in_an_existing_dataset_exits_2(
    cli: RunCli, server: SandboxServer, target: Target
) -> None:
    target.execute("CREATE TABLE not_the_queue (contact_id VARCHAR)")

    result = cli("run")

    assert_clean(result, 2)
    assert "no queue table" in result.output and "enqueue" in result.output
    assert api_requests(server) == 0


def test_a_queue_table_without_contact_id_exits_2_and_names_its_columns(
    cli: RunCli, server: SandboxServer, target: Target
) -> None:
    create_queue(target, "id VARCHAR, contactid VARCHAR", [("x", "y")])

    result = cli("run")

    assert_clean(result, 2)
    assert "contact_id" in result.output and "contactid" in result.output
    assert api_requests(server) == 0


# DuckDB only: the run stops on its configuration before it opens any destination.
@pytest.mark.parametrize("target", ["duckdb"], indirect=True)
@pytest.mark.parametrize(
    "content",
    [
        "[sources.routera\nbase_url = ",
        '[sources.routera]\nbase_url = "unterminated\n',
    ],
    ids=["unclosed-table", "unterminated-string"],
)
def test_a_malformed_config_toml_exits_2_without_traceback(
    cli: RunCli, server: SandboxServer, tmp_path: Path, target: Target, content: str
) -> None:
    create_queue(target, "contact_id VARCHAR", [("x",)])
    (tmp_path / ".dlt").mkdir()
    (tmp_path / ".dlt" / "config.toml").write_text(content, "utf-8")

    result = cli("run")

    assert_clean(result, 2)
    assert "error" in result.stderr
    assert api_requests(server) == 0


# DuckDB only: the run stops on its configuration before it opens any destination.
@pytest.mark.parametrize("target", ["duckdb"], indirect=True)
@pytest.mark.parametrize(
    "base_url",
    [
        "not a url",
        "localhost:8080",
        "http://127.0.0.1:99999",
        "http://user:pw-Zt41@127.0.0.1/",
    ],
)
def test_a_base_url_that_is_not_a_url_exits_2(
    cli: RunCli, server: SandboxServer, target: Target, base_url: str
) -> None:
    create_queue(target, "contact_id VARCHAR", [("x",)])

    result = cli("run", env={"SOURCES__ROUTERA__BASE_URL": base_url})

    assert_clean(result, 2)
    assert "base_url" in result.output
    assert "pw-Zt41" not in result.output
    assert api_requests(server) == 0
