"""`routera-archive verify` on datasets made by real runs (the CLI against the sandbox on
loopback), on DuckDB and PostgreSQL: intact after the runs; each edit, deletion or insertion
of a row, and each edit of a run, the chain or a digest, gives exit 1 naming the table, the
row's key and the check; undone, the dataset verifies again; `--expect-head`.

(Killed and recovered runs verify intact too: the crash harness asks `verify` after its final
run, tests/e2e/test_crash.py.)
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from routera_archive.audit.verify import verify_dataset
from routera_archive_pipelines.factory import make_pipeline
from routera_archive_sandbox import SandboxConfig, SandboxServer
from tests.e2e.cli_support import DB_FILE, DESTINATIONS, RunCli, Target, cli_runner, open_target

pytestmark = pytest.mark.e2e

CLI_TIMEOUT_S = 120
HEAD = re.compile(r"chain head ([0-9a-f]{64})")


@dataclass
class Trail:
    target: Target
    cli: RunCli
    head: str  # as the last run printed it


@pytest.fixture(scope="module", params=DESTINATIONS)
def trail(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Trail]:
    workdir = tmp_path_factory.mktemp(f"verify_{request.param}")
    config = SandboxConfig(port=0, contacts=40, companies=10, deals=5, tickets=5, seed=77)
    with open_target(request.param, workdir) as target, SandboxServer(config) as server:
        cli = cli_runner(server, workdir, {"COLUMNS": "250"}, timeout=CLI_TIMEOUT_S, target=target)
        contacts = server.state.object_ids("contacts", include_archived=False)
        companies = server.state.object_ids("companies", include_archived=False)
        (workdir / "first.txt").write_text("\n".join([*contacts[:6], "nosuch"]) + "\n")
        (workdir / "companies.txt").write_text("\n".join(companies[:2]) + "\n")
        (workdir / "second.txt").write_text("\n".join([*contacts[6:9], contacts[0]]) + "\n")
        assert cli("enqueue", "first.txt").code == 0
        assert cli("enqueue", "--object-type", "companies", "companies.txt").code == 0
        first = cli("run")
        assert first.code == 0, first.output
        assert cli("enqueue", "second.txt").code == 0
        second = cli("run")
        assert second.code == 0, second.output
        found = HEAD.search(second.stdout)
        assert found, second.stdout
        yield Trail(target, cli, found.group(1))


def verify(trail: Trail, *args: str) -> tuple[int, dict[str, object]]:
    done = trail.cli("verify", "--format", "json", *args)
    assert done.code in (0, 1), done.output
    return done.code, json.loads(done.stdout)


def verify_here(trail: Trail, monkeypatch: pytest.MonkeyPatch) -> tuple[int, dict[str, object]]:
    """`verify` in this process (what the command calls, through its JSON form): each CLI
    start costs a second, and the tampers are many. The CLI itself is run above."""
    target = trail.target
    for name, value in target.env.items():
        monkeypatch.setenv(name, value)
    pipeline = make_pipeline(
        target.destination,
        target.dataset,
        duckdb_file=target.workdir / DB_FILE if target.destination == "duckdb" else None,
        pipelines_dir=target.workdir / "verify_pipelines",
    )
    result = verify_dataset(pipeline).as_dict()
    return (0 if result["intact"] else 1), json.loads(json.dumps(result))


def findings(result: dict[str, object]) -> set[tuple[str, str, str]]:
    return {(f["table"], f["key"], f["check"]) for f in result["findings"]}  # type: ignore[attr-defined,index]


def key(*values: str) -> str:
    return json.dumps(list(values))


def test_real_runs_verify_intact_and_end_at_the_printed_head(trail: Trail) -> None:
    code, result = verify(trail)
    assert code == 0, result
    assert result["intact"] is True and result["finding_count"] == 0
    assert result["links"] == 2 and result["head"] == trail.head
    # Every row the runs wrote was checked: audit rows, log rows, custom fields.
    logged = trail.target.query("SELECT COUNT(*) FROM archive_log")[0][0]
    assert result["rows_checked"] >= logged + 8 + 2  # log + records + run rows
    text = trail.cli("verify")
    assert text.code == 0 and "intact" in text.stdout and trail.head in text.stdout


def test_the_expected_head_is_checked(trail: Trail) -> None:
    code, result = verify(trail, "--expect-head", trail.head)
    assert code == 0 and "the chain ends at the expected head" in result["notes"]  # type: ignore[operator]
    bogus = "ab" * 32
    code, result = verify(trail, "--expect-head", bogus)
    assert code == 1
    assert findings(result) == {("archive_chain", bogus, "unexpected head")}


@dataclass(frozen=True)
class Tamper:
    """SQL that changes the dataset (after a backup of what it changes) and SQL that undoes
    it, and the one finding it must give."""

    name: str
    backup: str  # CREATE TABLE backup AS ...
    change: str
    undo: tuple[str, ...]
    # (table, key, check), the key from the first row of `backup`'s table (see `expected`)
    expected: Callable[[Target], set[tuple[str, str, str]]]
    # Besides `expected`, rows the change leaves uncovered are named `extra row`.
    uncovers_rows: bool = False


def backup(table: str, column: str, where: str = "") -> str:
    """The backup of the row of `table` with the least `column` (`where` it holds)."""
    least = f"SELECT MIN({column}) FROM {table} {where}"
    return f"CREATE TABLE bak AS SELECT * FROM {table} WHERE {column} = ({least})"


def restore(table: str, column: str) -> tuple[str, ...]:
    return (
        f"DELETE FROM {table} WHERE {column} = (SELECT {column} FROM bak)",
        f"INSERT INTO {table} SELECT * FROM bak",
    )


def first_contact(target: Target) -> str:
    return str(target.query("SELECT MIN(id) FROM contact_archives")[0][0])


def first_outcome(target: Target) -> str:
    return str(target.query("SELECT MIN(outcome_id) FROM archive_log")[0][0])


def first_run(target: Target) -> str:
    return str(target.query("SELECT MIN(run_id) FROM archive_runs")[0][0])


TAMPERS = [
    Tamper(
        "edit a record field",
        backup("contact_archives", "id"),
        "UPDATE contact_archives SET email = 'someone.else@example.com' "
        "WHERE id = (SELECT id FROM bak)",
        restore("contact_archives", "id"),
        lambda t: {("contact_archives", key(first_contact(t)), "row content")},
    ),
    Tamper(
        "edit raw_response",
        backup("contact_archives", "id"),
        "UPDATE contact_archives SET raw_response = '{}' WHERE id = (SELECT id FROM bak)",
        restore("contact_archives", "id"),
        lambda t: {
            ("contact_archives", key(first_contact(t)), "row content"),
            ("contact_archives", key(first_contact(t)), "record hash"),
        },
    ),
    Tamper(
        "delete a log row",
        backup("archive_log", "outcome_id"),
        "DELETE FROM archive_log WHERE outcome_id = (SELECT outcome_id FROM bak)",
        ("INSERT INTO archive_log SELECT * FROM bak",),
        lambda t: {("archive_log", key(first_outcome(t)), "missing row")},
    ),
    Tamper(
        "insert an audit row",
        backup("company_archives", "id"),
        "INSERT INTO company_archives SELECT * FROM bak",
        restore("company_archives", "id"),
        # An exact copy: it matches the digest as well as the original does.
        lambda t: {
            (
                "company_archives",
                key(str(t.query("SELECT MIN(id) FROM company_archives")[0][0])),
                "extra row",
            )
        },
    ),
    Tamper(
        "insert a log row under a new key",
        backup("archive_log", "outcome_id"),
        "INSERT INTO archive_log SELECT * FROM bak",
        ("DELETE FROM archive_log WHERE outcome_id = 'forged-outcome'",),
        lambda t: {("archive_log", key("forged-outcome"), "extra row")},
    ),
    Tamper(
        "edit a run",
        backup("archive_runs", "run_id"),
        "UPDATE archive_runs SET outcome = 'completed with nothing to see' "
        "WHERE run_id = (SELECT run_id FROM bak)",
        restore("archive_runs", "run_id"),
        lambda t: {("archive_runs", key(first_run(t)), "run content")},
    ),
    Tamper(
        "delete a run's link",
        "CREATE TABLE bak AS SELECT * FROM archive_chain WHERE chain_seq = 1",
        "DELETE FROM archive_chain WHERE chain_seq = 1",
        ("INSERT INTO archive_chain SELECT * FROM bak",),
        lambda t: {("archive_chain", "2", "broken link")},
        # Its run's rows and run row: no link covers them any more.
        uncovers_rows=True,
    ),
    Tamper(
        "edit a digest",
        backup("row_digests", "row_key", "WHERE table_name = 'archive_log'"),
        "UPDATE row_digests SET row_sha256 = '00' WHERE row_key = (SELECT row_key FROM bak)",
        restore("row_digests", "row_key"),
        lambda t: {
            ("row_digests", key(str(t.query("SELECT chained_by FROM bak")[0][0])), "broken link"),
            ("archive_log", str(t.query("SELECT row_key FROM bak")[0][0]), "row content"),
        },
    ),
]


@pytest.mark.parametrize("tamper", TAMPERS, ids=[t.name for t in TAMPERS])
def test_each_change_is_named_and_undone_verifies_again(
    trail: Trail, tamper: Tamper, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = trail.target
    target.execute(tamper.backup)
    try:
        if tamper.name == "insert a log row under a new key":
            target.execute("UPDATE bak SET outcome_id = 'forged-outcome'")
        expected = tamper.expected(target)
        target.execute(tamper.change)
        code, result = verify_here(trail, monkeypatch)
        assert code == 1, result
        found = findings(result)
        if tamper.uncovers_rows:
            assert expected <= found, result["findings"]
            rest = {check for _, _, check in found - expected}
            assert rest == {"extra row"}, result["findings"]
        else:
            assert found == expected, result["findings"]
        for statement in tamper.undo:
            target.execute(statement)
    finally:
        target.execute("DROP TABLE IF EXISTS bak")
    code, result = verify_here(trail, monkeypatch)
    assert code == 0, result["findings"]


def test_a_dataset_with_no_audit_trail_is_an_error_not_intact(trail: Trail) -> None:
    """The wrong dataset or file (the demo writes its own): exit 2 and one line, never
    `intact`."""
    done = trail.cli("verify", "--dataset", "ra_no_such_dataset")
    assert done.code == 2, done.output
    assert "holds no audit trail" in done.stderr and "intact" not in done.stdout
    assert "Traceback" not in done.output
