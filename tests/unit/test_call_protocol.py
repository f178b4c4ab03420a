"""The run <-> call worker lines: whatever an id or an API body holds, a line stays one line and
an outcome comes back exactly as it went."""

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from routera_archive.calls import protocol
from routera_archive.models import ArchiveOutcome, ArchiveRequest, Status

HOSTILE = "a\tb\nc\r\u2028d\u0085e\x00f\\t\"g'"


def test_a_payload_with_tabs_and_line_breaks_stays_one_line_and_comes_back_whole() -> None:
    outcome = ArchiveOutcome(
        request=ArchiveRequest(
            request_id=HOSTILE, contact_id=HOSTILE, requested_at=datetime(2026, 1, 2, tzinfo=UTC)
        ),
        status=Status.ARCHIVED,
        http_status=200,
        attempts=2,
        record={"id": HOSTILE, "archived": "2026-01-02T00:00:00Z", "nested": {"k": [HOSTILE]}},
        raw_response=HOSTILE,
        record_source="delete",
    )
    line = protocol.encode(protocol.OUTCOME, "17", outcome.model_dump_json())

    assert line.count(b"\n") == 1 and line.endswith(b"\n")
    kind, parts = protocol.decode(line, 2)
    assert kind == protocol.OUTCOME
    assert parts[0] == "17"
    assert ArchiveOutcome.model_validate_json(parts[1]) == outcome


@given(st.text())
def test_any_request_round_trips(text: str) -> None:
    request = ArchiveRequest(request_id=text or "r", contact_id=text)
    kind, parts = protocol.decode(protocol.encode(protocol.ARCHIVE, request.model_dump_json()))
    assert kind == protocol.ARCHIVE
    assert ArchiveRequest.model_validate_json(parts[0]) == request


def test_a_message_without_payload_decodes_to_no_parts() -> None:
    assert protocol.decode(protocol.encode(protocol.END)) == (protocol.END, [])
