"""The dbt package (`dbt/`) against datasets made by real runs (the CLI against the sandbox on
loopback), on DuckDB and PostgreSQL, with the real dbt of `.venv-dbt` (scripts/setup.sh):

- `dbt build` passes on a dataset `enqueue`, `run` and `redact` made: every source test, the
  tables that are there checked, `verifications` (no `verify` yet) passed as absent;
- a run drains a queue that dbt built: the queue model (the template, fed by its seed of sandbox
  ids) lands in the dataset's own schema, and `routera-archive run` archives exactly those ids;
- the analyses compile, and each compiled query runs on the dataset;
- the tests catch a broken dataset: a copied log row with an unknown status fails exactly the
  two tests on it, and `verifications`, once `verify` made it, is checked for real.

Without `.venv-dbt` those tests skip, saying so. The checks that the package says what the
connector writes (tables, columns, statuses, the analyses' SQL) need no dbt and always run.
One dataset per destination, made once for the module.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import yaml
from psycopg2 import sql as pg_sql

from routera_archive.dataset.chain import CHAIN_COLUMNS, DIGESTS_COLUMNS
from routera_archive.dataset.redact import REDACTIONS_COLUMNS
from routera_archive.dataset.tables import (
    FIELDS_COLUMNS,
    HELD_BACK_COLUMN,
    LOG_COLUMNS,
    QUEUE_COLUMNS,
    RUNS_COLUMNS,
    archives_columns,
)
from routera_archive.dataset.verifications import VERIFICATIONS_COLUMNS
from routera_archive.models import Status
from routera_archive.names import (
    CHAIN_TABLE,
    DIGESTS_TABLE,
    FIELDS_TABLE,
    LOG_TABLE,
    QUEUE_TABLE,
    REDACTIONS_TABLE,
    RUNS_TABLE,
    VERIFICATIONS_TABLE,
)
from routera_archive.objects import ObjectType
from routera_archive_sandbox import SandboxConfig, SandboxServer
from tests.conftest import POSTGRES_HOST, POSTGRES_PORT, POSTGRES_URL
from tests.dbt_package import ANALYSES_DIR, DBT_DIR, ROOT, analyses
from tests.e2e.cli_support import DB_FILE, DESTINATIONS, RunCli, Target, cli_runner, open_target

pytestmark = pytest.mark.e2e

DBT = ROOT / ".venv-dbt" / "bin" / "dbt"
CLI_TIMEOUT_S = 120
DBT_TIMEOUT_S = 300
SOURCES = DBT_DIR / "models" / "sources.yml"
SEED = DBT_DIR / "seeds" / "archive_queue_ids.csv"
# Every table the connector writes, and the queue it reads, with the columns it declares.
DECLARED: dict[str, set[str]] = {
    **{kind.table: set(archives_columns(kind)) | {HELD_BACK_COLUMN} for kind in ObjectType},
    LOG_TABLE: set(LOG_COLUMNS),
    RUNS_TABLE: set(RUNS_COLUMNS),
    FIELDS_TABLE: set(FIELDS_COLUMNS),
    CHAIN_TABLE: set(CHAIN_COLUMNS),
    DIGESTS_TABLE: set(DIGESTS_COLUMNS),
    REDACTIONS_TABLE: set(REDACTIONS_COLUMNS),
    VERIFICATIONS_TABLE: set(VERIFICATIONS_COLUMNS),
    QUEUE_TABLE: set(QUEUE_COLUMNS),
}
ABSENT = "is not in the dataset yet"


# ----------------------------------------------------------- the package and the connector
def source_tables() -> dict[str, dict[str, Any]]:
    (source,) = yaml.safe_load(SOURCES.read_text(encoding="utf-8"))["sources"]
    return {table["name"]: table for table in source["tables"]}


def test_the_sources_are_every_table_the_connector_writes_with_its_columns() -> None:
    tables = source_tables()
    assert set(tables) == set(DECLARED)
    for name, declared in DECLARED.items():
        described = {column["name"] for column in tables[name]["columns"]}
        assert described == declared, name
        assert tables[name]["description"], name


def test_the_accepted_statuses_are_the_connectors() -> None:
    (status,) = [c for c in source_tables()[LOG_TABLE]["columns"] if c["name"] == "status"]
    (accepted,) = [t["accepted_values"] for t in status["data_tests"] if "accepted_values" in t]
    assert accepted["arguments"]["values"] == [s.value for s in Status]


def test_the_analyses_are_the_shipped_queries() -> None:
    on_disk = {path.name: path.read_text(encoding="utf-8") for path in ANALYSES_DIR.glob("*.sql")}
    assert on_disk == analyses(), "run `python -m tests.dbt_package` to write them again"


# ----------------------------------------------------------------------- dbt on datasets
@dataclass
class Dataset:
    target: Target
    cli: RunCli
    server: SandboxServer
    dbt_schema: str

    @property
    def workdir(self) -> Path:
        return self.target.workdir


@dataclass
class DbtResult:
    code: int
    output: str
    # unique_id -> status ("pass", "fail", "success", "error", ...), from run_results.json.
    statuses: dict[str, str]
    # unique_id -> (the test's name, its table, its column) for each test dbt parsed.
    tests: dict[str, tuple[str, str, str | None]]

    def failed(self) -> set[tuple[str, str, str | None]]:
        return {self.tests[uid] for uid, status in self.statuses.items() if status != "pass"}


def drop_postgres_schema(schema: str) -> None:
    with closing(psycopg2.connect(POSTGRES_URL.replace(":trust", ""), connect_timeout=5)) as db:
        db.autocommit = True
        with db.cursor() as cursor:
            query = pg_sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE")
            cursor.execute(query.format(pg_sql.Identifier(schema)))


@pytest.fixture(scope="module", params=DESTINATIONS)
def dataset(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Dataset]:
    """A dataset made by the CLI: contacts and a company enqueued and archived, an id Routera
    does not know, one contact redacted (so `redactions` exists, `verifications` not yet)."""
    if not DBT.exists():
        pytest.skip(f"{DBT} is missing: scripts/setup.sh installs dbt there")
    workdir = tmp_path_factory.mktemp(f"dbt_{request.param}")
    # Seed 0: the package's seed holds ids of that sandbox's records (`routera-archive sandbox`).
    config = SandboxConfig(port=0, contacts=30, companies=5, deals=5, tickets=5, seed=0)
    with open_target(request.param, workdir) as target, SandboxServer(config) as server:
        dbt_schema = f"{target.dataset}_dbt"
        try:
            cli = cli_runner(server, workdir, timeout=CLI_TIMEOUT_S, target=target)
            contacts = server.state.object_ids("contacts", include_archived=False)
            companies = server.state.object_ids("companies", include_archived=False)
            (workdir / "contacts.txt").write_text("\n".join([*contacts[10:14], "nosuch"]) + "\n")
            (workdir / "companies.txt").write_text(companies[3] + "\n")
            for args in (
                ("enqueue", "contacts.txt"),
                ("enqueue", "--object-type", "companies", "companies.txt"),
                ("run",),
                ("redact", "--contact-id", contacts[10], "--reason", "test"),
            ):
                done = cli(*args)
                assert done.code == 0, done.output
            yield Dataset(target, cli, server, dbt_schema)
        finally:
            if request.param == "postgres":
                drop_postgres_schema(dbt_schema)


def dbt(dataset: Dataset, *args: str) -> DbtResult:
    """The real dbt on the package, for this dataset: `--profiles-dir dbt --project-dir dbt`,
    the target and the environment a user sets; its target and log folders in the test's own
    folder, so that the package's folder stays as it is. Anonymous usage statistics are not
    turned off here: the package's own flag must do it."""
    target = dataset.target
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DBT_", "ROUTERA_ARCHIVE_", "DESTINATION__", "SOURCES__"))
    }
    env.update(
        ROUTERA_ARCHIVE_DATASET=target.dataset,
        ROUTERA_ARCHIVE_DBT_SCHEMA=dataset.dbt_schema,
        ROUTERA_ARCHIVE_DUCKDB=str(target.workdir / DB_FILE),
        ROUTERA_ARCHIVE_PG_HOST=POSTGRES_HOST,
        ROUTERA_ARCHIVE_PG_PORT=str(POSTGRES_PORT),
    )
    dbt_target = dataset.workdir / "dbt_target"
    command = [
        str(DBT),
        *args,
        "--profiles-dir",
        str(DBT_DIR),
        "--project-dir",
        str(DBT_DIR),
        "--target",
        target.destination,
        "--target-path",
        str(dbt_target),
        "--log-path",
        str(dataset.workdir / "dbt_logs"),
    ]
    done = subprocess.run(
        command,
        cwd=dataset.workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=DBT_TIMEOUT_S,
    )
    results = dbt_target / "run_results.json"
    statuses = {}
    if results.exists():
        statuses = {
            result["unique_id"]: result["status"]
            for result in json.loads(results.read_text(encoding="utf-8"))["results"]
        }
        results.unlink()  # the next invocation's, or none
    manifest = json.loads((dbt_target / "manifest.json").read_text(encoding="utf-8"))
    tests = {
        uid: (
            node["test_metadata"]["name"],
            (node["sources"] or [["", ""]])[0][1] or node["refs"][0]["name"],
            node.get("column_name"),
        )
        for uid, node in manifest["nodes"].items()
        if node["resource_type"] == "test" and "test_metadata" in node
    }
    return DbtResult(done.returncode, done.stdout + done.stderr, statuses, tests)


def package_files() -> set[Path]:
    return set(DBT_DIR.rglob("*"))


def test_dbt_build_passes_on_a_dataset_the_cli_made(dataset: Dataset) -> None:
    before = package_files()
    built = dbt(dataset, "build")
    assert built.code == 0, built.output
    assert built.statuses and set(built.statuses.values()) == {"pass"}, built.statuses
    tested = {built.tests[uid][1] for uid in built.statuses}
    assert tested == DECLARED.keys() - {QUEUE_TABLE}  # every table the connector writes
    # `redactions` exists and is checked; `verifications` does not yet and is passed as such.
    assert f'"{VERIFICATIONS_TABLE}" {ABSENT}' in built.output
    assert f'"{REDACTIONS_TABLE}" {ABSENT}' not in built.output
    assert f'"{LOG_TABLE}" {ABSENT}' not in built.output
    # Nothing reached for the network: dbt's usage statistics are off by the package's flag.
    log = (dataset.workdir / "dbt_logs" / "dbt.log").read_text(encoding="utf-8")
    assert "'send_anonymous_usage_stats': 'False'" in log
    # The queue model is off by default: the queue `enqueue` made is still there as it was.
    assert "model.routera_archive.archive_queue" not in built.statuses
    [(enqueued,)] = dataset.target.query(
        "SELECT COUNT(*) FROM archive_queue WHERE request_id IS NOT NULL"
    )
    assert enqueued == 6  # enqueue's rows (with the request ids it gave), not the seed's
    assert package_files() == before  # no target/, logs/ or .user.yml in the package


def test_a_run_drains_a_queue_that_dbt_built(dataset: Dataset) -> None:
    lines = SEED.read_text(encoding="utf-8").splitlines()[1:]
    seeded = {tuple(line.split(",")[:2]) for line in lines}
    for kind, record in seeded:
        assert record in dataset.server.state.object_ids(kind, include_archived=False)

    built = dbt(
        dataset,
        "build",
        "--select",
        "archive_queue_ids+",
        "--vars",
        "routera_archive_queue_model: true",
    )
    assert built.code == 0, built.output
    assert built.statuses["model.routera_archive.archive_queue"] == "success", built.statuses
    # In the dataset's own schema, not dbt's `<target schema>_<dataset>`.
    target = dataset.target
    default_schema = f"{dataset.dbt_schema}_{target.dataset}"
    schemas = target.query(
        "SELECT table_schema FROM information_schema.tables"
        " WHERE table_name = ? AND table_schema IN (?, ?)",
        QUEUE_TABLE,
        target.dataset,
        default_schema,
    )
    assert schemas == [(target.dataset,)]
    queued = target.query("SELECT object_type, object_id, requested_by FROM archive_queue")
    assert {(kind, record) for kind, record, _ in queued} == seeded
    assert {by for _, _, by in queued} == {"dbt"}

    dataset.server.state.reset_stats()
    done = dataset.cli("run")
    assert done.code == 0, done.output
    archived = {
        (kind, record)
        for kind, records in dataset.server.state.stats()["deletes_succeeded_by_type"].items()
        for record, count in records.items()
        if count == 1
    }
    assert archived == seeded
    assert dataset.server.state.stats()["totals"]["by_method"]["DELETE"] == len(seeded)
    logged = target.query(
        "SELECT object_type, object_id, status FROM archive_log WHERE requested_by = 'dbt'"
    )
    assert sorted(logged) == sorted((kind, record, "archived") for kind, record in seeded)
    # The queue still names them, but they are settled: the next run calls nothing.
    dataset.server.state.reset_stats()
    again = dataset.cli("run")
    assert again.code == 0, again.output
    assert "DELETE" not in dataset.server.state.stats()["totals"]["by_method"]


def test_the_analyses_compile_and_answer_on_the_dataset(dataset: Dataset) -> None:
    compiled = dbt(dataset, "compile", "--select", "resource_type:analysis")
    assert compiled.code == 0, compiled.output
    folder = dataset.workdir / "dbt_target" / "compiled" / "routera_archive" / "analyses"
    files = sorted(folder.glob("*.sql"))
    assert [path.name for path in files] == sorted(analyses())
    answers = {path.name: dataset.target.query(path.read_text(encoding="utf-8")) for path in files}
    logged = dataset.target.query(
        "SELECT COALESCE(object_type, 'contacts'), COALESCE(object_id, contact_id)"
        " FROM archive_log WHERE status = 'archived'"
    )
    assert logged
    assert {(row[0], row[1]) for row in answers["01_who_archived_what.sql"]} == set(logged)
    assert answers["09_failed_runs.sql"] == []
    assert answers["10_requests_still_failing.sql"] == []


def test_the_tests_catch_a_broken_dataset(dataset: Dataset) -> None:
    done = dataset.cli("verify")
    assert done.code == 0, done.output  # and `verifications` exists from now on
    target = dataset.target
    target.execute(
        "INSERT INTO archive_log (outcome_id, request_id, status, run_id, _dlt_load_id, _dlt_id)"
        " SELECT outcome_id, request_id, 'lost', run_id, _dlt_load_id, 'tampered'"
        " FROM archive_log WHERE status = 'not_found'"
    )
    try:
        tested = dbt(dataset, "test", "--select", "source:routera_archive")
    finally:
        target.execute("DELETE FROM archive_log WHERE _dlt_id = 'tampered'")
    assert tested.code == 1, tested.output
    assert tested.failed() == {
        ("unique", LOG_TABLE, "outcome_id"),
        ("accepted_values", LOG_TABLE, "status"),
    }, tested.output
    assert ABSENT not in tested.output  # `verifications` too was checked for real
