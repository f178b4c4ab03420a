"""What every end-to-end test needs to drive the real `routera-archive` CLI against the sandbox.

The e2e tests run the CLI as a separate process, so that what they check is what a user gets:
the installed entry point, its configuration read from the environment, its exit code and its
output. Building that process's environment, running it and reading the DuckDB file it leaves
are the same in every test file; they live here so that a change to how the CLI is configured
is made once. What a single test file needs on top (its own timeouts, checks on every result,
extra settings) stays in that file.

The CLI keeps its queue and audit trail in DuckDB by default, or in a warehouse. A `Target` is
one of the two these tests know, DuckDB and the test PostgreSQL: the options and environment
that send the CLI there, a way to read what it wrote, and one to write there as a user's SQL
would (a queue table of their own). The `target` fixture (re-exported by
`tests/e2e/conftest.py`) runs a test once on each; the PostgreSQL case skips, and says why,
where no server answers.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import IO, Any

import duckdb
import httpx
import psycopg2
import pytest
from psycopg2 import sql as pg_sql

from routera_archive.names import DATASET_NAME
from routera_archive_sandbox import SandboxServer
from tests.conftest import POSTGRES_SKIP_REASON, POSTGRES_URL, postgres_available

# The console script installed next to the interpreter running the tests: the entry point a
# user runs, not `python -m`, and the one of this virtualenv whatever is first on PATH.
CLI = str(Path(sys.executable).with_name("routera-archive"))
# The CLI's default DuckDB file, in its working directory.
DB_FILE = "routera_audit.duckdb"
# A row of the run summary's outcomes table: `archived │ 12`.
OUTCOME_ROW = re.compile(r"^\s*([a-z_]+)\s+│\s+(\d+)\s*$", re.MULTILINE)
# The subcommands that take `--destination` and `--dataset`.
DATASET_COMMANDS = frozenset(
    {"run", "enqueue", "status", "report", "verify", "redact", "evidence", "doctor"}
)
# Parameters for a fixture that runs its tests on each destination; `-m "not postgres"` leaves
# the PostgreSQL cases out. An end-to-end case runs on PostgreSQL in the default suite only
# where that destination has something of its own to prove (`BOTH`: a first run, random kills,
# a kill inside a load, its lock's session, shards); elsewhere the PostgreSQL case is a twin of
# the DuckDB one (`DESTINATIONS`), run by CI (`--run-extended`), because the code that differs by
# destination (SQL, loads, locks) is run on both by tests/pipeline and by those cases, and the
# default suite has 10 minutes on two cores.
POSTGRES_TWIN = pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.twin])
DESTINATIONS = ("duckdb", POSTGRES_TWIN)
BOTH = ("duckdb", pytest.param("postgres", marks=pytest.mark.postgres))
# Asked once a session: where no server answers, every PostgreSQL case skips without waiting.
postgres_answers = cache(postgres_available)


@dataclass(frozen=True)
class Target:
    """Where the CLI under test keeps its queue and audit trail, and how to read them back.

    DuckDB: the default file in `workdir` and the default dataset, so no option at all.
    PostgreSQL: the test server, in a dataset of the test's own (`--dataset`), with the
    credentials in the environment as a user would set them.
    """

    destination: str
    dataset: str
    workdir: Path
    # Options for the subcommands in DATASET_COMMANDS, environment for every CLI process.
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)

    def command(self, *args: str) -> tuple[str, ...]:
        """`args` with this target's options after the subcommand, if it is one that takes them
        (`demo` and `sandbox` do not)."""
        if args and args[0] in DATASET_COMMANDS:
            return (args[0], *self.args, *args[1:])
        return args

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Rows of `sql`, with the dataset as the schema, so that tables need no prefix.

        `?` marks a parameter on both destinations. Each call opens its own connection and
        closes it, so that the next CLI process can open the DuckDB file for writing.
        """
        if self.destination == "duckdb":
            with duckdb.connect(str(self.workdir / DB_FILE), read_only=True) as db:
                db.execute(f"SET search_path = '{self.dataset}'")
                return db.execute(sql, list(params)).fetchall()
        with closing(_postgres()) as connection, connection.cursor() as cursor:
            cursor.execute(
                pg_sql.SQL("SET search_path TO {}").format(pg_sql.Identifier(self.dataset))
            )
            cursor.execute(sql.replace("%", "%%").replace("?", "%s"), params)
            return list(cursor.fetchall())

    def execute(self, sql: str, *params: Any) -> None:
        """Run one statement that writes (DDL or DML) in the dataset, and commit it: the SQL a
        dbt model or an analyst would run on the queue. `?` marks a parameter, as in `query`.

        The dataset is created first if it does not exist yet, so that a test can make the
        first table in it. The connection is closed at once, as in `query`.
        """
        self.executemany(sql, [params])

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """`execute` once for each parameter tuple in `rows`, in one transaction."""
        rows = list(rows)
        if not rows:
            return
        if self.destination == "duckdb":
            with duckdb.connect(str(self.workdir / DB_FILE)) as db:
                db.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.dataset}"')
                db.execute(f"SET search_path = '{self.dataset}'")
                db.executemany(sql, [list(row) for row in rows])
            return
        # psycopg2 commits when the `with connection` block ends without an error.
        with closing(_postgres()) as connection, connection, connection.cursor() as cursor:
            schema = pg_sql.Identifier(self.dataset)
            cursor.execute(pg_sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
            cursor.execute(pg_sql.SQL("SET search_path TO {}").format(schema))
            cursor.executemany(sql.replace("%", "%%").replace("?", "%s"), rows)

    def tables(self) -> set[str]:
        """The names of the tables in the dataset now: none before anything was written."""
        sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = ?"
        if self.destination == "duckdb":
            if not (self.workdir / DB_FILE).exists():
                return set()
            with duckdb.connect(str(self.workdir / DB_FILE), read_only=True) as db:
                return {row[0] for row in db.execute(sql, [self.dataset]).fetchall()}
        with closing(_postgres()) as connection, connection.cursor() as cursor:
            cursor.execute(sql.replace("?", "%s"), (self.dataset,))
            return {row[0] for row in cursor.fetchall()}

    def schemas(self) -> list[str]:
        """The dataset and its staging datasets (`<dataset>_staging...`) that exist now."""
        if self.destination == "duckdb":
            with duckdb.connect(str(self.workdir / DB_FILE), read_only=True) as db:
                names = [
                    row[0]
                    for row in db.execute("SELECT schema_name FROM duckdb_schemas()").fetchall()
                ]
        else:
            with closing(_postgres()) as connection, connection.cursor() as cursor:
                cursor.execute("SELECT schema_name FROM information_schema.schemata")
                names = [row[0] for row in cursor.fetchall()]
        return sorted(
            name
            for name in names
            if name == self.dataset or name.startswith(f"{self.dataset}_staging")
        )


def stored_text(target: Target) -> str:
    """Every row of every table in the dataset and its staging datasets, as text: what an
    auditor's `SELECT *` could show."""
    texts: list[str] = []
    for schema in target.schemas():
        tables = target.query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", schema
        )
        for (table,) in tables:
            kind = "VARCHAR" if target.destination == "duckdb" else "text"
            rows = target.query(f'SELECT CAST(t AS {kind}) FROM "{schema}"."{table}" AS t')
            texts.extend(row[0] for row in rows)
    return "\n".join(texts)


def _postgres() -> Any:
    """A connection to the test PostgreSQL (trust auth: the URL's placeholder password goes)."""
    return psycopg2.connect(POSTGRES_URL.replace(":trust", ""), connect_timeout=5)


def drop_postgres_dataset(dataset: str) -> None:
    """Drop `dataset` and its staging datasets (`<dataset>_staging`, `..._staging_0of3`)."""
    with closing(_postgres()) as connection:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT schema_name FROM information_schema.schemata")
            for (schema,) in cursor.fetchall():
                if schema == dataset or schema.startswith(f"{dataset}_staging"):
                    cursor.execute(
                        pg_sql.SQL("DROP SCHEMA {} CASCADE").format(pg_sql.Identifier(schema))
                    )


def searchable_bytes(path: Path) -> bytes:
    """A file's content as a search for a value must see it: gunzipped (dlt's INSERT job files),
    and for a parquet file (DuckDB's job files) its values one per line, since its pages are
    compressed and a byte search finds nothing in them."""
    data = path.read_bytes()
    if path.suffix == ".gz":
        with contextlib.suppress(OSError, EOFError):
            data = gzip.decompress(data)
    if data[:4] == b"PAR1":
        import pyarrow.parquet

        columns = pyarrow.parquet.read_table(path).to_pydict().values()
        data = "\n".join(str(value) for column in columns for value in column).encode()
    return data


@contextmanager
def open_target(destination: str, workdir: Path) -> Iterator[Target]:
    """A `Target` on `destination` for a CLI working in `workdir`; on PostgreSQL a fresh
    dataset, dropped afterwards, and a skip that says why where no server answers."""
    if destination == "duckdb":
        yield Target("duckdb", DATASET_NAME, workdir)
        return
    if destination != "postgres":
        raise ValueError(f"no test target for destination {destination!r}")
    if not postgres_answers():
        pytest.skip(POSTGRES_SKIP_REASON)
    dataset = f"ra_e2e_{uuid.uuid4().hex[:10]}"
    try:
        yield Target(
            "postgres",
            dataset,
            workdir,
            ("--destination", "postgres", "--dataset", dataset),
            {"DESTINATION__POSTGRES__CREDENTIALS": POSTGRES_URL},
        )
    finally:
        drop_postgres_dataset(dataset)


@pytest.fixture(params=DESTINATIONS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    """The test once on DuckDB (the file in `tmp_path`) and once on PostgreSQL."""
    with open_target(request.param, tmp_path) as chosen:
        yield chosen


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
        if not key.startswith(("SOURCES__", "DESTINATION__", "PROVIDERS__"))
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
    target: Target | None = None,
) -> RunCli:
    """A `RunCli` for one test: `cli("run", env={...}, stdin="...")` runs the CLI in `workdir`
    against `server` with `settings` (say, a wider terminal), then the call's own `env` on top.
    With a `target`, its environment comes before `settings` and its options go to every
    subcommand that takes them.

    Tests that make many calls in one setup read best with the setup bound once, here.
    """
    target_env = {} if target is None else target.env

    def run(
        *args: str, env: Mapping[str, str | None] | None = None, stdin: str | None = None
    ) -> Result:
        environment = cli_env(server, workdir, target_env, *settings, env)
        command = args if target is None else target.command(*args)
        return run_cli(workdir, environment, *command, timeout=timeout, stdin=stdin)

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


@contextmanager
def sandbox_command(workdir: Path, *args: str) -> Iterator[tuple[str, dict[str, str]]]:
    """`routera-archive sandbox --port 0 ARGS` serving from `workdir`: its URL and the bearer
    header of a token of its default client. At the end it is stopped with SIGTERM, on which it
    must exit 0."""
    process = start_cli(workdir, os.environ, "sandbox", "--port", "0", *args)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("sandbox listening on http://127.0.0.1:"), line
        url = line.split(" on ", 1)[1].strip()
        form = {
            "grant_type": "client_credentials",
            "client_id": "sandbox-client",
            "client_secret": "sandbox-secret",
        }
        token = httpx.post(f"{url}/oauth2/token", data=form).json()["access_token"]
        yield url, {"Authorization": f"Bearer {token}"}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def query(workdir: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows from the CLI's DuckDB file in `workdir`, opened read-only and closed at once, so
    that the next CLI process can open it for writing."""
    with duckdb.connect(str(workdir / DB_FILE), read_only=True) as db:
        return db.execute(sql, list(params)).fetchall()


def assert_one_line(result: Result, code: int, *words: str) -> str:
    """`result` exited with `code` and ended in one `error: ...` line on stderr holding each
    of `words`, with no traceback anywhere (the README's "Every error ends in one line")."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.code == code, result.output
    assert lines, result.output
    last = lines[-1]
    assert last.startswith("error: "), result.output
    for word in words:
        assert word in last, (word, last)
    assert "Traceback" not in result.output
    return last


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
