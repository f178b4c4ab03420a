"""What every end-to-end test needs to drive the real `routera-archive` CLI against the sandbox.

The e2e tests run the CLI as a separate process, so that what they check is what a user gets:
the installed entry point, its configuration read from the environment, its exit code and its
output. Building that process's environment, running it and reading the DuckDB file it leaves
are the same in every test file; they live here so that a change to how the CLI is configured
is made once. What a single test file needs on top (its own timeouts, checks on every result,
extra settings) stays in that file.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import duckdb

from sandbox import SandboxServer

# The console script installed next to the interpreter running the tests: the entry point a
# user runs, not `python -m`, and the one of this virtualenv whatever is first on PATH.
CLI = str(Path(sys.executable).with_name("routera-archive"))
# The CLI's default DuckDB file, in its working directory.
DB_FILE = "routera_audit.duckdb"
# A row of the run summary's outcomes table: `archived │ 12`.
OUTCOME_ROW = re.compile(r"^\s*([a-z_]+)\s+│\s+(\d+)\s*$", re.MULTILINE)


@dataclass
class Result:
    """One finished CLI process: its exit code, its output and how long it took."""

    code: int
    stdout: str
    stderr: str
    seconds: float = 0.0

    @property
    def output(self) -> str:
        """Both streams, for assertion messages and for checks that do not care which."""
        return self.stdout + self.stderr


# A test's way to run the CLI: `cli("run", "--dry-run", env={...})`.
RunCli = Callable[..., Result]


def cli_env(
    server: SandboxServer, workdir: Path, *overrides: Mapping[str, str | None] | None
) -> dict[str, str]:
    """The environment of a CLI process that talks to `server` and keeps its state in `workdir`.

    The developer's own `SOURCES__*` and `DESTINATION__*` variables are dropped: a test must not
    archive against a real account or load into a real database because of the shell it ran in.
    The sandbox's OAuth credentials and `RPS=0` (no pacing: the sandbox is local) come next, and
    `DLT_DATA_DIR` inside `workdir` so that no test sees another's pipeline state. Each mapping
    in `overrides` is applied in turn; a value of None removes the variable, which is how a test
    takes a credential away.
    """
    environment: dict[str, str | None] = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SOURCES__", "DESTINATION__"))
    }
    environment.update(
        SOURCES__ROUTERA__BASE_URL=server.url,
        SOURCES__ROUTERA__CLIENT_ID=server.config.client_id,
        SOURCES__ROUTERA__CLIENT_SECRET=server.config.client_secret,
        SOURCES__ROUTERA__RPS="0",
        DLT_DATA_DIR=str(workdir / "dlt_data"),
    )
    for override in overrides:
        environment.update(override or {})
    return {key: value for key, value in environment.items() if value is not None}


def run_cli(
    workdir: Path,
    env: Mapping[str, str],
    *args: str,
    timeout: float,
    stdin: str | None = None,
) -> Result:
    """Run the CLI in `workdir` to its end and capture its output.

    `timeout` has no default: each caller states how long its run may take, so that a hung run
    fails the test instead of hanging CI.
    """
    started = time.monotonic()
    done = subprocess.run(
        [CLI, *args],
        cwd=workdir,
        env=dict(env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Result(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def cli_runner(
    server: SandboxServer,
    workdir: Path,
    *settings: Mapping[str, str | None],
    timeout: float,
) -> RunCli:
    """A `RunCli` for one test: `cli("run", env={...}, stdin="...")` runs the CLI in `workdir`
    against `server` with `settings` (say, a wider terminal), then the call's own `env` on top.

    Tests that make many calls in one setup read best with the setup bound once, here.
    """

    def run(
        *args: str, env: Mapping[str, str | None] | None = None, stdin: str | None = None
    ) -> Result:
        environment = cli_env(server, workdir, *settings, env)
        return run_cli(workdir, environment, *args, timeout=timeout, stdin=stdin)

    return run


def start_cli(
    workdir: Path,
    env: Mapping[str, str],
    *args: str,
    stdout: int | IO[str] = subprocess.PIPE,
    start_new_session: bool = False,
) -> subprocess.Popen[str]:
    """Start the CLI in `workdir` without waiting, for tests that signal, kill or race it.

    The caller owns the process: it must wait for it, or kill it in a `finally`.
    """
    return subprocess.Popen(
        [CLI, *args],
        cwd=workdir,
        env=dict(env),
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=start_new_session,
    )


def query(workdir: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows from the CLI's DuckDB file in `workdir`, opened read-only and closed at once, so
    that the next CLI process can open it for writing."""
    with duckdb.connect(str(workdir / DB_FILE), read_only=True) as db:
        return db.execute(sql, list(params)).fetchall()


def printed_counts(stdout: str) -> dict[str, int]:
    """The run summary's outcomes table, without its total (checked against the rows first,
    so that a summary that does not add up fails here rather than in a later comparison)."""
    counts = {name: int(n) for name, n in OUTCOME_ROW.findall(stdout)}
    assert counts.pop("total", None) == sum(counts.values()), stdout
    return counts


def api_requests(server: SandboxServer) -> int:
    """Every request the sandbox has answered, of any kind."""
    return int(server.state.stats()["totals"]["requests"])


def deletes_sent(server: SandboxServer) -> int:
    """DELETE requests the sandbox has seen, whatever it answered: each is one archive call."""
    return int(server.state.stats()["totals"]["by_method"].get("DELETE", 0))
