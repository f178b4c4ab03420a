"""The outcome journal: what was appended reads back identical; a crash's torn line is skipped."""

import logging
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from routera_archive.journal import (
    JOURNAL_SUFFIX,
    OutcomeJournal,
    leftover_files,
    read_outcomes,
    read_snapshots,
)
from routera_archive.models import ArchiveOutcome, ArchiveRequest, Status
from routera_archive.objects import ObjectType

RECORD = {
    "id": "c1",
    "archived": "2026-05-28T12:00:00.000Z",
    "archived_by": "user-uuid",
    "Lead Score": 7.5,
    "big": 2**53 + 1,
    "opted_in": False,
    "nothing": None,
    "名前": "Ada\r\nLovelace\u2028é😀",
    "tags": ["a", {"nested": [1, None, True]}],
}


def outcomes() -> list[ArchiveOutcome]:
    return [
        ArchiveOutcome(
            request=ArchiveRequest(
                request_id="r1",
                contact_id="c1",
                requested_by="ana",
                reason="GDPR",
                requested_at=datetime(2026, 5, 27, 9, 30, tzinfo=timezone(timedelta(hours=2))),
            ),
            status=Status.ARCHIVED,
            http_status=200,
            attempts=2,
            processed_at=datetime(2026, 5, 28, 12, 0, 1, 123456, tzinfo=UTC),
            record=RECORD,
            raw_response='{ "id":"c1" ,\n "archived": "2026-05-28T12:00:00.000Z" }',
            record_source="delete",
        ),
        ArchiveOutcome(
            request=ArchiveRequest(request_id="r2", contact_id="c2"),
            status=Status.ALREADY_ARCHIVED,
            http_status=404,
            attempts=2,
            error="an earlier DELETE attempt may have archived it",
            record={"id": "c2", "archived": "2026-05-28T12:00:00Z"},
            raw_response='{"id": "c2", "archived": "2026-05-28T12:00:00Z"}',
            record_source="get",
            recovered=True,
        ),
        ArchiveOutcome(
            request=ArchiveRequest(request_id="r3", contact_id=None),
            status=Status.INVALID,
            error="contact_id is NULL",
        ),
        ArchiveOutcome(
            request=ArchiveRequest(request_id="r4", contact_id="c1"),
            status=Status.DUPLICATE,
            duplicate_of="r1",
        ),
        ArchiveOutcome(
            request=ArchiveRequest(request_id="r5", contact_id="c5"),
            status=Status.FAILED,
            http_status=503,
            attempts=5,
            error="DELETE gave up",
            raw_response="<html>\x00</html>",
        ),
    ]


def write_all(journal: OutcomeJournal, items: list[ArchiveOutcome]) -> None:
    for outcome in items:
        journal.append(outcome)
    journal.sync()
    journal.close()


def test_outcomes_round_trip(tmp_path: Path) -> None:
    journal = OutcomeJournal(tmp_path / "journal", "run-1")
    original = outcomes()

    write_all(journal, original)

    assert journal.path == tmp_path / "journal" / f"run-1{JOURNAL_SUFFIX}"
    restored = list(read_outcomes(journal.path))
    assert restored == original
    first = restored[0]
    assert first.status is Status.ARCHIVED
    assert first.record == RECORD
    assert list(first.record or {}) == list(RECORD)
    assert first.processed_at == datetime(2026, 5, 28, 12, 0, 1, 123456, tzinfo=UTC)
    assert first.request.requested_at is not None
    assert first.request.requested_at.utcoffset() == timedelta(hours=2)
    assert first.raw_response == original[0].raw_response
    assert restored[2].request.object_id is None
    assert [o.status for o in restored] == [o.status for o in original]
    assert all(isinstance(o.status, Status) for o in restored)


# A snapshot and an outcome exactly as the release before object types wrote them (made with its
# code, byte for byte): the request's id is `contact_id`, and there is no `object_type`.
PREVIOUS_RELEASE_JOURNAL = (
    r'{"kind":"snapshot","request":{"request_id":"r-old","contact_id":"c-old",'
    r'"requested_by":"ana","reason":"gdpr","requested_at":"2026-05-28T10:00:00+02:00"},'
    r'"body":"{\"id\": \"c-old\", \"first_name\": \"Ada\", '
    r'\"archived\": \"2026-05-28T12:00:00.000Z\", \"archived_by\": \"user-uuid\"}",'
    r'"taken_at":"2026-05-28T12:00:00Z"}'
    "\n"
    r'{"request":{"request_id":"r-old","contact_id":"c-old","requested_by":"ana",'
    r'"reason":"gdpr","requested_at":"2026-05-28T10:00:00+02:00"},"status":"archived",'
    r'"outcome_id":"0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f","http_status":200,"error":null,'
    r'"attempts":1,"processed_at":"2026-05-28T12:00:01Z","record":{"id":"c-old",'
    r'"first_name":"Ada","archived":"2026-05-28T12:00:00.000Z","archived_by":"user-uuid"},'
    r'"raw_response":"{\"id\": \"c-old\", \"first_name\": \"Ada\", '
    r'\"archived\": \"2026-05-28T12:00:00.000Z\", \"archived_by\": \"user-uuid\"}",'
    r'"snapshot_response":null,"record_source":"delete","recovered":false,'
    r'"duplicate_of":null,"text_fields":[]}'
    "\n"
)


def test_a_journal_of_the_release_before_object_types_reads_as_contacts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A run of the previous release that crashed left this; the next run is of this release,
    and must load what it holds (its DELETE was sent: a second one would answer 404)."""
    path = tmp_path / f"crashed-run{JOURNAL_SUFFIX}"
    path.write_text(PREVIOUS_RELEASE_JOURNAL, encoding="utf-8")

    with caplog.at_level(logging.WARNING):
        [outcome] = list(read_outcomes(path))
        [snapshot] = list(read_snapshots(path))

    assert not caplog.records  # no line skipped as unreadable
    expected = ArchiveRequest(
        request_id="r-old",
        object_type=ObjectType.CONTACTS,
        object_id="c-old",
        requested_by="ana",
        reason="gdpr",
        requested_at=datetime(2026, 5, 28, 10, 0, tzinfo=timezone(timedelta(hours=2))),
    )
    assert outcome.request == expected
    assert snapshot.request == expected
    assert outcome.status is Status.ARCHIVED and outcome.record_source == "delete"
    assert outcome.record == {
        "id": "c-old",
        "first_name": "Ada",
        "archived": "2026-05-28T12:00:00.000Z",
        "archived_by": "user-uuid",
    }
    assert outcome.outcome_id == "0f" * 16  # the key its log row merges on, kept
    # Written again, it says `object_id` and `object_type`: and reads back the same.
    rewritten = outcome.model_dump_json()
    assert '"object_id":"c-old"' in rewritten and '"object_type":"contacts"' in rewritten
    assert '"contact_id"' not in rewritten
    assert ArchiveOutcome.model_validate_json(rewritten) == outcome


def test_one_line_per_outcome_and_appends_accumulate(tmp_path: Path) -> None:
    journal = OutcomeJournal(tmp_path, "run-2")
    items = outcomes()
    journal.append(items[0])
    journal.append(items[1])
    # Flushed at each append: readable before close, as a crash would leave it.
    assert [o.request.request_id for o in read_outcomes(journal.path)] == ["r1", "r2"]
    journal.append(items[2])
    journal.close()
    # One "\n" per outcome (U+2028 in a value stays inside its line).
    assert journal.path.read_bytes().count(b"\n") == 3
    reopened = OutcomeJournal(tmp_path, "run-2")
    reopened.append(items[3])
    reopened.close()
    assert [o.request.request_id for o in read_outcomes(journal.path)] == ["r1", "r2", "r3", "r4"]


def test_a_torn_last_line_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    journal = OutcomeJournal(tmp_path, "run-3")
    items = outcomes()
    write_all(journal, items[:2])
    torn = items[2].model_dump_json()
    with journal.path.open("a", encoding="utf-8") as handle:
        handle.write(torn[: len(torn) // 2])  # the crash: half a line, no newline

    with caplog.at_level(logging.WARNING, logger="routera_archive.journal"):
        restored = list(read_outcomes(journal.path))

    assert restored == items[:2]
    assert any("line 3" in r.getMessage() for r in caplog.records)


def test_blank_and_unreadable_lines_do_not_hide_the_others(tmp_path: Path) -> None:
    path = tmp_path / f"run-4{JOURNAL_SUFFIX}"
    items = outcomes()
    path.write_text(
        items[0].model_dump_json()
        + "\n\n"
        + '{"request": {"request_id": "x"}, "status": "nonsense"}\n'
        + items[1].model_dump_json()
        + "\n",
        encoding="utf-8",
    )
    assert list(read_outcomes(path)) == items[:2]


def test_discard_removes_the_file(tmp_path: Path) -> None:
    journal = OutcomeJournal(tmp_path, "run-5")
    journal.append(outcomes()[0])
    assert journal.path.exists()
    journal.discard()
    assert not journal.path.exists()
    journal.discard()  # twice, or on a journal nothing was written to, is fine
    OutcomeJournal(tmp_path, "never-written").discard()


def test_nothing_is_created_before_the_first_append(tmp_path: Path) -> None:
    journal = OutcomeJournal(tmp_path / "sub", "run-6")
    journal.sync()
    journal.close()
    assert not (tmp_path / "sub").exists()


def test_leftover_files_excludes_the_given_path_and_other_suffixes(tmp_path: Path) -> None:
    for name in ("b.jsonl", "a.jsonl", "c.jsonl", "notes.txt", "d.jsonl.tmp", "e.json"):
        (tmp_path / name).write_text("", encoding="utf-8")
    current = tmp_path / "b.jsonl"

    assert leftover_files(tmp_path, exclude=current) == [tmp_path / "a.jsonl", tmp_path / "c.jsonl"]
    assert leftover_files(tmp_path) == [
        tmp_path / "a.jsonl",
        tmp_path / "b.jsonl",
        tmp_path / "c.jsonl",
    ]


def test_leftover_files_of_a_missing_directory_is_empty(tmp_path: Path) -> None:
    assert leftover_files(tmp_path / "missing") == []


def test_leftover_files_finds_another_runs_journal(tmp_path: Path) -> None:
    crashed = OutcomeJournal(tmp_path, "run-old")
    crashed.append(outcomes()[0])
    crashed.close()
    current = OutcomeJournal(tmp_path, "run-new")
    current.append(outcomes()[1])

    leftovers = leftover_files(tmp_path, exclude=current.path)

    current.close()
    assert leftovers == [crashed.path]
    assert [o.request.request_id for o in read_outcomes(leftovers[0])] == ["r1"]
