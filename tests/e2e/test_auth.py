"""Authentication over time, through the real CLI against the sandbox on loopback.

Tokens that expire during a run are renewed without losing a call; tokens flushed server-side are
renewed once, not once per call; credentials revoked mid-run stop the run at once (exit 2) with
what was done loaded, and a later run with valid credentials finishes the rest, archiving every
contact exactly once.

The revocation mid-run runs on DuckDB and on PostgreSQL (the `target` fixture), one credential
mode of it on DuckDB only (see its comment): what a run loads before it stops, and what the next
run finishes, is the destination's part. The other tests run on DuckDB, and on PostgreSQL too
with `--run-slow` (`HTTP_ONLY`): tokens are the call worker's business, never the destination's.
"""

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from routera_archive_sandbox import FaultConfig, SandboxConfig, SandboxServer
from tests.e2e.cli_support import Result, Target, cli_env, deletes_sent
from tests.e2e.cli_support import run_cli as run_cli_in

pytestmark = pytest.mark.e2e

CLIENT_SECRET = "auth-secret-Wd7"
STATIC_TOKEN = "auth-static-token-Rk5"
CLI_TIMEOUT_S = 120
TERMINAL = ("archived", "already_archived", "not_found", "invalid", "duplicate")


# For the tests where the destination plays no part of its own: the tokens are renewed (or
# refused) in the HTTP client, and a run that is not stopped loads on PostgreSQL as on DuckDB, which
# tests/e2e/test_cli.py::test_enqueue_run_status_and_a_second_run_that_calls_nothing[postgres]
# covers; a run refused its credentials at once, on PostgreSQL, is
# tests/pipeline/test_run.py::test_bad_credentials_stop_the_run_with_exit_2_and_archive_nothing.
HTTP_ONLY = ("duckdb", pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.slow]))


def start_sandbox(**overrides: Any) -> SandboxServer:
    values: dict[str, Any] = {
        "port": 0,
        "contacts": 300,
        "seed": 41,
        "client_secret": CLIENT_SECRET,
        "static_tokens": (STATIC_TOKEN,),
    }
    values.update(overrides)
    return SandboxServer(SandboxConfig(**values)).start()


def run_cli(
    target: Target, server: SandboxServer, *args: str, env: dict[str, str | None] | None = None
) -> Result:
    """Run the CLI against `server` and `target`; no run may print a traceback or a credential."""
    environment = cli_env(server, target.workdir, target.env, {"COLUMNS": "250"}, env)
    result = run_cli_in(target.workdir, environment, *target.command(*args), timeout=CLI_TIMEOUT_S)
    assert "Traceback" not in result.output, result.output
    for secret in (CLIENT_SECRET, STATIC_TOKEN):
        assert secret not in result.output
    return result


STATIC_ENV: dict[str, str | None] = {
    "SOURCES__ROUTERA__CLIENT_ID": None,
    "SOURCES__ROUTERA__CLIENT_SECRET": None,
    "SOURCES__ROUTERA__ACCESS_TOKEN": STATIC_TOKEN,
}


def enqueue(target: Target, server: SandboxServer, ids: list[str]) -> set[str]:
    (target.workdir / "ids.txt").write_text("\n".join(ids) + "\n", encoding="utf-8")
    result = run_cli(target, server, "enqueue", "ids.txt")
    assert result.code == 0, result.output
    return {row[0] for row in target.query("SELECT request_id FROM archive_queue")}


def requests_to(server: SandboxServer, method: str, path_prefix: str) -> Counter[int]:
    """Requests by status for one method and path prefix."""
    counts: Counter[int] = Counter()
    for entry in server.state.stats()["requests"]:
        if entry["method"] == method and entry["path"].startswith(path_prefix):
            counts[entry["status"]] += entry["count"]
    return counts


def assert_all_archived_once(target: Target, server: SandboxServer, ids: list[str]) -> None:
    assert server.state.stats()["deletes_succeeded"] == dict.fromkeys(ids, 1)
    trail = Counter(row[0] for row in target.query("SELECT id FROM contact_archives"))
    assert trail == dict.fromkeys(ids, 1)
    log = target.query("SELECT request_id, status FROM archive_log")
    terminal = Counter(request_id for request_id, status in log if status in TERMINAL)
    assert len(terminal) == len(ids) and set(terminal.values()) == {1}


class Trigger(threading.Thread):
    """Calls `action` once the sandbox has seen `deletes` DELETEs; records the count then."""

    def __init__(self, server: SandboxServer, deletes: int, action: Callable[[], None]) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.deletes = deletes
        self.action = action
        self.fired_at: int | None = None
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            if deletes_sent(self.server) >= self.deletes:
                self.action()
                self.fired_at = deletes_sent(self.server)
                return
            time.sleep(0.002)


def on_deletes(server: SandboxServer, deletes: int, action: Callable[[], None]) -> Trigger:
    trigger = Trigger(server, deletes, action)
    trigger.start()
    return trigger


# -- tokens that expire, tokens that vanish --------------------------------------------------------


@pytest.mark.parametrize("target", HTTP_ONLY, indirect=True)
def test_tokens_shorter_lived_than_the_run_are_renewed(target: Target) -> None:
    # expires_in 1 s is under the client's 60 s margin, so it renews every half second.
    server = start_sandbox(token_ttl=1.0, faults=FaultConfig(latency_ms=50))
    try:
        ids = server.state.contact_ids(include_archived=False)[:80]
        enqueue(target, server, ids)

        result = run_cli(target, server, "run", "--concurrency", "2")

        assert result.code == 0, result.output
        tokens = requests_to(server, "POST", "/oauth2/token")
        assert tokens[200] >= 3, f"the run (2 s of calls) should outlive several tokens: {tokens}"
        assert set(tokens) == {200}
        # Renewed as time passes, not once per call.
        assert sum(tokens.values()) < deletes_sent(server) / 4, tokens
        assert_all_archived_once(target, server, ids)
        print(f"\nshort-lived tokens: {dict(tokens)} token requests, {result.seconds:.1f} s")
    finally:
        server.stop()


@pytest.mark.parametrize("target", HTTP_ONLY, indirect=True)
def test_tokens_flushed_server_side_mid_run_are_renewed_once(target: Target) -> None:
    server = start_sandbox(faults=FaultConfig(latency_ms=20))
    try:
        ids = server.state.contact_ids(include_archived=False)[:120]
        enqueue(target, server, ids)
        flush = on_deletes(server, 40, lambda: server.state.revoke(credentials=False))

        result = run_cli(target, server, "run", "--concurrency", "8")
        flush.stop_event.set()
        flush.join(5)

        assert flush.fired_at is not None, "the run ended before the tokens were flushed"
        assert result.code == 0, result.output
        tokens = requests_to(server, "POST", "/oauth2/token")
        assert tokens == {200: 2}, "the 8 calls that got a 401 share one renewal"
        assert requests_to(server, "DELETE", "/contacts/")[401] <= 8
        assert_all_archived_once(target, server, ids)
    finally:
        server.stop()


# -- credentials revoked mid-run -------------------------------------------------------------------


# Both modes on DuckDB; on PostgreSQL one is enough: the modes differ only in the credentials,
# and what depends on the destination (loading what was done, then finishing) is the same.
@pytest.mark.parametrize(
    ("target", "mode"),
    [
        pytest.param("duckdb", "oauth", id="duckdb-oauth"),
        pytest.param("duckdb", "static-token", id="duckdb-static-token", marks=pytest.mark.variant),
        pytest.param(
            "postgres", "oauth", id="postgres-oauth", marks=[pytest.mark.postgres, pytest.mark.twin]
        ),
    ],
    indirect=["target"],
)
def test_credentials_revoked_mid_run_stop_it_and_nothing_done_is_lost(
    target: Target, mode: str
) -> None:
    concurrency = 4
    server = start_sandbox(faults=FaultConfig(latency_ms=25))
    try:
        ids = server.state.contact_ids(include_archived=False)[:120]
        request_ids = enqueue(target, server, ids)
        env = STATIC_ENV if mode == "static-token" else None
        revoke = on_deletes(server, 30, server.state.revoke)

        first = run_cli(target, server, "run", "--concurrency", str(concurrency), env=env)
        revoke.stop_event.set()
        revoke.join(5)

        assert revoke.fired_at is not None, "the run ended before the revocation"
        assert first.code == 2, first.output
        assert "401" in first.output or "refused" in first.output
        after = deletes_sent(server) - revoke.fired_at
        assert after <= concurrency, f"{after} DELETEs after the revocation"
        # A call already in flight may ask for a token once more after the first refusal.
        tokens = requests_to(server, "POST", "/oauth2/token")
        assert tokens[401] <= (concurrency if mode == "oauth" else 0), tokens
        # What the sandbox archived before the revocation is in the trail, logged as archived.
        archived = set(server.state.stats()["deletes_succeeded"])
        assert 30 <= len(archived) < len(ids)
        trail = {row[0] for row in target.query("SELECT id FROM contact_archives")}
        assert trail == archived
        logged = target.query("SELECT contact_id, status FROM archive_log")
        assert {cid for cid, status in logged if status == "archived"} == archived
        runs = target.query("SELECT exit_code, error FROM archive_runs")
        assert [code for code, _ in runs] == [2] and runs[0][1]

        server.state.restore_credentials()
        second = run_cli(target, server, "run", env=env)

        assert second.code == 0, second.output
        assert_all_archived_once(target, server, ids)
        statuses = Counter(
            status for _, status in target.query("SELECT request_id, status FROM archive_log")
        )
        assert sum(statuses.values()) == len(request_ids)
        print(
            f"\nrevoked ({mode}, {target.destination}) after {revoke.fired_at} DELETEs: "
            f"{after} more DELETEs, "
            f"{len(archived)} archived by the first run, tokens {dict(tokens)}"
        )
    finally:
        server.stop()


@pytest.mark.parametrize("target", HTTP_ONLY, indirect=True)
def test_a_run_that_starts_revoked_exits_2_and_archives_nothing(target: Target) -> None:
    server = start_sandbox()
    try:
        ids = server.state.contact_ids(include_archived=False)[:5]
        enqueue(target, server, ids)
        server.state.revoke()

        result = run_cli(target, server, "run")

        assert result.code == 2, result.output
        assert "invalid_client" in result.output
        assert deletes_sent(server) == 0
        assert requests_to(server, "POST", "/oauth2/token") == {401: 1}
    finally:
        server.stop()
