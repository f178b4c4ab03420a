"""`pipeline.run(routera_archive())` in a dlt user's own pipeline drains that dataset's queue,
with the run's guarantees, on DuckDB and PostgreSQL: a queue made by SQL, each record archived
once, a second run sends no DELETE, a guardrail's refusal raises and sends nothing."""

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dlt
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from routera_archive.dataset.lock import dataset_lock
from routera_archive.errors import ConfigurationError, GuardrailRefused, RunLockedError
from routera_archive.journal import OutcomeJournal
from routera_archive.models import ArchiveRequest
from routera_archive.source import routera_archive
from routera_archive_sandbox import SandboxServer
from tests.conftest import TWINNED, source_config
from tests.pipeline.test_recovery import archive_without_loading
from tests.pipeline.test_run import active_ids, deletes, query


@pytest.fixture
def user_pipeline(destination: str, tmp_path: Path) -> Iterator[dlt.Pipeline]:
    """A pipeline as a dlt user makes one: their own name, folder and dataset."""
    dataset = f"ra_user_{uuid.uuid4().hex[:8]}"
    target: Any = (
        dlt.destinations.duckdb(str(tmp_path / "user.duckdb"))
        if destination == "duckdb"
        else "postgres"
    )
    pipe = dlt.pipeline(
        pipeline_name=f"my_pipeline_{uuid.uuid4().hex[:6]}",
        destination=target,
        dataset_name=dataset,
        pipelines_dir=str(tmp_path / "my_pipelines"),
    )
    yield pipe
    if destination == "postgres":
        with pipe.sql_client() as client:
            for name in (dataset, f"{dataset}_staging"):
                client.execute_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def queue_by_sql(pipeline: dlt.Pipeline, ids: list[str]) -> None:
    """The queue an analytics engineer's own SQL makes: a schema, a table, rows."""
    with pipeline.sql_client() as client:
        client.create_dataset()
        table = client.make_qualified_table_name("archive_queue")
        client.execute_sql(
            f"CREATE TABLE {table} (request_id TEXT, contact_id TEXT, requested_by TEXT, "
            "reason TEXT)"
        )
        for number, contact_id in enumerate(ids):
            client.execute_sql(
                f"INSERT INTO {table} VALUES (%s, %s, 'dbt', 'gdpr')", f"r{number}", contact_id
            )


def test_the_source_drains_the_queue_once_and_a_second_run_sends_nothing(
    user_pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    ids = active_ids(sandbox_server, 12)
    queue_by_sql(user_pipeline, [*ids, ids[0], "no-such-id"])
    config = source_config(sandbox_server)

    user_pipeline.run(routera_archive(config=config))

    assert deletes(sandbox_server) == 13  # 12 records and the unknown id, once each
    assert set(sandbox_server.state.stats()["deletes_succeeded"].values()) == {1}
    statuses = query(
        user_pipeline,
        "SELECT status, COUNT(*) FROM {dataset}.archive_log GROUP BY 1 ORDER BY 1",
    )
    assert statuses == [("archived", 12), ("duplicate", 1), ("not_found", 1)]
    audit = query(user_pipeline, "SELECT id, requested_by, reason FROM {dataset}.contact_archives")
    assert sorted(audit) == sorted((cid, "dbt", "gdpr") for cid in ids)
    runs = query(user_pipeline, "SELECT mode, exit_code, counts FROM {dataset}.archive_runs")
    assert [(mode, code) for mode, code, _ in runs] == [("run", 0)]

    user_pipeline.run(routera_archive(config=config))

    assert deletes(sandbox_server) == 13
    assert len(query(user_pipeline, "SELECT run_id FROM {dataset}.archive_runs")) == 2
    logged = query(user_pipeline, "SELECT COUNT(*) FROM {dataset}.archive_log")
    assert logged == [(14,)]


def test_over_max_archives_the_source_raises_and_sends_nothing(
    user_pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    queue_by_sql(user_pipeline, active_ids(sandbox_server, 5))
    before = sandbox_server.state.stats()["totals"]["requests"]

    with pytest.raises(PipelineStepFailed) as failed:
        user_pipeline.run(routera_archive(config=source_config(sandbox_server), max_archives=3))

    cause = failed.value.__cause__
    while cause is not None and not isinstance(cause, GuardrailRefused):
        cause = cause.__cause__
    assert isinstance(cause, GuardrailRefused), failed.value
    assert "max_archives" in str(cause)
    assert sandbox_server.state.stats()["totals"]["requests"] == before  # not even a token
    assert deletes(sandbox_server) == 0

    user_pipeline.run(routera_archive(config=source_config(sandbox_server), force=True))
    assert deletes(sandbox_server) == 5
    # Only the forced run's row: the refusal's, raised inside dlt's extract, is not loaded,
    # then or later (README, "A refused run leaves no row").
    assert query(user_pipeline, "SELECT exit_code FROM {dataset}.archive_runs") == [(0,)]


@pytest.mark.parametrize("destination", TWINNED, indirect=True)
def test_a_crashed_run_s_journal_counts_neither_as_pending_nor_toward_max_archives(
    user_pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    """The CLI's run loads a crashed run's journal before it counts the queue; the source hands
    those outcomes to its extract instead, so the queue still holds their requests as pending.
    They are settled: counted, they would be refused by a max_archives the rest is within, and
    the run's row would say it found them pending."""
    ids = active_ids(sandbox_server, 5)
    queue_by_sql(user_pipeline, ids)
    crashed = [ArchiveRequest(request_id=f"r{n}", object_id=cid) for n, cid in enumerate(ids[:3])]
    journal = OutcomeJournal(Path(user_pipeline.working_dir) / "journal", "crashed-run")
    for outcome in archive_without_loading(sandbox_server, crashed):
        journal.append(outcome)
    journal.close()

    user_pipeline.run(routera_archive(config=source_config(sandbox_server), max_archives=2))

    assert deletes(sandbox_server) == 5  # the journal's three, then the two left, once each
    runs = query(
        user_pipeline, "SELECT run_id, pending_at_start, guardrail FROM {dataset}.archive_runs"
    )
    assert len(runs) == 1 and runs[0][1:] == (2, "passed: 2 to handle, max_archives 2")
    logged = query(
        user_pipeline,
        "SELECT run_id = 'crashed-run', COUNT(*) FROM {dataset}.archive_log GROUP BY 1 ORDER BY 1",
    )
    assert logged == [(False, 2), (True, 3)]


def test_every_type_gets_its_table_and_its_records_whatever_the_chunks(
    user_pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    contacts = active_ids(sandbox_server, 3)
    companies = sandbox_server.state.object_ids("companies", include_archived=False)[:2]
    with user_pipeline.sql_client() as client:
        client.create_dataset()
        table = client.make_qualified_table_name("archive_queue")
        client.execute_sql(f"CREATE TABLE {table} (object_type TEXT, object_id TEXT)")
        for kind, ids in (("contacts", contacts), ("companies", companies)):
            for object_id in ids:
                client.execute_sql(f"INSERT INTO {table} VALUES (%s, %s)", kind, object_id)

    # One outcome a chunk: the first chunks' rows make the empty tables of the other types.
    user_pipeline.run(routera_archive(config=source_config(sandbox_server, chunk_size=1)))

    archived = {
        table: sorted(row[0] for row in query(user_pipeline, f"SELECT id FROM {{dataset}}.{table}"))
        for table in ("contact_archives", "company_archives", "deal_archives", "ticket_archives")
    }
    assert archived == {
        "contact_archives": sorted(contacts),
        "company_archives": sorted(companies),
        "deal_archives": [],
        "ticket_archives": [],
    }
    assert deletes(sandbox_server) == 5


def test_the_dataset_stays_locked_until_the_rows_are_loaded(
    user_pipeline: dlt.Pipeline, sandbox_server: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the extract and the load the requests are still pending in the destination: a
    run let in then would call them again. The lock is held until dlt's run ends."""
    queue_by_sql(user_pipeline, active_ids(sandbox_server, 3))
    seen_at_load: list[str] = []
    load = dlt.Pipeline.load

    def load_and_probe(self: dlt.Pipeline, *args: Any, **kwargs: Any) -> Any:
        probe = dataset_lock(self, "probe", None)
        try:
            probe.acquire()
        except RunLockedError as exc:
            seen_at_load.append(str(exc))
        else:
            probe.release()
            seen_at_load.append("free")
        return load(self, *args, **kwargs)

    monkeypatch.setattr(dlt.Pipeline, "load", load_and_probe)
    user_pipeline.run(routera_archive(config=source_config(sandbox_server)))

    assert len(seen_at_load) == 1 and "another run holds" in seen_at_load[0], seen_at_load
    after = dataset_lock(user_pipeline, "after", None)
    after.acquire()  # free once the run is over
    after.release()
    assert deletes(sandbox_server) == 3


# The options are the runner's own (`RunOptions`), handed over as they are: their SQL and loads
# are the runs above on each destination, so their PostgreSQL cases are twins.
@pytest.mark.parametrize("destination", TWINNED, indirect=True)
def test_dry_run_as_a_source_argument_archives_nothing_and_records_its_run(
    user_pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    ids = active_ids(sandbox_server, 4)
    queue_by_sql(user_pipeline, ids)
    config = source_config(sandbox_server)

    user_pipeline.run(routera_archive(config=config, dry_run=True))

    assert deletes(sandbox_server) == 0
    assert query(user_pipeline, "SELECT mode FROM {dataset}.archive_runs") == [("dry-run",)]
    user_pipeline.run(routera_archive(config=config))
    assert deletes(sandbox_server) == 4


@pytest.mark.parametrize("destination", TWINNED, indirect=True)
def test_limit_as_a_source_argument_leaves_the_rest_for_the_next_run(
    user_pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    ids = active_ids(sandbox_server, 5)
    queue_by_sql(user_pipeline, ids)
    config = source_config(sandbox_server)

    user_pipeline.run(routera_archive(config=config, limit=2))

    assert deletes(sandbox_server) == 2
    assert len(query(user_pipeline, "SELECT id FROM {dataset}.contact_archives")) == 2
    user_pipeline.run(routera_archive(config=config))
    assert deletes(sandbox_server) == 5
    assert set(sandbox_server.state.stats()["deletes_succeeded"].values()) == {1}


@pytest.mark.parametrize("destination", TWINNED, indirect=True)
def test_shards_as_a_source_argument_split_the_queue_and_say_which_they_ran(
    user_pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    ids = active_ids(sandbox_server, 12)
    queue_by_sql(user_pipeline, ids)
    config = source_config(sandbox_server)

    user_pipeline.run(routera_archive(config=config, shard="0/2"))
    first = set(sandbox_server.state.stats()["deletes_succeeded"])
    user_pipeline.run(routera_archive(config=config, shard="1/2"))
    both = sandbox_server.state.stats()["deletes_succeeded"]

    assert 0 < len(first) < len(ids)  # the first worker took its share, not all
    assert sorted(both) == sorted(ids) and set(both.values()) == {1}
    shards = query(user_pipeline, "SELECT shard FROM {dataset}.archive_runs ORDER BY started_at")
    assert shards == [("0/2",), ("1/2",)]


def test_a_shard_that_is_not_i_of_n_is_a_configuration_error_before_any_call(
    sandbox_server: SandboxServer,
) -> None:
    for text in ("2/2", "one/two", "0/0"):
        with pytest.raises(ConfigurationError, match="shard"):
            routera_archive(config=source_config(sandbox_server), shard=text)
    assert sandbox_server.state.stats()["totals"]["requests"] == 0


def test_a_run_id_for_a_queue_run_is_a_configuration_error_before_any_call(
    sandbox_server: SandboxServer,
) -> None:
    """A queue run names itself: its id keys its journal, its lock and its `archive_runs` row
    (insert-only on it), so a chosen one, used twice, would lose a run's account."""
    with pytest.raises(ConfigurationError, match="run_id"):
        routera_archive(config=source_config(sandbox_server), run_id="nightly")
    assert sandbox_server.state.stats()["totals"]["requests"] == 0


def test_settings_from_the_environment_are_the_runner_s(
    user_pipeline: dlt.Pipeline, sandbox_server: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No `config`: the source reads `SOURCES__ROUTERA__*` as the CLI does, its guardrail
    included."""
    queue_by_sql(user_pipeline, active_ids(sandbox_server, 4))
    for name, value in {
        "BASE_URL": sandbox_server.url,
        "CLIENT_ID": sandbox_server.config.client_id,
        "CLIENT_SECRET": sandbox_server.config.client_secret,
        "RPS": "0",
        "MAX_ARCHIVES": "3",
    }.items():
        monkeypatch.setenv(f"SOURCES__ROUTERA__{name}", value)

    with pytest.raises(PipelineStepFailed, match="max_archives"):
        user_pipeline.run(routera_archive())
    assert deletes(sandbox_server) == 0

    monkeypatch.setenv("SOURCES__ROUTERA__MAX_ARCHIVES", "4")
    user_pipeline.run(routera_archive())
    assert deletes(sandbox_server) == 4


# DuckDB only: in a user's own PostgreSQL pipeline dlt makes `_dlt_id` unique, so there such a
# resume fails on the constraint instead (and the source's own resume, finish_pending_packages,
# is what tests/e2e/test_source_crash.py kills on both).
@pytest.mark.parametrize("destination", ["duckdb"], indirect=True)
def test_rows_a_resume_by_dlt_alone_loaded_twice_are_collapsed_by_the_next_source_run(
    user_pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    """A source made before its pipeline was active (dagster-dlt's) leaves a killed package to
    dlt's own resume, which can insert a job's rows twice (the same `_dlt_id`): the next run of
    the source keeps one of each before it reads what is pending."""
    ids = active_ids(sandbox_server, 3)
    queue_by_sql(user_pipeline, ids)
    config = source_config(sandbox_server)
    user_pipeline.run(routera_archive(config=config))
    for table in ("contact_archives", "archive_log"):
        with user_pipeline.sql_client() as client:
            qualified = client.make_qualified_table_name(table)
            client.execute_sql(f"INSERT INTO {qualified} SELECT * FROM {qualified}")
    doubled = "SELECT COUNT(*), COUNT(DISTINCT _dlt_id) FROM {dataset}.%s"
    assert query(user_pipeline, doubled % "contact_archives") == [(6, 3)]

    user_pipeline.run(routera_archive(config=config))

    assert query(user_pipeline, doubled % "contact_archives") == [(3, 3)]
    assert query(user_pipeline, doubled % "archive_log") == [(3, 3)]
    assert deletes(sandbox_server) == 3


def test_the_source_is_made_without_settings_and_reads_them_when_it_runs(
    user_pipeline: dlt.Pipeline, sandbox_server: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scheduler loads its definitions (dagster-dlt's `@dlt_assets(dlt_source=...)`) where
    the run's credentials may not be: the source is made then, and its settings are read when
    it runs: missing, a typed error before any call; present by then, they are used."""
    queue_by_sql(user_pipeline, active_ids(sandbox_server, 2))
    made_early = routera_archive()  # no SOURCES__ROUTERA__* yet: no error here

    with pytest.raises(PipelineStepFailed) as failed:
        user_pipeline.run(made_early)
    cause: BaseException | None = failed.value
    while cause is not None and not isinstance(cause, ConfigurationError):
        cause = cause.__cause__
    assert isinstance(cause, ConfigurationError), failed.value
    assert sandbox_server.state.stats()["totals"]["requests"] == 0

    for name, value in {
        "BASE_URL": sandbox_server.url,
        "CLIENT_ID": sandbox_server.config.client_id,
        "CLIENT_SECRET": sandbox_server.config.client_secret,
        "RPS": "0",
    }.items():
        monkeypatch.setenv(f"SOURCES__ROUTERA__{name}", value)
    user_pipeline.run(routera_archive())
    assert deletes(sandbox_server) == 2
