"""Shared fixtures: a real sandbox on loopback, and pipelines on DuckDB and PostgreSQL.

PostgreSQL is the server this machine runs (127.0.0.1:5432, user postgres, trust auth, database
`test`); every test gets its own dataset, dropped afterwards. Where no server answers, the
PostgreSQL cases skip and say why.
"""

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dlt
import pytest

from routera_archive.config import RouteraSourceConfig, settings_from_values
from routera_archive.http.config import ClientConfig
from routera_archive.redaction import REDACTOR
from routera_archive_pipelines.factory import make_pipeline
from routera_archive_sandbox import SandboxConfig, SandboxServer

POSTGRES_HOST = os.environ.get("ROUTERA_TEST_PG_HOST", "127.0.0.1")
POSTGRES_PORT = int(os.environ.get("ROUTERA_TEST_PG_PORT", "5432"))
# Trust auth ignores the password, but dlt's credentials want one.
POSTGRES_URL = f"postgresql://postgres:trust@{POSTGRES_HOST}:{POSTGRES_PORT}/test"


def postgres_available() -> bool:
    try:
        with socket.create_connection((POSTGRES_HOST, POSTGRES_PORT), timeout=1):
            pass
    except OSError:
        return False
    try:
        import psycopg2

        psycopg2.connect(POSTGRES_URL.replace(":trust", ""), connect_timeout=2).close()
    except Exception:
        return False
    return True


POSTGRES_SKIP_REASON = (
    f"no PostgreSQL server answers on {POSTGRES_HOST}:{POSTGRES_PORT} as user postgres with "
    "database `test`; start it to run the warehouse tests"
)


@pytest.fixture(autouse=True)
def _isolated_dlt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep tests away from a developer's .dlt/secrets.toml, ~/.dlt and routera env vars."""
    for name in list(os.environ):
        if name.startswith(("SOURCES__", "DESTINATION__", "PROVIDERS__", "ROUTERA_ARCHIVE")):
            monkeypatch.delenv(name, raising=False)
    # The CLI's dlt defaults, set in this process by a command run in-process (CliRunner), are
    # undone after each test: later CLI processes inherit this environment.
    monkeypatch.delenv("PROVIDERS__ENABLE_AIRFLOW_SECRETS", raising=False)
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
    monkeypatch.setenv("DLT_DATA_DIR", str(tmp_path / "dlt_data"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def _secrets_forgotten() -> Iterator[None]:
    """Each test masks only the secrets it configured itself: a process-wide list (redaction)
    would otherwise carry one test's odd credentials into every later test of the process."""
    yield
    REDACTOR.forget_all()


@pytest.fixture
def sandbox_server() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(port=0, contacts=60, seed=11)) as server:
        yield server


def client_config(**values: Any) -> ClientConfig:
    """HTTP client settings made the one way the connector makes them: from the settings spec
    (defaults for what is not given, validated by its `on_resolved`)."""
    return settings_from_values(**values).client_config()


def source_config(server: SandboxServer, **overrides: object) -> RouteraSourceConfig:
    """Connector settings for a sandbox: OAuth credentials, no rate limit (tests are local)."""
    values: dict[str, object] = {
        "base_url": server.url,
        "client_id": server.config.client_id,
        "client_secret": server.config.client_secret,
        "rps": 0.0,
        "concurrency": 8,
    }
    values.update(overrides)
    return settings_from_values(**values)


# A test whose destination-dependent part (SQL, loads) other PostgreSQL cases of the default
# suite already run takes `@pytest.mark.parametrize("destination", TWINNED, indirect=True)`: its
# PostgreSQL case is a twin, run by CI (`--run-extended`), so the default suite keeps its 10
# minutes on two cores.
TWINNED = ("duckdb", pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.twin]))


@pytest.fixture(params=["duckdb", "postgres"])
def destination(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "postgres":
        if not postgres_available():
            pytest.skip(POSTGRES_SKIP_REASON)
        monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", POSTGRES_URL)
    return str(request.param)


@pytest.fixture
def pipeline(destination: str, tmp_path: Path) -> Iterator[dlt.Pipeline]:
    """A pipeline on a fresh dataset of the parametrised destination."""
    dataset = f"ra_{uuid.uuid4().hex[:10]}"
    pipe = make_pipeline(
        destination,
        dataset,
        duckdb_file=tmp_path / "test.duckdb" if destination == "duckdb" else None,
        pipelines_dir=tmp_path / "pipelines",
    )
    yield pipe
    if destination == "postgres":
        with pipe.sql_client() as client:
            for name in (dataset, f"{dataset}_staging"):
                client.execute_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-slow",
        action="store_true",
        default=False,
        help="also run the long versions of the crash and fault tests (marked slow)",
    )
    parser.addoption(
        "--run-extended",
        action="store_true",
        default=False,
        help="also run what CI adds to the 10-minute default suite: the PostgreSQL twins of "
        "cases run on DuckDB (marked twin), further variants of cases it runs (marked variant) "
        "and the benchmarks' smoke runs (marked bench)",
    )
    parser.addoption(
        "--run-integrations",
        action="store_true",
        default=False,
        help="also run the integrations with other tools (tests/integration: dbt); CI does",
    )


# The integrations drive other tools for real (dbt in its own virtualenv): a minute or more
# that the default suite's 10 minutes cannot hold; `.ci/run` passes --run-integrations.
INTEGRATIONS = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_slow = pytest.mark.skip(reason="long version: run with --run-slow")
    skip_twin = pytest.mark.skip(
        reason="the PostgreSQL twin of a DuckDB case: run with --run-extended (CI does); what "
        "PostgreSQL does differently, the default suite's other PostgreSQL cases run"
    )
    skip_variant = pytest.mark.skip(
        reason="another variant of a case the default suite runs: run with --run-extended (CI does)"
    )
    skip_bench = pytest.mark.skip(
        reason="a benchmark's smoke run: run with --run-extended (CI does)"
    )
    skip_integration = pytest.mark.skip(
        reason="an integration with another tool: run with --run-integrations (CI does)"
    )
    for item in items:
        if "slow" in item.keywords and not config.getoption("--run-slow"):
            item.add_marker(skip_slow)
        if not config.getoption("--run-extended"):
            if "twin" in item.keywords:
                item.add_marker(skip_twin)
            if "bench" in item.keywords:
                item.add_marker(skip_bench)
            if "variant" in item.keywords:
                item.add_marker(skip_variant)
        if INTEGRATIONS in Path(str(item.fspath)).parents and not config.getoption(
            "--run-integrations"
        ):
            item.add_marker(skip_integration)
