"""Records nobody planned for: every answer is kept, the rest of the chunk loads, and no later
run is blocked by one record.

Found by an outside test: one archived answer with a custom number of 2^64 - 1 failed its
chunk's load; every later run failed before it read the queue (the stuck package was retried
first); `archive_log` said `archived` for three contacts `contact_archives` did not hold, and
once the package was discarded the next run deleted the journal: three records gone. The same
class: text that is not valid Unicode once decoded (escapes of lone surrogates), nesting deeper
than the writers go, NUL in text, NaN, timestamps that overflow in UTC.
"""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from routera_archive_sandbox import SandboxServer
from tests.e2e.cli_support import RunCli, Target, cli_runner
from tests.misbehaving_api import MisbehavingApi

TOKEN = "poison-test-token"
ARCHIVED = "2026-06-01T10:00:00Z"


def body(contact_id: str, extra: str, archived: str = ARCHIVED) -> str:
    """A DELETE answer as text: `extra` is raw JSON members, so a test can write what
    `json.dumps` never would (lone surrogate escapes, NaN, a 5,000-deep array)."""
    return (
        f'{{"id": "{contact_id}", "archived": "{archived}", "archived_by": "api-client", '
        f'"email": "{contact_id}@example.com", {extra}}}'
    )


# contact id -> (its answer, what `contact_archives` holds in the poisoned field, or None when
# the answer cannot be a record and is kept in `archive_log` instead)
ANSWERS: dict[str, tuple[str, Any]] = {
    "c-plain": (body("c-plain", '"lead_score": 5'), 5),
    "c-uint64": (body("c-uint64", '"lead_score": 18446744073709551615'), "18446744073709551615"),
    "c-surrogate": (body("c-surrogate", '"nickname": "\\ud83d cut"'), "\\ud83d cut"),
    "c-nul": (body("c-nul", '"nickname": "a\\u0000b"'), "a\\x00b"),
    "c-nan": (body("c-nan", '"lead_score": NaN'), "NaN"),
    "c-deep": (body("c-deep", '"tree": ' + "[" * 300 + "]" * 300), "[" * 300 + "]" * 300),
    "c-too-deep": (body("c-too-deep", '"tree": ' + "[" * 5000 + "]" * 5000), None),
    "c-year-10000": (body("c-year-10000", '"x": 1', archived="9999-12-31T23:59:59-01:00"), None),
}
FIELD = {"c-uint64": "lead_score", "c-nan": "lead_score", "c-deep": "tree"}


@pytest.fixture
def api() -> Iterator[MisbehavingApi]:
    with MisbehavingApi.like_routera() as running:
        for contact_id, (text, _) in ANSWERS.items():
            running.answer("DELETE", f"/contacts/{contact_id}", 200, text, "application/json")
        running.answer("DELETE", "/contacts/c-new", 200, body("c-new", '"lead_score": 7'))
        yield running


@pytest.fixture
def cli(tmp_path: Path, idle_sandbox: SandboxServer, api: MisbehavingApi, target: Target) -> RunCli:
    settings = {
        "SOURCES__ROUTERA__BASE_URL": api.url,
        "SOURCES__ROUTERA__ACCESS_TOKEN": TOKEN,
        "SOURCES__ROUTERA__CLIENT_ID": None,
        "SOURCES__ROUTERA__CLIENT_SECRET": None,
        "SOURCES__ROUTERA__CHUNK_SIZE": "3",  # poison in several chunks, beside plain records
    }
    return cli_runner(idle_sandbox, tmp_path, settings, timeout=120, target=target)


def column_value(target: Target, contact_id: str, field: str) -> Any:
    """The field's value in the row, wherever dlt put it (its column or a text variant)."""
    columns = [
        row[0]
        for row in target.query(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = 'contact_archives'",
            target.dataset,
        )
    ]
    candidates = [
        c for c in columns if c in (field, f"{field}_as_text") or c.startswith(f"{field}__v_")
    ]
    values = target.query(
        f"SELECT {', '.join(candidates)} FROM contact_archives WHERE id = ?", contact_id
    )[0]
    present = [value for value in values if value is not None]
    assert len(present) == 1, (contact_id, field, dict(zip(candidates, values, strict=True)))
    return present[0]


def test_every_poison_record_is_kept_and_no_later_run_is_blocked(
    cli: RunCli, target: Target
) -> None:
    assert cli("enqueue", "-", stdin="\n".join(ANSWERS) + "\n").code == 0
    first = cli("run")

    # Two answers cannot be records (unreadable, a year beyond 9999): failed, kept, pending.
    assert first.code == 1, first.output
    assert "Traceback" not in first.output
    log = {
        cid: (status, error, body)
        for cid, status, error, body in target.query(
            "SELECT contact_id, status, error, response_body FROM archive_log"
        )
    }
    for contact_id, (text, expected) in ANSWERS.items():
        status, error, kept = log[contact_id]
        if expected is None:
            assert status == "failed", (contact_id, status, error)
            assert kept == text, contact_id  # the answer, whole, in archive_log
        else:
            assert status == "archived", (contact_id, status, error)
    assert "nests deeper" in log["c-too-deep"][1]
    assert "cannot be held as a UTC timestamp" in log["c-year-10000"][1]

    archived = dict(target.query("SELECT id, raw_response FROM contact_archives"))
    readable = {cid for cid, (_, expected) in ANSWERS.items() if expected is not None}
    assert set(archived) == readable
    for contact_id in readable:
        assert archived[contact_id] == ANSWERS[contact_id][0]  # as received, escapes and all
    assert column_value(target, "c-surrogate", "nickname") == "\\ud83d cut"
    assert column_value(target, "c-nul", "nickname") == "a\\x00b"
    for contact_id, field in FIELD.items():
        value = column_value(target, contact_id, field)
        assert str(value) == str(ANSWERS[contact_id][1]) or json.loads(str(value)) == json.loads(
            str(ANSWERS[contact_id][1])
        ), (contact_id, value)
    assert column_value(target, "c-plain", "lead_score") == 5

    # A later run with a new request: not blocked, and it archives the new request.
    assert cli("enqueue", "-", stdin="c-new\n").code == 0
    second = cli("run")
    assert "Traceback" not in second.output
    assert target.query("SELECT status FROM archive_log WHERE contact_id = 'c-new'") == [
        ("archived",)
    ]
    assert column_value(target, "c-new", "lead_score") == 7
    assert set(dict(target.query("SELECT id, run_id FROM contact_archives"))) == readable | {
        "c-new"
    }
