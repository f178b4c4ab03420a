"""What a crashed or broken run leaves behind is loaded by the next one, and nothing is re-sent."""

import asyncio
import json
from pathlib import Path

import dlt
import httpx
import pytest
import respx

from routera_archive.calls.archiver import archive_request
from routera_archive.dataset.enqueue import enqueue
from routera_archive.dataset.loading import load_pending_packages
from routera_archive.dataset.queue import PendingQueue
from routera_archive.dataset.tables import audit_trail, build_audit_rows
from routera_archive.errors import ExitCode
from routera_archive.http.client import RouteraClient
from routera_archive.journal import OutcomeJournal
from routera_archive.models import ArchiveOutcome
from routera_archive.run.runner import ArchiveRun, RunOptions
from routera_archive_sandbox import SandboxServer
from tests.conftest import TWINNED, source_config
from tests.pipeline.test_run import active_ids, query


def pending_requests(pipeline: dlt.Pipeline) -> list:
    return [item.request for page in PendingQueue(pipeline).pages(100) for item in page]


def delete_calls(server: SandboxServer, contact_id: str) -> int:
    return sum(
        entry["count"]
        for entry in server.state.stats()["requests"]
        if entry["method"] == "DELETE" and entry["path"] == f"/contacts/{contact_id}"
    )


def archive_without_loading(server: SandboxServer, requests: list) -> list:
    """What a run does before its crash: the DELETEs happen, the answers are in hand."""

    async def go() -> list:
        async with RouteraClient(source_config(server).client_config()) as client:
            return [await archive_request(client, request) for request in requests]

    return asyncio.run(go())


def test_journal_entries_of_a_crashed_run_are_loaded_without_a_second_delete(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    ids = active_ids(sandbox_server, 3)
    enqueue(pipeline, [{"contact_id": cid} for cid in ids])
    crashed = [r for r in pending_requests(pipeline) if r.object_id == ids[0]]
    outcome = archive_without_loading(sandbox_server, crashed)[0]
    journal = OutcomeJournal(Path(pipeline.working_dir) / "journal", "crashed-run")
    journal.append(outcome)
    journal.close()

    report = ArchiveRun(pipeline, source_config(sandbox_server), RunOptions()).execute()

    assert report.exit_code == ExitCode.OK, report.error
    assert report.replayed_from_journal == 1
    assert report.counts == {"archived": 2}
    assert delete_calls(sandbox_server, ids[0]) == 1
    rows = query(
        pipeline,
        "SELECT recovered, record_source, run_id, raw_response FROM {dataset}.contact_archives "
        f"WHERE id = '{ids[0]}'",
    )
    assert rows == [(True, "journal", "crashed-run", outcome.raw_response)]
    assert not list((Path(pipeline.working_dir) / "journal").glob("*.jsonl"))
    assert query(pipeline, "SELECT COUNT(*) FROM {dataset}.archive_log") == [(3,)]


def previous_release_line(outcome: ArchiveOutcome) -> str:
    """`outcome` as the release before object types journaled it: the request's id under
    `contact_id`, no `object_type` (the exact bytes: tests/unit/test_journal.py)."""
    line = outcome.model_dump(mode="json")
    request = line.pop("request")
    assert request.pop("object_type") == "contacts"
    old = {"request_id": request.pop("request_id"), "contact_id": request.pop("object_id")}
    return json.dumps({"request": {**old, **request}, **line}, separators=(",", ":"))


@pytest.mark.parametrize("destination", TWINNED, indirect=True)
def test_a_journal_of_the_release_before_object_types_is_loaded_by_this_one(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    """An upgrade after a crash: the journal the previous release left is loaded, its
    contact's DELETE not sent again."""
    ids = active_ids(sandbox_server, 2)
    enqueue(pipeline, [{"contact_id": cid} for cid in ids])
    crashed = [r for r in pending_requests(pipeline) if r.object_id == ids[0]]
    outcome = archive_without_loading(sandbox_server, crashed)[0]
    journal = OutcomeJournal(Path(pipeline.working_dir) / "journal", "crashed-run")
    journal.append_json(previous_release_line(outcome))
    journal.close()
    assert '"contact_id"' in journal.path.read_text("utf-8")

    report = ArchiveRun(pipeline, source_config(sandbox_server), RunOptions()).execute()

    assert report.exit_code == ExitCode.OK, report.error
    assert report.replayed_from_journal == 1
    assert report.counts == {"archived": 1}  # the other contact; the journal's is replayed
    assert delete_calls(sandbox_server, ids[0]) == 1
    rows = query(
        pipeline,
        "SELECT record_source, run_id, raw_response FROM {dataset}.contact_archives "
        f"WHERE id = '{ids[0]}'",
    )
    assert rows == [("journal", "crashed-run", outcome.raw_response)]
    logged = query(
        pipeline,
        "SELECT contact_id, status FROM {dataset}.archive_log "
        f"WHERE request_id = '{crashed[0].request_id}'",
    )
    assert logged == [(ids[0], "archived")]


@pytest.mark.parametrize("destination", TWINNED, indirect=True)
def test_an_answer_lost_before_the_journal_is_recovered_by_get(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    ids = active_ids(sandbox_server, 2)
    enqueue(pipeline, [{"contact_id": cid} for cid in ids])
    archive_without_loading(sandbox_server, pending_requests(pipeline)[:1])

    report = ArchiveRun(pipeline, source_config(sandbox_server), RunOptions()).execute()

    assert report.counts == {"archived": 1, "already_archived": 1}
    assert sum(sandbox_server.state.stats()["deletes_succeeded"].values()) == 2
    recovered = query(pipeline, "SELECT COUNT(*) FROM {dataset}.contact_archives WHERE recovered")
    assert recovered == [(1,)]


def test_an_extracted_but_unloaded_package_is_loaded_before_the_queue_is_read(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    ids = active_ids(sandbox_server, 2)
    enqueue(pipeline, [{"contact_id": cid} for cid in ids])
    outcomes = archive_without_loading(sandbox_server, pending_requests(pipeline))
    pipeline.extract(audit_trail(build_audit_rows(outcomes, "crashed-before-load")))

    report = ArchiveRun(pipeline, source_config(sandbox_server), RunOptions()).execute()

    assert report.loaded_pending_packages
    assert report.handled == 0
    assert all(delete_calls(sandbox_server, cid) == 1 for cid in ids)
    assert query(pipeline, "SELECT COUNT(*) FROM {dataset}.contact_archives") == [(2,)]


def test_a_failed_load_keeps_the_outcomes_in_the_journal_for_the_next_run(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = active_ids(sandbox_server, 4)
    enqueue(pipeline, [{"contact_id": cid} for cid in ids])
    real_run = pipeline.run

    def destination_down(data: object, **kwargs: object) -> object:
        if getattr(data, "name", None) == "routera" and "contact_archives" in getattr(
            data, "resources", {}
        ):
            raise RuntimeError("the warehouse is unreachable")
        return real_run(data, **kwargs)

    monkeypatch.setattr(pipeline, "run", destination_down)
    monkeypatch.setattr("routera_archive.run.chunks.LOAD_RETRY_WAIT_S", 0.01)
    broken = ArchiveRun(pipeline, source_config(sandbox_server), RunOptions()).execute()
    monkeypatch.setattr(pipeline, "run", real_run)

    assert broken.exit_code == ExitCode.FAILED
    assert "load failed" in broken.outcome and "journal" in (broken.error or "")
    assert list((Path(pipeline.working_dir) / "journal").glob("*.jsonl"))

    healed = ArchiveRun(pipeline, source_config(sandbox_server), RunOptions()).execute()

    assert healed.exit_code == ExitCode.OK, healed.error
    assert healed.replayed_from_journal == 4
    assert healed.handled == 0
    assert all(delete_calls(sandbox_server, cid) == 1 for cid in ids)
    rows = query(pipeline, "SELECT id, recovered FROM {dataset}.contact_archives ORDER BY id")
    assert rows == [(cid, True) for cid in sorted(ids)]


@pytest.mark.parametrize("destination", TWINNED, indirect=True)
def test_a_200_that_breaks_the_contract_is_failed_kept_and_recovered_next_run(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    base = "https://routera.test"
    enqueue(pipeline, [{"contact_id": "c-1"}])
    body = '{"id": "c-1", "archived": true, "email": "a@example.com"}'
    archived = json.dumps(
        {"id": "c-1", "archived": "2026-05-28T12:00:00.000Z", "archived_by": "u-1", "x": 1}
    )
    config = source_config(
        sandbox_server,
        base_url=base,
        access_token="t",
        client_id=None,
        client_secret=None,
        max_share=0,
    )
    options = RunOptions()

    # Every run's first call: the account's size, and proof this is Routera's API.
    listing = httpx.Response(200, json={"data": [], "pagination": {"count": 100}})
    gone = {"message": "Object not found or already archived", "error": True}
    with respx.mock(base_url=base, assert_all_called=False) as api:
        api.get("/contacts").mock(return_value=listing)
        api.delete("/contacts/c-1").mock(return_value=httpx.Response(200, text=body))
        first = ArchiveRun(
            pipeline, config, options, transport=httpx.MockTransport(api.async_handler)
        ).execute()
    with respx.mock(base_url=base) as api:
        api.get("/contacts").mock(return_value=listing)
        api.delete("/contacts/c-1").mock(return_value=httpx.Response(404, json=gone))
        api.get("/contacts/c-1").mock(return_value=httpx.Response(200, text=archived))
        second = ArchiveRun(
            pipeline, config, options, transport=httpx.MockTransport(api.async_handler)
        ).execute()

    assert first.exit_code == ExitCode.FAILED
    assert first.counts == {"failed": 1}
    assert second.counts == {"already_archived": 1}
    log = query(
        pipeline,
        "SELECT status, error, response_body FROM {dataset}.archive_log ORDER BY processed_at",
    )
    assert log[0][0] == "failed" and "archived" in log[0][1] and log[0][2] == body
    assert log[1][:1] == ("already_archived",)
    audit = query(pipeline, "SELECT id, x, recovered, raw_response FROM {dataset}.contact_archives")
    assert audit == [("c-1", 1, True, archived)]


def test_loading_the_same_outcomes_twice_adds_no_row(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    """dlt loads at least once: a job re-run after a crash must not duplicate the trail."""
    ids = active_ids(sandbox_server, 3)
    enqueue(pipeline, [{"contact_id": cid} for cid in ids])
    outcomes = archive_without_loading(sandbox_server, pending_requests(pipeline))

    rows = build_audit_rows(outcomes, "r1")
    pipeline.run(audit_trail(rows))
    pipeline.run(audit_trail(rows))

    assert query(pipeline, "SELECT COUNT(*) FROM {dataset}.archive_log") == [(3,)]
    assert query(pipeline, "SELECT COUNT(*) FROM {dataset}.contact_archives") == [(3,)]


def test_a_load_that_fails_once_is_tried_again_and_loads_each_row_once(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = active_ids(sandbox_server, 3)
    enqueue(pipeline, [{"contact_id": cid} for cid in ids])
    real_run = pipeline.run
    failures: list[str] = []

    def flaky(data: object, **kwargs: object) -> object:
        if not failures and "contact_archives" in getattr(data, "resources", {}):
            failures.append("once")
            raise RuntimeError("connection reset by the warehouse")
        return real_run(data, **kwargs)

    monkeypatch.setattr(pipeline, "run", flaky)
    monkeypatch.setattr("routera_archive.run.chunks.LOAD_RETRY_WAIT_S", 0.01)
    report = ArchiveRun(pipeline, source_config(sandbox_server), RunOptions()).execute()

    assert failures == ["once"]
    assert report.exit_code == ExitCode.OK, report.error
    assert query(pipeline, "SELECT COUNT(*) FROM {dataset}.archive_log") == [(3,)]
    assert query(pipeline, "SELECT COUNT(*) FROM {dataset}.contact_archives") == [(3,)]


def test_a_run_whose_own_row_cannot_be_written_says_so(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`archive_runs` is written even when the run fails, unless the destination itself cannot
    take the row: then the run's account says why, instead of only logging it."""
    ids = active_ids(sandbox_server, 2)
    enqueue(pipeline, [{"contact_id": cid} for cid in ids])
    real_run = pipeline.run

    def runs_table_down(data: object, **kwargs: object) -> object:
        if "archive_runs" in getattr(data, "resources", {}):
            raise RuntimeError("the warehouse went away\nwith a second line")
        return real_run(data, **kwargs)

    monkeypatch.setattr(pipeline, "run", runs_table_down)
    report = ArchiveRun(pipeline, source_config(sandbox_server), RunOptions()).execute()

    assert report.exit_code == ExitCode.OK, report.error
    assert report.run_row_error == "unexpected error: RuntimeError: the warehouse went away"
    assert query(pipeline, "SELECT COUNT(*) FROM {dataset}.contact_archives") == [(2,)]


def test_a_package_extracted_before_the_first_state_was_saved_is_loaded_by_the_next_run(
    pipeline: dlt.Pipeline,
) -> None:
    """A pipeline's first process killed after its extract committed a package, before the
    pipeline saved its state: the package is there, the pipeline knows no schema. dlt's
    normalize() takes that for "nothing extracted" and returns; the package must load anyway,
    before the run counts what is unloaded (the crash harness found it through the source)."""
    pipeline.extract(dlt.resource([{"id": "a"}, {"id": "b"}], name="kept_rows"))
    working = Path(pipeline.working_dir)
    for saved in (working / "schemas").iterdir():
        saved.unlink()
    state = json.loads((working / "state.json").read_text("utf-8"))
    state.update(default_schema_name=None, schema_names=[])
    (working / "state.json").write_text(json.dumps(state), "utf-8")
    restarted = dlt.pipeline(
        pipeline_name=pipeline.pipeline_name,
        destination=pipeline.destination,
        dataset_name=pipeline.dataset_name,
        pipelines_dir=pipeline.pipelines_dir,
    )
    assert restarted.default_schema_name is None and restarted.list_extracted_load_packages()

    load_pending_packages(restarted)

    assert not restarted.has_pending_data
    assert sorted(query(restarted, "SELECT id FROM {dataset}.kept_rows")) == [("a",), ("b",)]
