"""`routera-archive redact` on datasets made by real runs (the CLI against the sandbox on
loopback), on DuckDB and PostgreSQL: its dry run changes nothing; by contact id and by request
id it nulls the personal columns and redacts the stored answers, keeping every key and every
other value and the load-time hashes; `verify` stays intact; the redaction is a row of
`redactions`; and the e-mail address is nowhere: not in any table or staging table, not in the
pipeline folder (gzipped packages read too) nor, on DuckDB, in the database file's bytes. A run
after it works and verifies. By age: tests/pipeline/test_redact_by_age.py; killed at each step:
test_redact_crash.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from routera_archive_pipelines.factory import pipeline_name_for
from routera_archive_sandbox import SandboxConfig, SandboxServer
from tests.e2e.cli_support import (
    DB_FILE,
    DESTINATIONS,
    RunCli,
    Target,
    cli_runner,
    open_target,
    searchable_bytes,
    stored_text,
)

pytestmark = pytest.mark.e2e

CLI_TIMEOUT_S = 120


@dataclass
class Trail:
    target: Target
    cli: RunCli
    server: SandboxServer
    contacts: list[str]  # the contacts archived, in queue order
    archived_before: str  # archived in Routera before the run: `already_archived`
    missing: str  # no such contact: `not_found`


def bytes_found(root: Path, needle: str) -> list[str]:
    """Every file under `root` whose content holds `needle` (`searchable_bytes`)."""
    wanted = needle.encode()
    return [
        str(path.relative_to(root))
        for path in sorted(root.rglob("*"))
        if path.is_file() and wanted in searchable_bytes(path)
    ]


@pytest.fixture(scope="module", params=DESTINATIONS)
def trail(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Trail]:
    workdir = tmp_path_factory.mktemp(f"redact_{request.param}")
    config = SandboxConfig(port=0, contacts=30, companies=4, seed=91)
    with open_target(request.param, workdir) as target, SandboxServer(config) as server:
        cli = cli_runner(server, workdir, {"COLUMNS": "250"}, timeout=CLI_TIMEOUT_S, target=target)
        active = server.state.object_ids("contacts", include_archived=False)
        contacts, archived_before = active[:8], active[8]
        server.state.archive_contact(archived_before, "someone-in-the-crm")
        missing = "00000000-0000-4000-8000-000000000000"
        # The first contact twice: its second request is settled `duplicate`.
        queue = [*contacts, contacts[0], archived_before, missing]
        (workdir / "queue.txt").write_text("\n".join(queue) + "\n")
        assert (
            cli("enqueue", "queue.txt", "--requested-by", "privacy@corp", "--reason", "DSR-7").code
            == 0
        )
        ran = cli("run")
        assert ran.code == 0, ran.output
        yield Trail(target, cli, server, contacts, archived_before, missing)


def _row(target: Target, contact_id: str) -> dict[str, object]:
    columns = [
        name
        for (name,) in target.query(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ? "
            "AND table_name = 'contact_archives'",
            target.dataset,
        )
    ]
    (values,) = target.query(
        f"SELECT {', '.join(columns)} FROM contact_archives WHERE id = ?", contact_id
    )
    return dict(zip(columns, values, strict=True))


def _json(value: object) -> object:
    """A JSON column's value: DuckDB gives the text, PostgreSQL the parsed value."""
    return value if isinstance(value, (dict, list)) else json.loads(str(value))


def _email(trail: Trail, contact_id: str) -> str:
    record = trail.server.state.get_contact(contact_id)
    assert record is not None
    return str(record["email"])


def evidence(trail: Trail, *args: str) -> dict[str, Any]:
    done = trail.cli("evidence", *args, "--format", "json")
    assert done.code == 0, done.output
    return dict(json.loads(done.stdout))


def test_evidence_of_an_archived_contact(trail: Trail) -> None:
    contact = trail.contacts[5]
    found = evidence(trail, "--contact-id", contact)
    ((request,),) = [found["requests"]]
    assert (request["requested_by"], request["reason"]) == ("privacy@corp", "DSR-7")
    ((outcome,),) = [found["outcomes"]]
    assert (outcome["status"], outcome["http_status"]) == ("archived", 200)
    ((record,),) = [found["records"]]
    assert record["archived"] and record["archived_by"] == trail.server.config.client_id
    assert record["answer"]["id"] == contact and record["answer"]["email"]
    assert (record["record_hash_matches"], record["verifies"], record["redacted"]) == (
        True,
        True,
        False,
    )
    ((run,),) = [found["runs"]]
    assert run["run_id"] == outcome["run_id"] and run["connector_version"]
    assert run["chain_sha256"] == found["chain"]["head"] and found["chain"]["intact"]
    assert found["redactions"] == []


def test_evidence_of_an_already_archived_and_a_not_found_contact(trail: Trail) -> None:
    before = evidence(trail, "--contact-id", trail.archived_before)
    assert [o["status"] for o in before["outcomes"]] == ["already_archived"]
    ((record,),) = [before["records"]]
    assert record["archived_by"] == "someone-in-the-crm" and record["verifies"]
    missing = evidence(trail, "--contact-id", trail.missing)
    assert [(o["status"], o["http_status"]) for o in missing["outcomes"]] == [("not_found", 404)]
    assert missing["records"] == []


def test_evidence_of_a_duplicate_request_follows_it_to_the_record(trail: Trail) -> None:
    ((duplicate, original),) = trail.target.query(
        "SELECT request_id, duplicate_of FROM archive_log WHERE status = 'duplicate'"
    )
    found = evidence(trail, "--request-id", str(duplicate))
    ((outcome,),) = [found["outcomes"]]
    assert (outcome["status"], outcome["duplicate_of"]) == ("duplicate", original)
    ((record,),) = [found["records"]]
    assert (record["id"], record["request_id"]) == (trail.contacts[0], original)


def test_evidence_shows_no_other_record_of_a_request_that_named_several(trail: Trail) -> None:
    """A request id may name several records (a queue made by SQL): the evidence for one of
    them, or for a duplicate of it, shows that record only."""
    target = trail.target
    active = trail.server.state.object_ids("contacts", include_archived=False)
    mine, other = active[0], active[1]
    target.executemany(
        "INSERT INTO archive_queue (request_id, contact_id, _dlt_load_id, _dlt_id) "
        "VALUES (?, ?, 'by-hand', ?)",
        [("T-1", mine, "h1"), ("T-1", other, "h2"), ("T-2", mine, "h3")],
    )
    assert trail.cli("run").code == 0
    for args in (("--contact-id", mine), ("--request-id", "T-2")):
        found = evidence(trail, *args)
        assert [(r["id"], r["request_id"]) for r in found["records"]] == [(mine, "T-1")], args
        assert other not in json.dumps(found)


def test_dry_run_names_rows_and_columns_and_changes_nothing(trail: Trail) -> None:
    contact = trail.contacts[1]
    before = stored_text(trail.target)
    dry = trail.cli("redact", "--contact-id", contact, "--dry-run")
    assert dry.code == 0, dry.output
    assert "would redact 1 rows" in dry.stdout
    assert "email, first_name, last_name, phone, raw_response" in dry.stdout
    assert contact in dry.stdout
    assert _email(trail, contact) not in dry.output  # names rows, never shows their values
    assert stored_text(trail.target) == before


def test_redact_by_contact_id_leaves_no_copy_and_stays_intact(trail: Trail) -> None:
    target, cli = trail.target, trail.cli
    contact = trail.contacts[0]
    email = _email(trail, contact)
    original = _row(target, contact)
    folder = target.workdir / "dlt_data"
    assert email in stored_text(target)
    assert bytes_found(folder, email), "the search must find the address before it is redacted"
    if target.destination == "duckdb":
        assert bytes_found(target.workdir, email) and DB_FILE in bytes_found(target.workdir, email)

    done = cli("redact", "--contact-id", contact, "--reason", "GDPR art. 17", "--by", "dpo")
    assert done.code == 0, done.output
    assert "redacted 1 rows: GDPR art. 17" in done.stdout

    row = _row(target, contact)
    assert {
        name: row[name] for name in ("email", "first_name", "last_name", "phone")
    } == dict.fromkeys(("email", "first_name", "last_name", "phone"))
    answer = json.loads(str(row["raw_response"]))
    loaded = json.loads(str(original["raw_response"]))
    assert answer.keys() == loaded.keys()
    for key, value in loaded.items():
        expected = "[redacted]" if key in ("email", "first_name", "last_name", "phone") else value
        assert answer[key] == expected, key
    assert row["record_sha256"] == original["record_sha256"]  # the hash of the answer as loaded
    assert row["company"] == original["company"] and row["archived"] == original["archived"]

    ((by, reason, rows, columns, count),) = target.query(
        "SELECT redacted_by, reason, rows, columns, row_count FROM redactions"
    )
    assert (by, reason, count) == ("dpo", "GDPR art. 17", 1)
    assert _json(rows) == {"contact_archives": [contact]}
    assert "email" in _json(columns)["contact_archives"]

    verified = cli("verify", "--format", "json")
    assert verified.code == 0, verified.output
    assert any("recorded redaction" in note for note in json.loads(verified.stdout)["notes"])

    assert email not in stored_text(target)
    assert bytes_found(folder, email) == []
    if target.destination == "duckdb":
        assert bytes_found(target.workdir, email) == []

    shown = evidence(trail, "--contact-id", contact)
    ((applied,),) = [shown["redactions"]]
    assert (applied["redacted_by"], applied["reason"]) == ("dpo", "GDPR art. 17")
    assert applied["rows"] == {"contact_archives": [contact]}
    redacted = [r for r in shown["records"] if r["id"] == contact]
    assert [(r["redacted"], r["verifies"], r["record_hash_matches"]) for r in redacted] == [
        (True, True, None)
    ]
    assert redacted[0]["answer"]["email"] == "[redacted]"
    page = target.workdir / "evidence.html"
    written = cli("evidence", "--contact-id", contact, "--format", "html", "-o", str(page))
    assert written.code == 0, written.output
    text = page.read_text(encoding="utf-8")
    assert "Redactions applied since" in text and "GDPR art. 17" in text and email not in text
    assert "<script" not in text

    again = cli("redact", "--contact-id", contact)
    assert again.code == 0 and "nothing to redact" in again.stdout, again.output

    # The dataset goes on: a run after the redaction loads, links and verifies.
    (target.workdir / "more.txt").write_text(trail.contacts[7] + "\n")
    assert cli("enqueue", "more.txt").code == 0
    later = cli("run")
    assert later.code == 0, later.output
    assert cli("verify").code == 0


def test_redact_by_request_id(trail: Trail) -> None:
    target, cli = trail.target, trail.cli
    contact = trail.contacts[2]
    ((request_id,),) = target.query("SELECT request_id FROM contact_archives WHERE id = ?", contact)
    done = cli("redact", "--request-id", str(request_id))
    assert done.code == 0 and "redacted 1 rows: erasure request" in done.stdout, done.output
    assert _row(target, contact)["email"] is None
    assert _row(target, trail.contacts[3])["email"] is not None  # no other row
    assert _email(trail, contact) not in stored_text(target)
    assert cli("verify").code == 0


def test_a_redaction_needs_a_selector(trail: Trail) -> None:
    refused = trail.cli("redact")
    assert refused.code == 2
    assert "say what to redact" in refused.stderr


def test_an_edit_made_to_look_like_a_redaction_is_still_tampering(trail: Trail) -> None:
    """Only a recorded redaction is intact: nulling an e-mail by hand is a row change."""
    target = trail.target
    contact = trail.contacts[4]
    target.execute("UPDATE contact_archives SET email = NULL WHERE id = ?", contact)
    try:
        found = trail.cli("verify", "--format", "json")
        assert found.code == 1, found.output
        checks = {(f["table"], f["key"], f["check"]) for f in json.loads(found.stdout)["findings"]}
        assert ("contact_archives", json.dumps([contact]), "row content") in checks
    finally:
        target.execute(
            "UPDATE contact_archives SET email = ? WHERE id = ?", _email(trail, contact), contact
        )
    assert trail.cli("verify").code == 0


def test_the_report_shows_the_chain_head_the_last_verify_and_the_redactions(trail: Trail) -> None:
    target, cli = trail.target, trail.cli
    verdicts = target.query("SELECT intact FROM verifications ORDER BY verified_at")
    assert False in {v for (v,) in verdicts}  # the tampered dataset's verdict is on record
    assert verdicts[-1] == (True,)
    unrecorded = cli("verify", "--no-record")
    assert unrecorded.code == 0
    assert len(target.query("SELECT intact FROM verifications")) == len(verdicts)

    shown = cli("report", "--format", "json")
    assert shown.code == 0, shown.output
    report = json.loads(shown.stdout)
    ((head,),) = target.query(
        "SELECT chain_sha256 FROM archive_chain ORDER BY chain_seq DESC LIMIT 1"
    )
    assert [row["chain_sha256"] for row in report["hash_chain"]] == [head]
    ((last,),) = [report["last_verification"]]
    assert last["intact"] is True and last["head"] == head
    assert sum(row["row_count"] for row in report["redactions"]) == 2  # by id and by request
    page = target.workdir / "report.html"
    assert cli("report", "--format", "html", "-o", str(page)).code == 0
    text = page.read_text(encoding="utf-8")
    assert head in text and "rows redacted in window" in text and "last verify" in text


def test_a_redaction_waits_for_a_crashed_run_s_answers_to_be_loaded(trail: Trail) -> None:
    """A journal not loaded yet holds answers, personal data included: redacting around it
    would leave them behind, so the command refuses and changes nothing."""
    target = trail.target
    folder = (
        target.workdir
        / "dlt_data"
        / "pipelines"
        / pipeline_name_for(target.destination, target.dataset)
        / "journal"
    )
    folder.mkdir(parents=True, exist_ok=True)
    journal = folder / "20261203T000000Z-deadbeef.jsonl"
    journal.write_text("", encoding="utf-8")
    before = stored_text(target)
    try:
        refused = trail.cli("redact", "--contact-id", trail.contacts[6])
        assert refused.code == 1, refused.output
        assert "run `routera-archive run` first" in refused.stderr
        assert stored_text(target) == before
    finally:
        journal.unlink()
