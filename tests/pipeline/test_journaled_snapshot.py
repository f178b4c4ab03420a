"""A snapshot is journaled before its DELETE is sent, and a run after a crash completes the
record it reads back with it: the real runner against the sandbox (`answer_fields="default"`,
as Routera's reference reads), on DuckDB and PostgreSQL."""

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import dlt
import pytest

from routera_archive.calls.archiver import archive_request
from routera_archive.dataset.enqueue import enqueue
from routera_archive.errors import ExitCode
from routera_archive.http.client import RouteraClient
from routera_archive.journal import JournaledSnapshot, OutcomeJournal, read_snapshots
from routera_archive.models import ArchiveRequest, Status
from routera_archive.run.runner import ArchiveRun, RunOptions
from routera_archive_sandbox import SandboxConfig, SandboxServer
from tests.conftest import source_config
from tests.pipeline.test_recovery import delete_calls, pending_requests
from tests.pipeline.test_run import query


@pytest.fixture
def server() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(port=0, contacts=20, answer_fields="default")) as running:
        yield running


def seeded(server: SandboxServer, count: int) -> list[str]:
    return [
        str(
            server.state.create_contact(
                {"first_name": f"Ada {n}", "lead_score": n, "company": f"C{n}"}
            )["id"]
        )
        for n in range(count)
    ]


def test_the_snapshot_is_journaled_before_the_delete_is_sent(server: SandboxServer) -> None:
    [contact_id] = seeded(server, 1)
    kept: list[tuple[JournaledSnapshot, list[str]]] = []

    def keep(snapshot: JournaledSnapshot) -> None:
        kept.append((snapshot, server.state.contact_calls()[contact_id]))

    async def go() -> Status:
        config = source_config(server, properties=["lead_score"]).client_config()
        async with RouteraClient(config) as client:
            outcome = await archive_request(
                client, ArchiveRequest(request_id="r1", contact_id=contact_id), keep_snapshot=keep
            )
            return outcome.status

    assert asyncio.run(go()) is Status.ARCHIVED
    [(snapshot, calls_then)] = kept
    assert calls_then == ["GET 200"]  # kept after the snapshot, before the DELETE
    assert json.loads(snapshot.body)["lead_score"] == 0


def test_a_crashed_run_s_snapshot_completes_the_record_read_back_after_its_delete(
    pipeline: dlt.Pipeline, server: SandboxServer
) -> None:
    """The crashed run asked for `lead_score` and `company`, journaled its snapshot, sent the
    DELETE and died before its outcome was kept. The next run asks for `lead_score` only: its
    GET shows the contact archived, and the record keeps `company` from the journal."""
    ids = seeded(server, 2)
    enqueue(pipeline, [{"contact_id": cid} for cid in ids])
    [crashed] = [r for r in pending_requests(pipeline) if r.object_id == ids[0]]
    journal = OutcomeJournal(Path(pipeline.working_dir) / "journal", "crashed-run")

    async def crash() -> None:
        config = source_config(server, properties=["lead_score", "company"]).client_config()
        async with RouteraClient(config) as client:
            await archive_request(client, crashed, keep_snapshot=journal.append_snapshot)

    asyncio.run(crash())  # its outcome is lost: only the snapshot is in the journal
    journal.close()
    assert len(list(read_snapshots(journal.path))) == 1

    config = source_config(server, properties=["lead_score"])
    report = ArchiveRun(pipeline, config, RunOptions()).execute()

    assert report.exit_code == ExitCode.OK, report.error
    assert report.counts == {"already_archived": 1, "archived": 1}
    assert delete_calls(server, ids[0]) == 1
    rows = dict(
        (row[0], row[1:])
        for row in query(
            pipeline,
            "SELECT id, lead_score, company, record_source, snapshot_response IS NOT NULL "
            "FROM {dataset}.contact_archives",
        )
    )
    assert rows[ids[0]] == (0, "C0", "snapshot+get", True)
    assert rows[ids[1]] == (1, None, "snapshot+delete", True)  # `company` not asked for
    assert not list((Path(pipeline.working_dir) / "journal").glob("*.jsonl"))
