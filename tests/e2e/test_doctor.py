"""`routera-archive doctor` checks a setup without archiving anything and names each broken
piece with the exit code a run would have (issue 16 item 5): a healthy setup on DuckDB and
PostgreSQL; wrong credentials, a base URL that is not Routera's API, an API that does not
answer, an unknown `properties` name, no queue table, a held lock, a crashed run's journal."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from routera_archive.dataset.lock import FileLock, lock_folder
from routera_archive_sandbox import SandboxConfig, SandboxServer
from tests.e2e.cli_support import DB_FILE, RunCli, Target, cli_runner

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(port=0, contacts=10, seed=4)) as server:
        yield server


def deletes(server: SandboxServer) -> int:
    return int(server.state.stats()["totals"]["by_method"].get("DELETE", 0))


def diagnose(cli: RunCli, **env: str) -> tuple[int, dict[str, dict[str, Any]]]:
    done = cli("doctor", "--format", "json", env=env or None)
    found = json.loads(done.stdout)
    assert found["exit_code"] == done.code
    return done.code, {check["name"]: check for check in found["checks"]}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_healthy_setup_passes_every_check_and_archives_nothing(
    target: Target, sandbox: SandboxServer
) -> None:
    cli = cli_runner(sandbox, target.workdir, timeout=120, target=target)
    contact = sandbox.state.object_ids("contacts", include_archived=False)[0]
    (target.workdir / "q.txt").write_text(contact + "\n")
    assert cli("enqueue", "q.txt").code == 0
    before = deletes(sandbox)
    code, checks = diagnose(cli)
    assert code == 0, checks
    assert {name: c["state"] for name, c in checks.items()} == {
        "configuration": "ok",
        "API and credentials": "ok",
        "destination": "ok",
        "queue table": "ok",
        "locks": "ok",
        "pipeline folder": "ok",
        "left by a crash": "ok",
    }
    assert "1 pending" in checks["queue table"]["detail"]
    text = cli("doctor")
    assert text.code == 0 and "ready to run" in text.stdout, text.output
    assert deletes(sandbox) == before


@pytest.fixture
def duckdb_cli(tmp_path: Path, sandbox: SandboxServer) -> RunCli:
    cli = cli_runner(sandbox, tmp_path, timeout=120)
    contact = sandbox.state.object_ids("contacts", include_archived=False)[1]
    (tmp_path / "q.txt").write_text(contact + "\n")
    assert cli("enqueue", "q.txt").code == 0
    return cli


@pytest.mark.parametrize(
    ("env", "check", "code", "words"),
    [
        ({"SOURCES__ROUTERA__CLIENT_SECRET": "wrong-secret"}, "API and credentials", 2, "refused"),
        (
            {"SOURCES__ROUTERA__PROPERTIES": '["no_such_field"]'},
            "API and credentials",
            2,
            "properties",
        ),
        ({"SOURCES__ROUTERA__RPS": "-1"}, "configuration", 2, "rps"),
    ],
    ids=["wrong-credentials", "unknown-property", "bad-setting"],
)
def test_each_broken_piece_is_named_with_a_run_s_exit_code(
    duckdb_cli: RunCli, env: dict[str, str], check: str, code: int, words: str
) -> None:
    got, checks = diagnose(duckdb_cli, **env)
    assert (got, checks[check]["state"]) == (code, "failed"), checks
    assert words in checks[check]["detail"]
    assert checks["destination"]["state"] == "ok"  # the other checks still ran


def test_a_base_url_that_is_not_routera_and_one_that_does_not_answer(
    duckdb_cli: RunCli, sandbox: SandboxServer
) -> None:
    code, checks = diagnose(duckdb_cli, SOURCES__ROUTERA__BASE_URL=f"{sandbox.url}/nope")
    assert (code, checks["API and credentials"]["state"]) == (2, "failed")
    assert "base_url" in checks["API and credentials"]["detail"]
    down = f"http://127.0.0.1:{closed_port()}"
    code, checks = diagnose(duckdb_cli, SOURCES__ROUTERA__BASE_URL=down)
    assert (code, checks["API and credentials"]["state"]) == (1, "failed")


def test_no_queue_table_a_held_lock_and_a_crashed_run_s_journal(
    tmp_path: Path, sandbox: SandboxServer
) -> None:
    cli = cli_runner(sandbox, tmp_path, timeout=120)
    code, checks = diagnose(cli)
    assert (code, checks["queue table"]["state"]) == (2, "failed")
    assert "no queue table" in checks["queue table"]["detail"]

    contact = sandbox.state.object_ids("contacts", include_archived=False)[2]
    (tmp_path / "q.txt").write_text(contact + "\n")
    assert cli("enqueue", "q.txt").code == 0
    database = (tmp_path / DB_FILE).resolve()
    held = FileLock(lock_folder(database) / "routera_archive.lock", "another-run", what="test")
    held.acquire()
    try:
        code, checks = diagnose(cli)
    finally:
        held.release()
    assert (code, checks["locks"]["state"]) == (1, "failed"), checks
    assert "another-run" in checks["locks"]["detail"]

    journal = tmp_path / "dlt_data" / "pipelines" / "routera_archive" / "journal"
    journal.mkdir(parents=True, exist_ok=True)
    (journal / "20261203T000000Z-0badcafe.jsonl").write_text("", encoding="utf-8")
    code, checks = diagnose(cli)
    assert (code, checks["left by a crash"]["state"]) == (0, "warning")
    assert "the next run loads them" in checks["left by a crash"]["detail"]
