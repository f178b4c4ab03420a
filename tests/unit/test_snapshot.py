"""With `properties` set, each contact is read before its DELETE (a snapshot), against respx:
the record is the snapshot overlaid with the DELETE's answer, and no path that fails the
snapshot sends a DELETE.

Routera's reference says a DELETE answer holds only the default properties; the snapshot is
how a record keeps its custom fields whatever the answer holds (issue 13)."""

import json
from typing import Any

import httpx
import pytest

from routera_archive.errors import ConfigurationError
from routera_archive.models import Status
from routera_archive.run.guardrails import probe_account
from tests.unit.test_archiver import ARCHIVED_AT, Harness, contact, json_response, request

PROPERTIES = ["lead_score", "Lead Source"]
ASKED = "lead_score,Lead Source"


def active(**fields: Any) -> dict[str, Any]:
    """The snapshot of an active contact with its custom fields."""
    body = contact(archived=False, updated_at="2026-05-02T10:00:00.000Z", **fields)
    del body["archived_by"]
    return body


def defaults_only() -> dict[str, Any]:
    """A DELETE answer as the reference reads: default properties and `archived_by`."""
    return contact(first_name="Ada")


def snapshot_harness(**config: Any) -> Harness:
    return Harness(properties=PROPERTIES, **config)


def test_the_record_is_the_snapshot_overlaid_with_the_delete_answer() -> None:
    h = snapshot_harness()
    snapshot_body = json.dumps(active(lead_score=7, **{"Lead Source": "web"}, first_name="Old"))
    delete_body = json.dumps(defaults_only())
    get = h.router.get("/contacts/c1").mock(return_value=json_response(200, snapshot_body))
    delete = h.router.delete("/contacts/c1").mock(return_value=json_response(200, delete_body))

    outcome = h.archive(request())

    assert outcome.status is Status.ARCHIVED
    assert get.calls.last.request.url.params["properties"] == ASKED
    assert "properties" not in delete.calls.last.request.url.params  # the page lists none
    assert outcome.record is not None
    assert outcome.record["lead_score"] == 7 and outcome.record["Lead Source"] == "web"
    # The DELETE's values win for every key it carries.
    assert outcome.record["first_name"] == "Ada"
    assert outcome.record["archived"] == ARCHIVED_AT
    assert outcome.record["archived_by"] == "user-uuid"
    assert outcome.record["updated_at"] == ARCHIVED_AT
    assert outcome.raw_response == delete_body and outcome.snapshot_response == snapshot_body
    assert outcome.record_source == "snapshot+delete"
    assert outcome.attempts == 2 and not outcome.recovered


def test_the_snapshot_comes_before_the_delete() -> None:
    h = snapshot_harness()
    order: list[str] = []

    def answer(body: dict[str, Any]) -> Any:
        def respond(sent: httpx.Request) -> httpx.Response:
            order.append(sent.method)
            return json_response(200, json.dumps(body))

        return respond

    h.router.get("/contacts/c1").mock(side_effect=answer(active(lead_score=1)))
    h.router.delete("/contacts/c1").mock(side_effect=answer(defaults_only()))

    h.archive(request())

    assert order == ["GET", "DELETE"]


def test_a_snapshot_404_is_not_found_and_sends_no_delete() -> None:
    h = snapshot_harness()
    h.router.get("/contacts/c1").mock(
        return_value=json_response(404, '{"message": "Object not found", "error": true}')
    )
    delete = h.router.delete("/contacts/c1").respond(200)

    outcome = h.archive(request())

    assert outcome.status is Status.NOT_FOUND and outcome.http_status == 404
    assert not delete.called


def test_a_snapshot_showing_the_contact_archived_is_already_archived_from_it() -> None:
    h = snapshot_harness()
    body = json.dumps(contact(lead_score=3))
    h.router.get("/contacts/c1").mock(return_value=json_response(200, body))
    delete = h.router.delete("/contacts/c1").respond(200)

    outcome = h.archive(request())

    assert outcome.status is Status.ALREADY_ARCHIVED and outcome.recovered
    assert outcome.record is not None and outcome.record["lead_score"] == 3
    assert outcome.record_source == "get" and outcome.snapshot_response == body
    assert not delete.called


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (httpx.Response(503), "the snapshot (GET with properties) gave up"),
        (
            json_response(400, '{"message": "invalid properties", "error": true}'),
            "answered 400: invalid properties",
        ),
        (json_response(200, '{"id": "other", "archived": false}'), "the snapshot is for contact"),
        (json_response(200, "[1, 2]"), "not an object"),
        (json_response(200, '{"id": "c1", "archived": "yesterday"}'), "archived"),
        (json_response(404, "<html>nginx</html>"), "without Routera's error body"),
    ],
    ids=["retries-exhausted", "400", "another-contact", "not-an-object", "bad-archived", "proxy"],
)
def test_a_snapshot_that_fails_is_failed_and_sends_no_delete(
    answer: httpx.Response, words: str
) -> None:
    h = snapshot_harness(max_attempts=2)
    h.router.get("/contacts/c1").mock(return_value=answer)
    delete = h.router.delete("/contacts/c1").respond(200)

    outcome = h.archive(request())

    assert outcome.status is Status.FAILED
    assert words in (outcome.error or "")
    assert not delete.called


def test_the_get_after_a_delete_404_asks_for_the_properties_too() -> None:
    """The contact was archived by someone else between the snapshot and the DELETE."""
    h = snapshot_harness()
    reads = iter([active(lead_score=5), contact(lead_score=5)])
    get = h.router.get("/contacts/c1").mock(
        side_effect=lambda _: json_response(200, json.dumps(next(reads)))
    )
    h.router.delete("/contacts/c1").mock(
        return_value=json_response(404, '{"message": "Object not found", "error": true}')
    )

    outcome = h.archive(request())

    assert outcome.status is Status.ALREADY_ARCHIVED
    assert outcome.record is not None and outcome.record["lead_score"] == 5
    assert [call.request.url.params["properties"] for call in get.calls] == [ASKED, ASKED]


def test_without_properties_there_is_no_snapshot() -> None:
    h = Harness()
    get = h.router.get("/contacts/c1").respond(500)
    h.router.delete("/contacts/c1").mock(
        return_value=json_response(200, json.dumps(defaults_only()))
    )

    outcome = h.archive(request())

    assert outcome.status is Status.ARCHIVED and outcome.record_source == "delete"
    assert outcome.snapshot_response is None and not get.called


def test_the_first_call_checks_the_names_and_an_unknown_one_stops_the_run() -> None:
    h = snapshot_harness()
    listed = h.router.get("/contacts").mock(
        return_value=json_response(
            400, '{"message": "Unknown properties: Lead Source", "error": true}'
        )
    )

    with pytest.raises(ConfigurationError) as refused:
        h.run(lambda c: probe_account(c.list_objects, PROPERTIES))

    assert listed.calls.last.request.url.params["properties"] == ASKED
    assert "Routera refused the properties setting (lead_score, Lead Source)" in str(refused.value)
    assert "Unknown properties: Lead Source" in str(refused.value)
    assert refused.value.exit_code == 2
