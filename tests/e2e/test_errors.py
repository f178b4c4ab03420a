"""One way out for every error: each failure below ends the real CLI with one clear line on
stderr (`error: <what>; <what to do>`), the exit code of the README's table, and no traceback
(`--debug` shows one).

Before: an API that was down printed "unexpected error" and a traceback (exit 1); a PostgreSQL
URL without a password said "the destination is unreachable" (exit 1, which a scheduler
retries for ever); `--destination postgress` printed 20 lines of dlt's advice.
"""

import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from routera_archive_sandbox import FaultConfig, SandboxConfig, SandboxServer
from tests.conftest import POSTGRES_SKIP_REASON, POSTGRES_URL, postgres_available
from tests.e2e.cli_support import DB_FILE, assert_one_line, cli_env, deletes_sent, run_cli

FAST_RETRIES = {
    "SOURCES__ROUTERA__MAX_ATTEMPTS": "2",
    "SOURCES__ROUTERA__BACKOFF_INITIAL": "0",
    "SOURCES__ROUTERA__CONNECT_TIMEOUT": "3",
}
STATIC_TOKEN = "errors-test-token"


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def server() -> Iterator[SandboxServer]:
    config = SandboxConfig(port=0, contacts=5, static_tokens=(STATIC_TOKEN,))
    with SandboxServer(config) as running:
        yield running


def queued(workdir: Path, server: SandboxServer) -> dict[str, str]:
    """A workdir whose queue holds two requests; the environment to run the CLI there."""
    env = cli_env(server, workdir, FAST_RETRIES)
    done = run_cli(workdir, env, "enqueue", "-", stdin="c-1\nc-2\n", timeout=60)
    assert done.code == 0, done.output
    return env


@pytest.mark.parametrize(
    ("base_url", "reason"),
    [
        pytest.param("http://127.0.0.1:{closed}", "connection refused", id="refused"),
        pytest.param(
            "http://no-such-host.invalid",
            "unknown host",
            id="unknown-host",
            marks=pytest.mark.variant,  # one more cause, said the same way
        ),
        # TLS to a plain-HTTP port
        pytest.param("https://127.0.0.1:{sandbox}", "TLS handshake failed", id="tls"),
    ],
)
def test_an_api_that_cannot_be_reached_exits_1_retry_later(
    server: SandboxServer, tmp_path: Path, base_url: str, reason: str
) -> None:
    env = queued(tmp_path, server)
    url = base_url.format(closed=closed_port(), sandbox=server.url.rsplit(":", 1)[1])
    env |= {"SOURCES__ROUTERA__BASE_URL": url}

    result = run_cli(tmp_path, env, "run", timeout=120)

    assert_one_line(
        result, 1, "the Routera API is unavailable", reason, "nothing was archived", "retry later"
    )


def test_5xx_on_every_call_exits_1_retry_later(tmp_path: Path) -> None:
    faults = FaultConfig(error_rate=1.0)
    config = SandboxConfig(port=0, contacts=5, static_tokens=(STATIC_TOKEN,), faults=faults)
    with SandboxServer(config) as failing:
        env = queued(tmp_path, failing)
        env |= {"SOURCES__ROUTERA__ACCESS_TOKEN": STATIC_TOKEN}
        env.pop("SOURCES__ROUTERA__CLIENT_ID")
        env.pop("SOURCES__ROUTERA__CLIENT_SECRET")
        result = run_cli(tmp_path, env, "run", timeout=120)
        deletes = failing.state.stats()["totals"]["by_method"].get("DELETE", 0)

    assert_one_line(result, 1, "the Routera API is unavailable", "HTTP 50", "retry later")
    assert deletes == 0


def test_a_token_endpoint_that_is_down_exits_1_retry_later(tmp_path: Path) -> None:
    faults = FaultConfig(error_rate=1.0)
    with SandboxServer(SandboxConfig(port=0, contacts=5, faults=faults)) as failing:
        env = queued(tmp_path, failing)
        result = run_cli(tmp_path, env, "run", timeout=120)

    assert_one_line(result, 1, "could not get an OAuth token", "POST /oauth2/token", "retry later")


@pytest.mark.parametrize(
    ("setting", "value", "words"),
    [
        ("RPS", "fast", ("rps must be of type float, got 'fast'", "SOURCES__ROUTERA__RPS")),
        (
            "CONCURRENCY",
            "0",
            ("concurrency must be between 1 and 256, got 0", "SOURCES__ROUTERA__CONCURRENCY"),
        ),
        ("BASE_URL", "api.routera.io", ("is not an absolute http(s) URL", "base_url")),
        ("SCHEMA_CONTRACT", "strict", ("schema_contract must be one of", "strict")),
    ],
)
def test_a_bad_setting_exits_2_naming_it(
    server: SandboxServer, tmp_path: Path, setting: str, value: str, words: tuple[str, ...]
) -> None:
    env = cli_env(server, tmp_path, {f"SOURCES__ROUTERA__{setting}": value})

    result = run_cli(tmp_path, env, "run", timeout=60)

    assert_one_line(result, 2, *words, "fix this, then run again")
    assert server.state.stats()["totals"]["requests"] == 0


def test_an_unknown_destination_exits_2_with_the_nearest_name(
    server: SandboxServer, tmp_path: Path
) -> None:
    env = cli_env(server, tmp_path)

    result = run_cli(tmp_path, env, "run", "--destination", "postgress", timeout=60)

    last = assert_one_line(result, 2, "unknown destination 'postgress' (did you mean 'postgres'?)")
    assert "DESTINATION__POSTGRESS__DESTINATION_TYPE" not in result.output, last
    assert len(result.output.splitlines()) == 1, result.output


def test_debug_shows_the_traceback(server: SandboxServer, tmp_path: Path) -> None:
    env = cli_env(server, tmp_path)

    result = run_cli(tmp_path, env, "run", "--destination", "postgress", "--debug", timeout=60)

    assert result.code == 2
    assert "Traceback" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: unknown destination")


@pytest.fixture
def postgres() -> None:
    if not postgres_available():
        pytest.skip(POSTGRES_SKIP_REASON)


@pytest.mark.usefixtures("postgres")
def test_a_postgres_url_without_a_password_exits_2_saying_which_key(
    server: SandboxServer, tmp_path: Path
) -> None:
    without_password = POSTGRES_URL.replace(":trust@", "@")
    env = cli_env(server, tmp_path, {"DESTINATION__POSTGRES__CREDENTIALS": without_password})

    result = run_cli(tmp_path, env, "run", "--destination", "postgres", timeout=60)

    assert_one_line(result, 2, "`password` missing", "DESTINATION__POSTGRES__CREDENTIALS__PASSWORD")
    assert server.state.stats()["totals"]["requests"] == 0


@pytest.mark.parametrize("command", ["run", "status", "report", "enqueue"])
def test_a_destination_that_does_not_answer_exits_1_retry_later(
    server: SandboxServer, tmp_path: Path, command: str
) -> None:
    down = f"postgresql://postgres:x@127.0.0.1:{closed_port()}/test"
    env = cli_env(server, tmp_path, {"DESTINATION__POSTGRES__CREDENTIALS": down})

    result = run_cli(tmp_path, env, command, "--destination", "postgres", timeout=60, stdin="c-1\n")

    assert_one_line(
        result, 1, "the destination is unreachable", "Connection refused", "retry later"
    )
    assert server.state.stats()["totals"]["requests"] == 0


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("run", "--limit", "0"), "Invalid value for '--limit'"),
        (("run", "--no-such-option"), "No such option: --no-such-option"),
        *(
            ((command, "--dataset", "x; drop table y"), "--dataset 'x; drop table y'")
            for command in ("run", "status", "report", "enqueue")
        ),
    ],
)
def test_a_bad_command_line_exits_2_in_one_line(
    server: SandboxServer, tmp_path: Path, args: tuple[str, ...], words: str
) -> None:
    result = run_cli(tmp_path, cli_env(server, tmp_path), *args, timeout=60, stdin="c-1\n")

    assert_one_line(result, 2, words)
    assert len(result.output.splitlines()) == 1, result.output


def test_a_guardrail_refusal_ends_in_its_error_line_with_exit_3(
    server: SandboxServer, tmp_path: Path
) -> None:
    env = queued(tmp_path, server) | {"SOURCES__ROUTERA__MAX_ARCHIVES": "1"}

    result = run_cli(tmp_path, env, "run", timeout=60)

    assert_one_line(
        result, 3, "refused: 2 requests to handle, more than max_archives 1", "pass --force"
    )
    assert server.state.stats()["totals"]["requests"] == 0


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ({"DESTINATION__DUCKDB__CREDENTIALS": "/no/such/folder/x.duckdb"}, "No such file"),
        ({"DESTINATION__POSTGRES__CREDENTIALS": "not-a-url"}, "cannot be used"),
    ],
    ids=["duckdb-in-a-missing-folder", "postgres-url-unreadable"],
)
def test_a_destination_setting_that_cannot_work_exits_2(
    server: SandboxServer, tmp_path: Path, setting: dict[str, str], words: str
) -> None:
    destination = "postgres" if "DESTINATION__POSTGRES__CREDENTIALS" in setting else "duckdb"
    env = cli_env(server, tmp_path, setting)

    result = run_cli(tmp_path, env, "status", "--destination", destination, timeout=60)

    assert_one_line(result, 2, words, "fix this, then run again")


def test_a_multi_line_api_message_stays_one_line(tmp_path: Path) -> None:
    """A 401 whose message holds a line break: one error line, the whole message in it."""
    import http.server
    import threading

    class Refusing(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"message": "token revoked\\nby an administrator", "error": true}'
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None: ...

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        config = SandboxConfig(port=0, contacts=1)
        with SandboxServer(config) as sandbox:
            env = queued(tmp_path, sandbox)
        env |= {
            "SOURCES__ROUTERA__BASE_URL": f"http://127.0.0.1:{server.server_address[1]}",
            "SOURCES__ROUTERA__ACCESS_TOKEN": STATIC_TOKEN,
        }
        env.pop("SOURCES__ROUTERA__CLIENT_ID")
        env.pop("SOURCES__ROUTERA__CLIENT_SECRET")
        result = run_cli(tmp_path, env, "run", timeout=60)
    finally:
        server.shutdown()

    assert_one_line(
        result,
        2,
        "(token revoked by an administrator); check SOURCES__ROUTERA__ACCESS_TOKEN",
        "fix this, then run again",
    )
    assert STATIC_TOKEN not in result.output


# Holds the DuckDB file open for writing, as a run or an analyst's session does, until its
# stdin closes.
HOLDER = """
import sys
import duckdb
db = duckdb.connect(sys.argv[1])
print("holding", flush=True)
sys.stdin.read()
"""


@dataclass
class HeldFile:
    workdir: Path
    server: SandboxServer
    env: dict[str, str]
    holder: subprocess.Popen[str]


@pytest.fixture(scope="module")
def held_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HeldFile]:
    """A dataset with two requests queued, its DuckDB file held by another process."""
    workdir = tmp_path_factory.mktemp("held_file")
    config = SandboxConfig(port=0, contacts=5, static_tokens=(STATIC_TOKEN,))
    with SandboxServer(config) as server:
        env = queued(workdir, server)
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(workdir / DB_FILE)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
            yield HeldFile(workdir, server, env, holder)
        finally:
            assert holder.stdin is not None
            holder.stdin.close()
            try:
                holder.wait(timeout=30)
            except subprocess.TimeoutExpired:
                holder.kill()
                holder.wait()


@pytest.mark.parametrize(
    "args", [("run",), ("run", "--dry-run"), ("status",), ("report",), ("enqueue", "-")]
)
def test_a_duckdb_file_held_by_another_process_exits_1_naming_it(
    held_file: HeldFile, args: tuple[str, ...]
) -> None:
    """Another process has the file (a run, a notebook): it will let go, so retry later (1).

    Before: dlt's "check credentials... internet connection may be down" (issue 12, class 10)."""
    deletes = deletes_sent(held_file.server)

    result = run_cli(held_file.workdir, held_file.env, *args, timeout=120, stdin="c-3\n")

    assert_one_line(
        result,
        1,
        f"the DuckDB file {held_file.workdir / DB_FILE} is open in another process "
        f"(PID {held_file.holder.pid}",
        "retry later",
    )
    assert "internet connection" not in result.output
    assert deletes_sent(held_file.server) == deletes
