"""A run from queue to audit trail, through a real sandbox, on DuckDB and PostgreSQL."""

import json
import time
import uuid
from typing import Any

import dlt
import httpx
import pytest

from routera_archive.dataset.enqueue import enqueue
from routera_archive.errors import ExitCode
from routera_archive.names import SOURCE_NAME
from routera_archive.run.runner import ArchiveRun, RunOptions, RunReport
from routera_archive_pipelines.factory import make_pipeline
from routera_archive_sandbox import SandboxServer
from tests.conftest import TWINNED, source_config


def run(pipeline: dlt.Pipeline, server: SandboxServer, **options: Any) -> RunReport:
    config_overrides = {
        k: options.pop(k) for k in list(options) if k in ("max_archives", "max_share")
    }
    return ArchiveRun(
        pipeline, source_config(server, **config_overrides), RunOptions(**options)
    ).execute()


def query(pipeline: dlt.Pipeline, sql: str) -> list[tuple[Any, ...]]:
    with pipeline.sql_client() as client:
        sql = sql.replace("{dataset}", client.fully_qualified_dataset_name())
        return [tuple(row) for row in client.execute_sql(sql) or []]


def insert_queue_row(pipeline: dlt.Pipeline, contact_id: str | None) -> None:
    """Write a queue row the way plain SQL would, bypassing enqueue's validation."""
    with pipeline.sql_client() as client:
        table = client.make_qualified_table_name("archive_queue")
        client.execute_sql(
            f"INSERT INTO {table} (contact_id, _dlt_load_id, _dlt_id) VALUES (%s, %s, %s)",
            contact_id,
            "by-hand",
            uuid.uuid4().hex,
        )


# Tables of the pipeline's dataset, on DuckDB and PostgreSQL alike.
TABLES_SQL = "SELECT table_name FROM information_schema.tables WHERE table_schema = '{dataset}'"


def active_ids(server: SandboxServer, count: int) -> list[str]:
    return server.state.contact_ids(include_archived=False)[:count]


def deletes(server: SandboxServer) -> int:
    return int(server.state.stats()["totals"]["by_method"].get("DELETE", 0))


def test_run_archives_every_queued_contact_into_a_typed_audit_trail(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    ids = active_ids(sandbox_server, 12)
    enqueue(pipeline, [{"contact_id": cid} for cid in ids], requested_by="ops", reason="gdpr")

    report = run(pipeline, sandbox_server)

    assert report.exit_code == ExitCode.OK, report.error
    assert report.counts == {"archived": 12}
    rows = query(
        pipeline,
        "SELECT id, archived, archived_by, requested_by, reason, recovered, raw_response "
        "FROM {dataset}.contact_archives",
    )
    assert sorted(r[0] for r in rows) == sorted(ids)
    for contact_id, archived, archived_by, requested_by, reason, recovered, raw in rows:
        body = json.loads(raw)
        assert body["id"] == contact_id
        assert archived.isoformat().startswith(body["archived"][:19])
        assert archived_by == body["archived_by"] == sandbox_server.config.client_id
        assert (requested_by, reason, recovered) == ("ops", "gdpr", False)
    assert sandbox_server.state.stats()["deletes_succeeded"] == dict.fromkeys(ids, 1)

    columns = pipeline.schemas[SOURCE_NAME].get_table_columns("contact_archives")
    assert columns["archived"]["data_type"] == "timestamp"
    assert not [name for name in columns if name.startswith("archived__v")]
    log = query(pipeline, "SELECT status, http_status, run_id FROM {dataset}.archive_log")
    assert {(s, h, r) for s, h, r in log} == {("archived", 200, report.run_id)}
    runs = query(pipeline, "SELECT run_id, mode, exit_code FROM {dataset}.archive_runs")
    assert runs == [(report.run_id, "run", 0)]


def test_a_second_run_makes_no_call_and_writes_no_duplicate(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    ids = active_ids(sandbox_server, 5)
    enqueue(pipeline, [{"contact_id": cid} for cid in ids])
    assert run(pipeline, sandbox_server).exit_code == ExitCode.OK
    calls_before = sandbox_server.state.stats()["totals"]["requests"]

    second = run(pipeline, sandbox_server)

    assert second.exit_code == ExitCode.OK
    assert second.handled == 0
    assert second.pending_at_start == 0
    assert sandbox_server.state.stats()["totals"]["requests"] == calls_before
    assert query(pipeline, "SELECT COUNT(*) FROM {dataset}.contact_archives") == [(5,)]
    assert query(pipeline, "SELECT COUNT(*) FROM {dataset}.archive_log") == [(5,)]


@pytest.mark.parametrize("destination", TWINNED, indirect=True)
def test_the_same_contact_pending_three_times_is_archived_once(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    contact = active_ids(sandbox_server, 1)[0]
    enqueue(pipeline, [{"contact_id": contact}] * 3)

    report = run(pipeline, sandbox_server)

    assert report.counts == {"archived": 1, "duplicate": 2}
    assert deletes(sandbox_server) == 1
    rows = query(pipeline, "SELECT request_id, status, duplicate_of FROM {dataset}.archive_log")
    archived = [r for r in rows if r[1] == "archived"]
    duplicates = [r for r in rows if r[1] == "duplicate"]
    assert len(archived) == 1 and len(duplicates) == 2
    assert all(dup[2] == archived[0][0] for dup in duplicates)


@pytest.mark.parametrize("destination", TWINNED, indirect=True)
def test_a_contact_requested_again_later_is_not_deleted_again(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    contact = active_ids(sandbox_server, 1)[0]
    enqueue(pipeline, [{"contact_id": contact}])
    run(pipeline, sandbox_server)
    enqueue(pipeline, [{"contact_id": contact}])

    report = run(pipeline, sandbox_server)

    assert report.counts == {"duplicate": 1}
    assert deletes(sandbox_server) == 1
    assert query(pipeline, "SELECT COUNT(*) FROM {dataset}.contact_archives") == [(1,)]


def test_a_queue_made_with_plain_sql_and_only_contact_id_works(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    ids = active_ids(sandbox_server, 3)
    with pipeline.sql_client() as client:
        client.create_dataset()
        table = client.make_qualified_table_name("archive_queue")
        client.execute_sql(f"CREATE TABLE {table} (contact_id VARCHAR(300))")
        for value in [*ids, ids[0], "", None, "no-such-contact"]:
            client.execute_sql(f"INSERT INTO {table} (contact_id) VALUES (%s)", value)

    report = run(pipeline, sandbox_server)

    # ids[0] twice shares the derived request id `cid:<id>`: one request, archived once.
    assert report.counts == {"archived": 3, "invalid": 2, "not_found": 1}
    assert deletes(sandbox_server) == 4
    request_ids = {r[0] for r in query(pipeline, "SELECT request_id FROM {dataset}.archive_log")}
    assert {f"cid:{cid}" for cid in ids} <= request_ids
    assert run(pipeline, sandbox_server).handled == 0


def test_a_contact_archived_elsewhere_is_recovered_with_get(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    contact = active_ids(sandbox_server, 1)[0]
    sandbox_server.state.archive_contact(contact, archived_by="someone-in-the-ui")
    enqueue(pipeline, [{"contact_id": contact}])

    report = run(pipeline, sandbox_server)

    assert report.counts == {"already_archived": 1}
    rows = query(
        pipeline,
        "SELECT archived_by, recovered, record_source FROM {dataset}.contact_archives",
    )
    assert rows == [("someone-in-the-ui", True, "get")]
    assert query(pipeline, "SELECT status, http_status FROM {dataset}.archive_log") == [
        ("already_archived", 404)
    ]


def test_new_custom_fields_become_columns_and_are_reported(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    first = active_ids(sandbox_server, 2)
    enqueue(pipeline, [{"contact_id": cid} for cid in first])
    run(pipeline, sandbox_server)
    token = httpx.post(
        f"{sandbox_server.url}/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": sandbox_server.config.client_id,
            "client_secret": sandbox_server.config.client_secret,
        },
    ).json()["access_token"]
    created = httpx.post(
        f"{sandbox_server.url}/contacts",
        json={"fields": {"email": "new@example.com", "loyalty_tier": "gold", "visits": 3}},
        headers={"Authorization": f"Bearer {token}"},
    ).json()
    enqueue(pipeline, [{"contact_id": created["id"]}])

    report = run(pipeline, sandbox_server)

    assert report.counts == {"archived": 1}
    assert {"loyalty_tier", "visits"} <= set(report.new_columns["contact_archives"])
    rows = query(
        pipeline,
        "SELECT loyalty_tier, visits FROM {dataset}.contact_archives WHERE id = "
        f"'{created['id']}'",
    )
    assert rows == [("gold", 3)]


@pytest.mark.parametrize("destination", TWINNED, indirect=True)
def test_dry_run_archives_nothing_and_writes_only_its_run_row(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    ids = active_ids(sandbox_server, 4)
    enqueue(pipeline, [{"contact_id": cid} for cid in [*ids, ids[0], "a\tb"]], skip_invalid=True)
    insert_queue_row(pipeline, "a\tb")

    report = run(pipeline, sandbox_server, dry_run=True)

    assert report.exit_code == ExitCode.OK
    assert report.plan_counts == {"archive": 4, "duplicate": 1, "invalid": 1}
    # One read-only call: the share check a real run would make (and the token it needs).
    assert sandbox_server.state.stats()["totals"]["by_method"] == {"POST": 1, "GET": 1}
    assert query(pipeline, "SELECT mode FROM {dataset}.archive_runs") == [("dry-run",)]
    assert run(pipeline, sandbox_server).counts["archived"] == 4


@pytest.mark.parametrize("destination", TWINNED, indirect=True)
def test_a_queue_over_max_archives_is_refused_before_any_call(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    enqueue(pipeline, [{"contact_id": cid} for cid in active_ids(sandbox_server, 6)])

    refused = run(pipeline, sandbox_server, max_archives=5)

    assert refused.exit_code == ExitCode.GUARDRAIL
    assert refused.guardrail.startswith("refused")
    assert sandbox_server.state.stats()["totals"]["requests"] == 0
    forced = run(pipeline, sandbox_server, max_archives=5, force=True)
    assert forced.exit_code == ExitCode.OK and forced.counts == {"archived": 6}


@pytest.mark.parametrize("destination", TWINNED, indirect=True)
def test_a_run_that_would_archive_most_of_the_account_is_refused(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    everyone = sandbox_server.state.contact_ids(include_archived=False)
    enqueue(pipeline, [{"contact_id": cid} for cid in everyone])

    refused = run(pipeline, sandbox_server, max_share=0.5)

    assert refused.exit_code == ExitCode.GUARDRAIL
    assert "active contacts" in refused.guardrail
    assert deletes(sandbox_server) == 0


@pytest.mark.parametrize("destination", TWINNED, indirect=True)
def test_limit_handles_only_that_many_and_leaves_the_rest_pending(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    enqueue(pipeline, [{"contact_id": cid} for cid in active_ids(sandbox_server, 7)])

    first = run(pipeline, sandbox_server, limit=3)
    second = run(pipeline, sandbox_server)

    assert (first.handled, second.pending_at_start, second.handled) == (3, 4, 4)
    assert deletes(sandbox_server) == 7


@pytest.mark.parametrize("destination", TWINNED, indirect=True)
@pytest.mark.parametrize("chunk_size", [1, 4])
def test_chunks_load_every_outcome_exactly_once(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer, chunk_size: int
) -> None:
    ids = active_ids(sandbox_server, 9)
    enqueue(pipeline, [{"contact_id": cid} for cid in ids])
    config = source_config(sandbox_server, chunk_size=chunk_size)

    report = ArchiveRun(pipeline, config, RunOptions()).execute()

    assert report.counts == {"archived": 9}
    assert query(
        pipeline, "SELECT COUNT(DISTINCT request_id), COUNT(*) FROM {dataset}.archive_log"
    ) == [(9, 9)]
    assert query(
        pipeline, "SELECT COUNT(DISTINCT id), COUNT(*) FROM {dataset}.contact_archives"
    ) == [(9, 9)]


@pytest.mark.parametrize("destination", TWINNED, indirect=True)
def test_no_queue_table_is_a_clear_error_and_calls_nothing(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    report = run(pipeline, sandbox_server)

    assert report.exit_code == 2
    assert "no queue table `archive_queue`" in (report.error or "")
    assert sandbox_server.state.stats()["totals"]["requests"] == 0


@pytest.mark.parametrize("destination", TWINNED, indirect=True)
def test_bad_credentials_stop_the_run_with_exit_2_and_archive_nothing(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    enqueue(pipeline, [{"contact_id": cid} for cid in active_ids(sandbox_server, 3)])
    config = source_config(sandbox_server, client_secret="wrong-secret-value", max_share=0)

    report = ArchiveRun(pipeline, config, RunOptions()).execute()

    assert report.exit_code == 2
    assert "wrong-secret-value" not in (report.error or "")
    assert deletes(sandbox_server) == 0
    assert report.handled == 0


def test_an_unreachable_warehouse_is_a_clear_failure_before_any_call(
    sandbox_server: SandboxServer, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing listens on port 1: connecting fails at once.
    monkeypatch.setenv(
        "DESTINATION__POSTGRES__CREDENTIALS", "postgresql://postgres:x@127.0.0.1:1/test"
    )
    pipeline = make_pipeline("postgres", "unreachable", pipelines_dir=tmp_path / "p")

    report = run(pipeline, sandbox_server)

    assert report.exit_code == 1
    assert report.outcome == "stopped: the destination is unavailable; nothing was done"
    assert report.error is not None and report.error.startswith(
        "the destination is unreachable: connection to server at"
    )
    assert "\n" not in report.error
    assert sandbox_server.state.stats()["totals"]["requests"] == 0


@pytest.mark.parametrize("destination", TWINNED, indirect=True)
def test_a_long_run_forgets_loaded_contacts_yet_never_calls_a_contact_twice(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small pages and chunks, so that loads land between page queries: each contact's later
    requests (on later pages) are duplicates found by SQL once the first is loaded and
    forgotten, or by the run's memory before; no contact gets a second DELETE either way."""
    import routera_archive.run.runner as runner

    monkeypatch.setattr(runner, "QUEUE_PAGE_SIZE", 4)
    forgotten: list[int] = []
    forget = runner._forget_loaded

    def counting_forget(handled: dict[Any, str], loaded: list[Any], recognised: Any) -> Any:
        before = len(handled)
        kept = forget(handled, loaded, recognised)
        forgotten.append(before - len(handled))
        return kept

    monkeypatch.setattr(runner, "_forget_loaded", counting_forget)
    ids = active_ids(sandbox_server, 16)
    # Request ids sort in this order: every contact first as `a-..`, again as `z-..` (pages
    # later), and a contact that does not exist twice.
    rows = [{"contact_id": cid, "request_id": f"a-{n:02d}"} for n, cid in enumerate(ids)]
    rows += [{"contact_id": cid, "request_id": f"z-{n:02d}"} for n, cid in enumerate(ids)]
    rows += [{"contact_id": "no-such-contact", "request_id": r} for r in ("b-00", "y-00")]
    enqueue(pipeline, rows)

    report = ArchiveRun(
        pipeline, source_config(sandbox_server, chunk_size=2, concurrency=2), RunOptions()
    ).execute()

    assert report.exit_code == ExitCode.OK, report.error
    assert report.counts == {"archived": 16, "not_found": 1, "duplicate": 17}
    assert sandbox_server.state.stats()["deletes_succeeded"] == dict.fromkeys(ids, 1)
    assert deletes(sandbox_server) == 17
    assert sum(forgotten) > 0, "no loaded contact was ever forgotten: the test proves nothing"
    log = dict(query(pipeline, "SELECT request_id, duplicate_of FROM {dataset}.archive_log"))
    assert {log[f"z-{n:02d}"] for n in range(16)} == {f"a-{n:02d}" for n in range(16)}
    assert log["y-00"] == "b-00"


@pytest.mark.parametrize("destination", TWINNED, indirect=True)
def test_with_a_log_but_no_archives_yet_the_run_remembers_every_contact(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dataset whose earlier runs archived nothing has `archive_log` but no
    `contact_archives`: the queue's SQL then drops a loaded first request as terminal without
    seeing its contact archived, so the run must not forget it. (A run of this release makes
    every type's table at its first load; the previous release left such datasets: its load of
    a run that archived nothing, the log alone, is made here.)"""
    import routera_archive.run.runner as runner
    from routera_archive.dataset.loading import load_fresh
    from routera_archive.dataset.rows import log_row
    from routera_archive.dataset.tables import AuditRows, audit_trail
    from routera_archive.models import ArchiveOutcome, ArchiveRequest, Status

    enqueue(pipeline, [{"contact_id": "no-such-contact", "request_id": "0-first-run"}])
    request = ArchiveRequest(request_id="0-first-run", contact_id="no-such-contact")
    not_found = ArchiveOutcome(request=request, status=Status.NOT_FOUND, http_status=404)
    load_fresh(pipeline, audit_trail(AuditRows({}, [log_row(not_found, "r-0")], [])))
    tables = {
        name.lower()
        for (name,) in query(
            pipeline,
            "SELECT table_name FROM information_schema.tables "
            f"WHERE table_schema = '{pipeline.dataset_name}'",
        )
    }
    assert "archive_log" in tables
    assert "contact_archives" not in tables, "the setup this test needs did not happen"

    monkeypatch.setattr(runner, "QUEUE_PAGE_SIZE", 4)
    ids = active_ids(sandbox_server, 12)
    rows = [{"contact_id": cid, "request_id": f"a-{n:02d}"} for n, cid in enumerate(ids)]
    rows += [{"contact_id": cid, "request_id": f"z-{n:02d}"} for n, cid in enumerate(ids)]
    enqueue(pipeline, rows)
    before = deletes(sandbox_server)

    report = ArchiveRun(
        pipeline, source_config(sandbox_server, chunk_size=2, concurrency=2), RunOptions()
    ).execute()

    assert report.exit_code == ExitCode.OK, report.error
    assert report.counts == {"archived": 12, "duplicate": 12}
    assert deletes(sandbox_server) - before == 12
    assert sandbox_server.state.stats()["deletes_succeeded"] == dict.fromkeys(ids, 1)


def test_postgres_tables_carry_no_unique_constraint_a_resumed_package_would_trip(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer, destination: str
) -> None:
    """dlt makes UNIQUE/PRIMARY KEY constraints from its hints on PostgreSQL only; a package
    resumed after a kill re-inserts rows it had committed, which must not fail (the copies are
    collapsed). tests/e2e/test_crash.py kills a run at exactly that point."""
    if destination != "postgres":
        pytest.skip("constraints from dlt's hints exist on PostgreSQL only")
    enqueue(pipeline, [{"contact_id": cid} for cid in active_ids(sandbox_server, 3)])
    assert run(pipeline, sandbox_server).exit_code == ExitCode.OK

    constraints = query(
        pipeline,
        "SELECT table_schema, table_name, constraint_type "
        "FROM information_schema.table_constraints "
        f"WHERE table_schema LIKE '{pipeline.dataset_name}%' "
        "AND constraint_type IN ('UNIQUE', 'PRIMARY KEY')",
    )
    schemas = {
        schema
        for (schema,) in query(
            pipeline,
            "SELECT table_schema FROM information_schema.tables "
            f"WHERE table_schema LIKE '{pipeline.dataset_name}%'",
        )
    }
    assert schemas == {pipeline.dataset_name, f"{pipeline.dataset_name}_staging"}
    assert constraints == []


@pytest.mark.parametrize("destination", TWINNED, indirect=True)
def test_a_request_added_mid_run_for_a_forgotten_contact_is_a_duplicate(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first run: once a contact's record is loaded the run forgets it, and a request for it
    added to the queue meanwhile with an *earlier* `requested_at` (so the SQL would call it
    the contact's first) must still find the archived record, not get a second DELETE."""
    import routera_archive.dataset.queue as queue_module
    import routera_archive.run.runner as runner

    monkeypatch.setattr(runner, "QUEUE_PAGE_SIZE", 4)
    ids = active_ids(sandbox_server, 40)
    target = ids[0]
    state = {"forgotten": False, "inserted": False}
    forget = runner._forget_loaded

    def watching_forget(handled: dict[Any, str], loaded: list[Any], recognised: Any) -> Any:
        kept = forget(handled, loaded, recognised)
        key = ("contacts", target)
        if key not in handled and any(record == key for record, _ in loaded):
            state["forgotten"] = True
        return kept

    read_pages = queue_module.PendingQueue._read_pages

    def pages_with_a_late_request(self: Any, client: Any, base: str, size: int) -> Any:
        for page in read_pages(self, client, base, size):
            yield page
            if state["inserted"]:
                continue  # the late request is in: the pages after it need no slow warehouse
            time.sleep(0.2)  # a slow warehouse: chunks load between page queries
            if state["forgotten"] and not state["inserted"]:  # as another process's SQL would
                with client:
                    client.execute_sql(
                        f"INSERT INTO {client.make_qualified_table_name('archive_queue')} "
                        "(contact_id, request_id, requested_at, _dlt_load_id, _dlt_id) VALUES "
                        "(%s, 'z-late', TIMESTAMP '2000-01-01 00:00:00', 'by-hand', %s)",
                        target,
                        uuid.uuid4().hex,
                    )
                state["inserted"] = True

    monkeypatch.setattr(runner, "_forget_loaded", watching_forget)
    monkeypatch.setattr(queue_module.PendingQueue, "_read_pages", pages_with_a_late_request)
    rows = [{"contact_id": target, "request_id": "a-00"}]
    rows += [{"contact_id": cid, "request_id": f"b-{n:02d}"} for n, cid in enumerate(ids[1:])]
    enqueue(pipeline, rows)

    report = ArchiveRun(
        pipeline,
        source_config(sandbox_server, chunk_size=2, concurrency=2, max_share=0),
        RunOptions(),
    ).execute()

    assert state["inserted"], f"the contact was never forgotten: the test proves nothing {report}"
    assert report.exit_code == ExitCode.OK, report.error
    assert report.counts == {"archived": 40, "duplicate": 1}
    assert deletes(sandbox_server) == 40
    log = dict(query(pipeline, "SELECT request_id, duplicate_of FROM {dataset}.archive_log"))
    assert log["z-late"] == "a-00"
