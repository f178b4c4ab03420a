"""A run's link covers each of its rows once, with the hash of the row as stored, however many
chunks it loaded in: the rows are digested as each chunk loads, beside the calls, and the link
reads back only what no chunk's digest covers (`dataset.chain.EarlyDigests`)."""

import json
from typing import Any

import dlt
import pytest

from routera_archive.audit.verify import verify_dataset
from routera_archive.dataset import chain
from routera_archive.dataset.enqueue import enqueue
from routera_archive.errors import ExitCode
from routera_archive.run.runner import ArchiveRun, RunOptions
from routera_archive_sandbox import SandboxServer
from tests.conftest import TWINNED, source_config
from tests.pipeline.test_run import active_ids, query


def digests_of(pipeline: dlt.Pipeline, run_id: str) -> dict[str, list[Any]]:
    rows = query(
        pipeline,
        "SELECT table_name, row_key FROM {dataset}.row_digests WHERE chained_by = '" + run_id + "'",
    )
    found: dict[str, list[Any]] = {}
    for table, key in rows:
        found.setdefault(table, []).append(json.loads(key)[0])
    return found


@pytest.mark.parametrize("destination", TWINNED, indirect=True)
def test_a_run_of_many_chunks_links_each_of_its_rows_once_as_stored(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    ids = active_ids(sandbox_server, 23)
    first, second = ids[:14], ids[14:]
    enqueue(pipeline, [{"contact_id": cid} for cid in [*first, first[0]]])
    config = source_config(sandbox_server, chunk_size=3)  # five chunks and a last one

    report = ArchiveRun(pipeline, config, RunOptions()).execute()

    assert report.exit_code == ExitCode.OK, report.error
    assert report.chain is not None, report.chain_error
    digested = digests_of(pipeline, report.run_id)
    assert sorted(digested["contact_archives"]) == sorted(first)
    logged = query(pipeline, "SELECT outcome_id FROM {dataset}.archive_log")
    assert sorted(digested["archive_log"]) == sorted(row[0] for row in logged)
    assert len(logged) == len(first) + 1  # the duplicate's row too
    assert report.chain.digested_rows == sum(len(keys) for keys in digested.values())
    verification = verify_dataset(pipeline)
    assert verification.intact, verification.findings

    # The next run's link covers its own rows only, the first run's staying as they were.
    enqueue(pipeline, [{"contact_id": cid} for cid in second])
    again = ArchiveRun(pipeline, config, RunOptions()).execute()

    assert again.exit_code == ExitCode.OK, again.error
    assert sorted(digests_of(pipeline, again.run_id)["contact_archives"]) == sorted(second)
    assert digests_of(pipeline, report.run_id) == digested
    verification = verify_dataset(pipeline)
    assert verification.intact, verification.findings
    assert verification.links == 2


@pytest.mark.parametrize("destination", TWINNED, indirect=True)
def test_a_run_row_that_would_read_back_otherwise_is_loaded_with_dlt_and_still_linked(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run row is INSERTed with its link only if it reads back as it was hashed; where it
    would not (here: every text value bound otherwise), that transaction is rolled back and the
    row goes through dlt as before the link, which is then made."""
    ids = active_ids(sandbox_server, 6)
    config = source_config(sandbox_server)
    enqueue(pipeline, [{"contact_id": cid} for cid in ids[:3]])
    assert ArchiveRun(pipeline, config, RunOptions()).execute().chain is not None
    monkeypatch.setattr(
        chain, "_sql_value", lambda value, data_type: "x" if data_type == "text" else value
    )
    enqueue(pipeline, [{"contact_id": cid} for cid in ids[3:]])

    report = ArchiveRun(pipeline, config, RunOptions()).execute()

    assert report.exit_code == ExitCode.OK, report.error
    assert report.chain is not None, report.chain_error
    rows = query(pipeline, "SELECT run_id, mode FROM {dataset}.archive_runs")
    assert (report.run_id, "run") in rows and len(rows) == 2
    verification = verify_dataset(pipeline)
    assert verification.intact, verification.findings
    assert verification.links == 2


@pytest.mark.parametrize("destination", TWINNED, indirect=True)
def test_a_commit_that_fails_after_the_link_is_in_links_the_run_once(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A COMMIT whose answer is an error may still have happened (a connection dropped right
    after it): the run row is then not loaded again with dlt, which would link the run twice."""
    ids = active_ids(sandbox_server, 6)
    config = source_config(sandbox_server)
    enqueue(pipeline, [{"contact_id": cid} for cid in ids[:3]])
    assert ArchiveRun(pipeline, config, RunOptions()).execute().chain is not None
    enqueue(pipeline, [{"contact_id": cid} for cid in ids[3:]])
    linked: list[bool] = []
    insert_link_row = chain._insert_link_row

    def noting(*args: Any, **kwargs: Any) -> None:
        insert_link_row(*args, **kwargs)
        linked.append(True)

    with pipeline.sql_client() as client:
        client_type = type(client)
    commit = client_type.commit_transaction

    def committed_then_lost(self: Any) -> None:
        commit(self)
        if linked:
            linked.clear()
            raise ConnectionError("server closed the connection unexpectedly")

    monkeypatch.setattr(chain, "_insert_link_row", noting)
    monkeypatch.setattr(client_type, "commit_transaction", committed_then_lost)

    report = ArchiveRun(pipeline, config, RunOptions()).execute()

    links = [row for row in query(pipeline, "SELECT run_id FROM {dataset}.archive_chain")]
    assert links.count((report.run_id,)) == 1, links
    monkeypatch.setattr(client_type, "commit_transaction", commit)  # verify's own session
    verification = verify_dataset(pipeline)
    assert verification.intact, verification.findings
    assert verification.links == 2
