"""The real `routera-archive` CLI, as a separate process, against the sandbox over loopback.

The tests of the queue and the audit trail run on DuckDB and on PostgreSQL (the `target`
fixture); the others stay on DuckDB, each saying why.
"""

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import pytest

from routera_archive_sandbox import SandboxConfig, SandboxServer
from tests.e2e.cli_support import (
    BOTH,
    CLI,
    RunCli,
    Target,
    api_requests,
    cli_runner,
    deletes_sent,
    sandbox_command,
    searchable_bytes,
    stored_text,
)

pytestmark = pytest.mark.e2e

CLIENT_SECRET = "e2e-secret-Kq83xZ"
STATIC_TOKEN = "e2e-static-token-P9vLm2"


@pytest.fixture
def server() -> Iterator[SandboxServer]:
    config = SandboxConfig(
        port=0,
        contacts=40,
        seed=5,
        client_secret=CLIENT_SECRET,
        static_tokens=(STATIC_TOKEN,),
    )
    with SandboxServer(config) as running:
        yield running


@pytest.fixture
def cli(tmp_path: Path, server: SandboxServer) -> RunCli:
    """Run the CLI in `tmp_path` with OAuth credentials for the sandbox in its environment,
    on the default DuckDB file: for the tests that never reach a destination's data."""
    return cli_runner(server, tmp_path, timeout=180)


@pytest.fixture
def target_cli(tmp_path: Path, server: SandboxServer, target: Target) -> RunCli:
    """`cli`, on each destination in turn: `run`, `enqueue`, `status` get its options."""
    return cli_runner(server, tmp_path, timeout=180, target=target)


def ids_file(tmp_path: Path, ids: list[str]) -> Path:
    path = tmp_path / "ids.txt"
    path.write_text("\n".join(["", *ids, "  ", ""]), encoding="utf-8")
    return path


def audit_rows(target: Target) -> list[tuple[str, bool]]:
    # Sorted here: PostgreSQL's collation need not order ids as Python and DuckDB do.
    return sorted(target.query("SELECT id, recovered FROM contact_archives"))


@pytest.mark.parametrize("target", BOTH, indirect=True)  # a first run on each destination
def test_enqueue_run_status_and_a_second_run_that_calls_nothing(
    target_cli: RunCli, server: SandboxServer, tmp_path: Path, target: Target
) -> None:
    cli = target_cli
    ids = server.state.contact_ids(include_archived=False)[:10]

    queued = cli("enqueue", str(ids_file(tmp_path, ids)), "--requested-by", "dbt", "--reason", "t")
    assert queued.code == 0, queued.output
    assert "enqueued 10 requests" in queued.stdout

    first = cli("run")
    assert first.code == 0, first.output
    assert "archived" in first.stdout and "exit code 0" in first.stdout
    assert [row[0] for row in audit_rows(target)] == sorted(ids)
    assert server.state.stats()["deletes_succeeded"] == dict.fromkeys(ids, 1)

    status = cli("status")
    assert status.code == 0, status.output
    assert "pending requests: 0" in status.stdout
    assert "archived" in status.stdout and "10" in status.stdout

    before = deletes_sent(server)
    second = cli("run")
    assert second.code == 0, second.output
    assert deletes_sent(server) == before
    assert "pending at start: 0" in second.stdout


def test_ids_from_stdin_and_csv_are_queued(
    target_cli: RunCli, server: SandboxServer, tmp_path: Path, target: Target
) -> None:
    cli = target_cli
    ids = server.state.contact_ids(include_archived=False)[:4]
    csv_text = "contact_id,reason\n" + "\n".join(f"{cid},csv reason" for cid in ids[:2]) + "\n"
    (tmp_path / "ids.csv").write_text(csv_text, encoding="utf-8")

    assert cli("enqueue", "ids.csv").code == 0
    assert cli("enqueue", "-", stdin="\n".join(ids[2:]) + "\n").code == 0
    run = cli("run")

    assert run.code == 0, run.output
    assert len(audit_rows(target)) == 4
    reasons = target.query(
        "SELECT reason, COUNT(*) FROM contact_archives GROUP BY 1 ORDER BY 1 NULLS LAST"
    )
    assert reasons == [("csv reason", 2), (None, 2)]


def test_dry_run_lists_the_plan_and_archives_nothing(
    target_cli: RunCli, server: SandboxServer, tmp_path: Path
) -> None:
    cli = target_cli
    ids = server.state.contact_ids(include_archived=False)[:3]
    cli("enqueue", str(ids_file(tmp_path, ids)))

    dry = cli("run", "--dry-run")

    assert dry.code == 0, dry.output
    assert all(cid[:8] in dry.stdout for cid in ids)
    assert "nothing was archived" in dry.stdout
    # The one read-only call a real run makes first: the share check (and its token).
    assert server.state.stats()["totals"]["by_method"] == {"POST": 1, "GET": 1}


# DuckDB only: the exit code and the message are the CLI's; the refusal on PostgreSQL, before
# any request, is tests/pipeline/test_run.py::
# test_a_queue_over_max_archives_is_refused_before_any_call[postgres].
@pytest.mark.parametrize("target", ["duckdb"], indirect=True)
def test_a_queue_over_max_archives_exits_3_and_sends_no_request(
    target_cli: RunCli, server: SandboxServer, tmp_path: Path
) -> None:
    cli = target_cli
    cli("enqueue", str(ids_file(tmp_path, server.state.contact_ids()[:5])))

    refused = cli("run", "--max-archives", "4")

    assert refused.code == 3, refused.output
    assert "refused" in refused.stdout
    assert api_requests(server) == 0


# DuckDB only: this is about the credentials; the secrets test below also archives with the
# static token on PostgreSQL.
@pytest.mark.parametrize("target", ["duckdb"], indirect=True)
def test_static_token_mode_archives(
    target_cli: RunCli, server: SandboxServer, tmp_path: Path, target: Target
) -> None:
    cli = target_cli
    ids = server.state.contact_ids(include_archived=False)[:2]
    cli("enqueue", str(ids_file(tmp_path, ids)))

    run = cli(
        "run",
        env={
            "SOURCES__ROUTERA__CLIENT_ID": None,  # type: ignore[dict-item]
            "SOURCES__ROUTERA__CLIENT_SECRET": None,  # type: ignore[dict-item]
            "SOURCES__ROUTERA__ACCESS_TOKEN": STATIC_TOKEN,
        },
    )

    assert run.code == 0, run.output
    assert len(audit_rows(target)) == 2


# DuckDB only: the run stops on its configuration before it opens any destination.
@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--base-url", "not a url"], {}, "base_url"),
        (["--base-url", "ftp://example.com"], {}, "base_url"),
        (
            [],
            {"SOURCES__ROUTERA__CLIENT_ID": None, "SOURCES__ROUTERA__CLIENT_SECRET": None},
            "SOURCES__ROUTERA__ACCESS_TOKEN",
        ),
        ([], {"SOURCES__ROUTERA__CONCURRENCY": "many"}, "concurrency"),
    ],
    ids=["not-a-url", "not-http", "no-credentials", "bad-number"],
)
def test_bad_configuration_exits_2_with_a_message_and_no_traceback(
    cli: RunCli,
    server: SandboxServer,
    tmp_path: Path,
    args: list[str],
    env: dict[str, str],
    expected: str,
) -> None:
    cli("enqueue", str(ids_file(tmp_path, server.state.contact_ids()[:2])))

    result = cli("run", *args, env=env)

    assert result.code == 2, result.output
    assert "error:" in result.stderr
    assert expected in result.output
    assert "Traceback" not in result.output
    assert api_requests(server) == 0


# DuckDB only: the run stops on its configuration before it opens any destination.
def test_a_malformed_config_toml_exits_2_with_a_message(
    cli: RunCli, server: SandboxServer, tmp_path: Path
) -> None:
    (tmp_path / ".dlt").mkdir()
    (tmp_path / ".dlt" / "config.toml").write_text("[sources.routera\nbase_url = ", "utf-8")

    result = cli("run")

    assert result.code == 2, result.output
    assert "Traceback" not in result.output
    assert "config.toml" in result.output or "configuration" in result.output
    assert api_requests(server) == 0


# Both destinations: that no schema is made matters most in a warehouse.
def test_no_queue_table_exits_2_and_says_how_to_make_one(
    target_cli: RunCli, server: SandboxServer, target: Target
) -> None:
    result = target_cli("run")

    assert result.code == 2, result.output
    assert "no queue table" in result.output and "enqueue" in result.output
    assert api_requests(server) == 0
    # A mistyped --dataset must not leave the schemas it names behind (issue 16 item 3).
    assert target.schemas() == []


def test_enqueue_refuses_ids_that_can_never_be_valid(
    target_cli: RunCli, tmp_path: Path, target: Target
) -> None:
    cli = target_cli
    (tmp_path / "bad.txt").write_text("good-id\nbad\tid\n" + "x" * 300 + "\n", "utf-8")

    refused = cli("enqueue", "bad.txt")

    assert refused.code == 2, refused.output
    assert "nothing was enqueued" in refused.stderr and "row 2" in refused.stderr
    skipped = cli("enqueue", "bad.txt", "--skip-invalid")
    assert skipped.code == 0 and "enqueued 1 requests" in skipped.stdout
    assert target.query("SELECT contact_id FROM archive_queue") == [("good-id",)]


def test_secrets_never_reach_the_database_the_pipeline_folder_or_the_output(
    target_cli: RunCli, server: SandboxServer, tmp_path: Path, target: Target
) -> None:
    cli = target_cli
    ids = server.state.contact_ids(include_archived=False)[:3]
    outputs = [cli("enqueue", str(ids_file(tmp_path, ids)))]
    outputs.append(cli("run", env={"SOURCES__ROUTERA__CLIENT_SECRET": "wrong-" + CLIENT_SECRET}))
    outputs.append(cli("run", "--debug"))
    outputs.append(
        cli(
            "run",
            env={
                "SOURCES__ROUTERA__CLIENT_ID": None,  # type: ignore[dict-item]
                "SOURCES__ROUTERA__CLIENT_SECRET": None,  # type: ignore[dict-item]
                "SOURCES__ROUTERA__ACCESS_TOKEN": STATIC_TOKEN,
            },
        )
    )
    assert [o.code for o in outputs] == [0, 2, 0, 0], [o.output for o in outputs]
    issued_tokens = list(server.state._tokens)  # every OAuth token the sandbox handed out
    assert issued_tokens
    secrets = [CLIENT_SECRET, STATIC_TOKEN, *issued_tokens]

    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    # The trail is in the DuckDB file, or in PostgreSQL and then in no local file at all.
    assert any(p.suffix == ".duckdb" for p in files) == (target.destination == "duckdb")
    assert any("dlt_data" in p.parts for p in files)
    for path in files:
        content = searchable_bytes(path)
        for secret in secrets:
            assert secret.encode() not in content, f"a secret is stored in {path}"
    if target.destination == "postgres":
        stored = stored_text(target)
        assert len(audit_rows(target)) == 3 and all(cid in stored for cid in ids)
        for secret in secrets:
            assert secret not in stored, (
                f"a secret is stored in PostgreSQL dataset {target.dataset}"
            )
    for output in outputs:
        for secret in secrets:
            assert secret not in output.output


# DuckDB only: the demo always writes its own DuckDB file and takes no destination.
def test_demo_archives_sandbox_contacts_and_prints_the_trail(tmp_path: Path) -> None:
    done = subprocess.run(
        [CLI, "demo", "--workdir", str(tmp_path)],
        cwd=tmp_path,
        env={**os.environ, "DLT_DATA_DIR": str(tmp_path / "dlt_data")},
        capture_output=True,
        text=True,
        timeout=180,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "contact_archives: 25 rows" in done.stdout
    assert "0 DELETE calls" in done.stdout
    with duckdb.connect(str(tmp_path / "routera_archive_demo.duckdb"), read_only=True) as db:
        statuses = dict(
            db.execute(
                "SELECT status, COUNT(*) FROM routera_archive.archive_log GROUP BY 1"
            ).fetchall()
        )
    assert statuses == {"archived": 25, "duplicate": 1, "not_found": 2}


# No destination at all: the sandbox command only serves the API.
def test_the_sandbox_command_serves_until_sigterm(tmp_path: Path) -> None:
    """Served as Routera's reference reads (`--answer-fields default`): a contact read without
    `properties` holds no custom field, and with it the one asked for."""
    with sandbox_command(tmp_path, "--contacts", "5", "--answer-fields", "default") as (url, auth):
        assert httpx.get(f"{url}/_sandbox/stats").status_code == 200
        [first] = httpx.get(f"{url}/contacts?limit=1", headers=auth).json()["data"]
        assert "is_customer" not in first  # a custom field every seeded contact has
        read = httpx.get(f"{url}/contacts/{first['id']}?properties=is_customer", headers=auth)
        assert "is_customer" in read.json()


@pytest.mark.parametrize(
    ("args", "counts"),
    [
        (
            ["--contacts", "2", "--companies", "3", "--deals", "0", "--tickets", "120"],
            {"contacts": 2, "companies": 3, "deals": 0, "tickets": 120},
        ),
        ([], {"contacts": 200, "companies": 50, "deals": 50, "tickets": 50}),
    ],
    ids=["flags", "defaults"],
)
def test_the_sandbox_command_seeds_each_type(
    tmp_path: Path, args: list[str], counts: dict[str, int]
) -> None:
    with sandbox_command(tmp_path, *args) as (url, auth):
        served = {
            name: httpx.get(f"{url}/{name}", headers=auth).json()["pagination"]["count"]
            for name in counts
        }
    assert served == counts
