"""A redaction never makes an earlier edit look intact, on DuckDB and PostgreSQL (found by
review): a row edited after it was chained is redacted (its data goes) but not chained again,
so `verify` still names it and the redaction records it; `evidence` does not vouch for a row
whose digest was edited with it; and the outcomes of a record never archived are redacted
too."""

import json

import dlt
import pytest

from routera_archive.audit.evidence import build_evidence
from routera_archive.audit.verify import verify_dataset
from routera_archive.dataset.enqueue import enqueue
from routera_archive.dataset.redact import REDACTED, RedactionRequest
from routera_archive.run.retention import redact_dataset
from routera_archive.run.runner import ArchiveRun
from routera_archive_sandbox import SandboxServer
from tests.conftest import TWINNED, source_config
from tests.pipeline.test_run import active_ids, query

MISSING = "00000000-0000-4000-8000-0000000000aa"


def execute(pipeline: dlt.Pipeline, sql: str, *args: object) -> None:
    with pipeline.sql_client() as client:
        client.execute_sql(sql.replace("{dataset}", client.fully_qualified_dataset_name()), *args)


def archived(pipeline: dlt.Pipeline, server: SandboxServer, count: int) -> list[str]:
    ids = active_ids(server, count)
    enqueue(pipeline, [{"contact_id": i} for i in [*ids, MISSING]])
    assert ArchiveRun(pipeline, source_config(server)).execute().exit_code == 0
    return ids


@pytest.mark.parametrize("destination", TWINNED, indirect=True)
def test_a_row_edited_before_the_redaction_is_redacted_but_still_reported(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    edited, untouched = archived(pipeline, sandbox_server, 2)
    execute(
        pipeline,
        "UPDATE {dataset}.contact_archives SET archived_by = 'forged-actor' WHERE id = %s",
        edited,
    )
    (done,) = redact_dataset(pipeline, RedactionRequest(contact_ids=(edited, untouched)))
    assert done.unverified == {"contact_archives": [edited]}
    ((email, by),) = query(
        pipeline,
        f"SELECT email, archived_by FROM {{dataset}}.contact_archives WHERE id = '{edited}'",
    )
    assert (email, by) == (None, "forged-actor")  # its data is gone; the edit is still there
    result = verify_dataset(pipeline)
    # Named for what it is: edited (and, redacted as well, its answer no longer hashes to the
    # record_sha256 taken at load); the row redacted beside it verifies.
    assert {(f.table, f.key, f.check) for f in result.findings} == {
        ("contact_archives", json.dumps([edited]), "row content"),
        ("contact_archives", json.dumps([edited]), "record hash"),
    }
    ((unverified,),) = query(pipeline, "SELECT unverified_rows FROM {dataset}.redactions")
    as_json = unverified if isinstance(unverified, dict) else json.loads(unverified)
    assert as_json == {"contact_archives": [edited]}


@pytest.mark.parametrize("destination", TWINNED, indirect=True)
def test_evidence_does_not_vouch_for_a_row_whose_digest_was_edited_with_it(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    (contact,) = archived(pipeline, sandbox_server, 1)
    execute(
        pipeline,
        "UPDATE {dataset}.contact_archives SET archived_by = 'forged' WHERE id = %s",
        contact,
    )
    from routera_archive.dataset.canonical import row_sha256
    from routera_archive.dataset.chain import select_rows, stored_types, utc_session

    types = stored_types(pipeline)
    with utc_session(pipeline) as client:
        table = client.make_qualified_table_name("contact_archives")
        (row,) = select_rows(client, f"SELECT * FROM {table} WHERE id = %s", contact)
        forged = row_sha256(row, types["contact_archives"])
    execute(
        pipeline,
        "UPDATE {dataset}.row_digests SET row_sha256 = %s WHERE row_key = %s",
        forged,
        json.dumps([contact]),
    )
    found = build_evidence(pipeline, object_id=contact)
    ((record,),) = [found.records]
    assert record["archived_by"] == "forged"
    assert record["verifies"] is False
    assert found.chain["intact"] is False


@pytest.mark.parametrize("destination", TWINNED, indirect=True)
def test_the_outcomes_of_a_record_never_archived_are_redacted_too(
    pipeline: dlt.Pipeline, sandbox_server: SandboxServer
) -> None:
    archived(pipeline, sandbox_server, 1)
    execute(  # an answer that quoted the person (a failure's body, say)
        pipeline,
        "UPDATE {dataset}.archive_log SET response_body = %s WHERE contact_id = %s",
        json.dumps({"message": "no such contact", "email": "gone.person@example.org"}),
        MISSING,
    )
    (done,) = redact_dataset(pipeline, RedactionRequest(contact_ids=(MISSING,)))
    assert done.rows == {"archive_log": done.rows["archive_log"]} and done.rows["archive_log"]
    ((body,),) = query(
        pipeline,
        f"SELECT response_body FROM {{dataset}}.archive_log WHERE contact_id = '{MISSING}'",
    )
    assert json.loads(body) == {"message": "no such contact", "email": REDACTED}
