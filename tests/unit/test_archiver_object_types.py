"""Companies, deals and tickets through the client and the archiver (respx): every call goes to
the request's own type's path and nowhere else, a 404 is resolved there, the messages name the
type, and a flat `properties` list (the contacts') takes no snapshot and sends no `properties`
for them (per-type names: test_properties_per_type)."""

import json
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from routera_archive.calls.archiver import archive_concurrently
from routera_archive.http.client import RouteraClient
from routera_archive.models import ArchiveOutcome, ArchiveRequest, Status
from routera_archive.objects import ObjectType
from tests.unit.test_archiver import Harness, contact, json_response

OTHER_TYPES = [ObjectType.COMPANIES, ObjectType.DEALS, ObjectType.TICKETS]
OWN_FIELDS = {
    ObjectType.CONTACTS: {"first_name": "Ada", "email": "ada@example.com"},
    ObjectType.COMPANIES: {"company_name": "Acme", "industry": "retail"},
    ObjectType.DEALS: {"deal_name": "Renewal", "deal_stage": "won"},
    ObjectType.TICKETS: {"ticket_name": "Printer on fire", "pipeline": "support"},
}
PROPERTIES = ["lead_score"]
NOT_FOUND = {"message": "Object not found or already archived", "error": True}


def record(kind: ObjectType, object_id: str = "x1", **fields: Any) -> dict[str, Any]:
    """An archived record of `kind`: the archiver tests' contact, with the type's own fields."""
    body = contact(object_id, external_id=f"ext-{kind.singular}-1")
    if kind is not ObjectType.CONTACTS:
        del body["first_name"]
    return {**body, **OWN_FIELDS[kind], **fields}


def request_for(
    kind: ObjectType, object_id: str | None = "x1", request_id: str = "r1"
) -> ArchiveRequest:
    return ArchiveRequest(request_id=request_id, object_type=kind, object_id=object_id)


def elsewhere(h: Harness) -> Any:
    """A route for every call not on a path the test expects: it must stay uncalled."""
    return h.router.route().respond(418, json={"message": "wrong path", "error": True})


def paths(route: Any) -> list[tuple[str, bytes]]:
    return [(call.request.method, call.request.url.raw_path) for call in route.calls]


# --- DELETE 200 ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", OTHER_TYPES)
def test_delete_200_archives_the_record_on_its_own_type_s_path(kind: ObjectType) -> None:
    h = Harness()
    body = json.dumps(record(kind, custom_tier="gold"))
    delete = h.router.delete(f"/{kind.value}/x1").mock(return_value=json_response(200, body))
    other = elsewhere(h)

    outcome = h.archive(request_for(kind))

    assert outcome.status is Status.ARCHIVED, outcome.error
    assert outcome.request.object_type is kind
    assert outcome.record == json.loads(body) and outcome.raw_response == body
    assert outcome.record_source == "delete" and not outcome.recovered
    assert delete.call_count == 1
    assert not other.called


# --- DELETE 404, resolved by a GET on the same path --------------------------------------------


@pytest.mark.parametrize("kind", OTHER_TYPES)
def test_404_then_get_on_its_own_path_is_already_archived(kind: ObjectType) -> None:
    h = Harness(properties=PROPERTIES)
    delete = h.router.delete(f"/{kind.value}/x1").respond(404, json=NOT_FOUND)
    get_body = json.dumps(record(kind))
    get = h.router.get(f"/{kind.value}/x1").mock(return_value=json_response(200, get_body))
    other = elsewhere(h)

    outcome = h.archive(request_for(kind))

    assert outcome.status is Status.ALREADY_ARCHIVED, outcome.error
    assert outcome.recovered and outcome.record_source == "get"
    assert outcome.record == json.loads(get_body) and outcome.raw_response == get_body
    assert outcome.http_status == 404 and outcome.attempts == 2
    assert delete.call_count == 1 and get.call_count == 1
    # A flat `properties` list names contact fields: a read of another type asks for none.
    assert "properties" not in get.calls.last.request.url.params
    assert not other.called


@pytest.mark.parametrize("kind", OTHER_TYPES)
def test_404_then_get_404_on_its_own_path_is_not_found(kind: ObjectType) -> None:
    h = Harness()
    h.router.delete(f"/{kind.value}/x1").respond(404, json=NOT_FOUND)
    get = h.router.get(f"/{kind.value}/x1").respond(
        404, json={"message": "Object not found", "error": True}
    )
    other = elsewhere(h)

    outcome = h.archive(request_for(kind))

    assert outcome.status is Status.NOT_FOUND
    assert outcome.record is None and outcome.attempts == 2
    assert get.call_count == 1
    assert not other.called


# --- a flat properties list: a snapshot for contacts only -------------------------------------


@pytest.mark.parametrize("kind", OTHER_TYPES)
def test_with_properties_another_type_is_archived_without_a_snapshot(kind: ObjectType) -> None:
    h = Harness(properties=PROPERTIES)
    route = h.router.route(path__startswith=f"/{kind.value}/").mock(
        return_value=json_response(200, json.dumps(record(kind)))
    )
    other = elsewhere(h)

    outcome = h.archive(request_for(kind))

    assert outcome.status is Status.ARCHIVED, outcome.error
    assert outcome.record_source == "delete" and outcome.snapshot_response is None
    assert paths(route) == [("DELETE", f"/{kind.value}/x1".encode())]
    assert not other.called


def test_with_properties_a_contact_still_gets_its_snapshot_first() -> None:
    """The other side of the test above: what a contacts request did, it still does."""
    kind = ObjectType.CONTACTS
    h = Harness(properties=PROPERTIES)
    active = record(kind, archived=False, lead_score=7)
    del active["archived_by"]
    get = h.router.get("/contacts/x1").mock(return_value=json_response(200, json.dumps(active)))
    delete = h.router.delete("/contacts/x1").mock(
        return_value=json_response(200, json.dumps(record(kind)))
    )
    other = elsewhere(h)

    outcome = h.archive(request_for(kind))

    assert outcome.status is Status.ARCHIVED, outcome.error
    assert outcome.record_source == "snapshot+delete"
    assert outcome.record is not None and outcome.record["lead_score"] == 7
    assert get.calls.last.request.url.params["properties"] == "lead_score"
    assert get.call_count == 1 and delete.call_count == 1
    assert not other.called


# --- the messages name the type ----------------------------------------------------------------


@pytest.mark.parametrize("kind", list(ObjectType))
def test_a_delete_200_for_another_record_is_failed_in_the_type_s_words(kind: ObjectType) -> None:
    h = Harness()
    body = json.dumps(record(kind, "someone-else"))
    h.router.delete(f"/{kind.value}/x1").mock(return_value=json_response(200, body))

    outcome = h.archive(request_for(kind))

    assert outcome.status is Status.FAILED
    assert outcome.error == (
        f"DELETE answered 200 but the record is for {kind.singular} 'someone-else', not 'x1'; "
        f"the next run re-reads the {kind.singular}"
    )
    assert outcome.raw_response == body


@pytest.mark.parametrize("kind", list(ObjectType))
@pytest.mark.parametrize(
    ("fields", "says"),
    [
        (
            {"archived": True},
            "the record is not an archived {singular} (`archived`: Value error, expected an ISO "
            "8601 timestamp, got bool True)",
        ),
        (
            {"id": ["x1"]},
            "the record is not an archived {singular} (`id`: Value error, expected the "
            "{singular} id as text, got ['x1'])",
        ),
    ],
)
def test_a_record_that_is_not_archived_is_named_by_its_type(
    kind: ObjectType, fields: dict[str, Any], says: str
) -> None:
    h = Harness()
    h.router.delete(f"/{kind.value}/x1").respond(404, json=NOT_FOUND)
    h.router.get(f"/{kind.value}/x1").mock(
        return_value=json_response(200, json.dumps(record(kind, **fields)))
    )

    outcome = h.archive(request_for(kind))

    assert outcome.status is Status.FAILED
    expected = says.format(singular=kind.singular)
    assert outcome.error == f"DELETE answered 404; GET answered 200 but {expected}"


@pytest.mark.parametrize("kind", list(ObjectType))
def test_a_404_with_the_record_active_is_failed_in_the_type_s_words(kind: ObjectType) -> None:
    h = Harness()
    h.router.delete(f"/{kind.value}/x1").respond(404, json=NOT_FOUND)
    h.router.get(f"/{kind.value}/x1").mock(
        return_value=json_response(200, json.dumps(record(kind, archived=False)))
    )

    outcome = h.archive(request_for(kind))

    assert outcome.status is Status.FAILED
    assert outcome.error == (
        "DELETE answered 404 (not found or already archived) but GET shows the "
        f"{kind.singular} active; nothing was archived"
    )


@pytest.mark.parametrize("kind", list(ObjectType))
def test_a_possibly_lost_answer_then_not_found_is_noted_in_the_type_s_words(
    kind: ObjectType,
) -> None:
    h = Harness(max_attempts=3)
    h.router.delete(f"/{kind.value}/x1").side_effect = [
        httpx.Response(503),
        httpx.Response(404, json=NOT_FOUND),
    ]
    h.router.get(f"/{kind.value}/x1").respond(
        404, json={"message": "Object not found", "error": True}
    )

    outcome = h.archive(request_for(kind))

    assert outcome.status is Status.NOT_FOUND
    assert outcome.error == (
        "an earlier DELETE attempt may have reached Routera (HTTP 503), yet GET finds no such "
        f"{kind.singular}"
    )


# --- ids: the same rules, under the type's own path --------------------------------------------


@pytest.mark.parametrize("kind", OTHER_TYPES)
@pytest.mark.parametrize(
    ("object_id", "segment"),
    [
        ("a/b", b"a%2Fb"),
        ("%2F", b"%252F"),
        ("a b", b"a%20b"),
        ("../contacts/c1", b"..%2Fcontacts%2Fc1"),
        ("?x#y", b"%3Fx%23y"),
    ],
)
def test_a_hostile_id_is_one_segment_under_its_own_type_s_path(
    kind: ObjectType, object_id: str, segment: bytes
) -> None:
    h = Harness()
    route = h.router.route(method="DELETE").mock(
        return_value=json_response(200, json.dumps(record(kind, object_id)))
    )

    outcome = h.archive(request_for(kind, object_id))

    assert outcome.status is Status.ARCHIVED, outcome.error
    raw_path = route.calls.last.request.url.raw_path
    assert raw_path == f"/{kind.value}/".encode() + segment
    assert unquote(raw_path.removeprefix(f"/{kind.value}/".encode()).decode()) == object_id
    assert route.call_count == 1


@pytest.mark.parametrize("kind", OTHER_TYPES)
@pytest.mark.parametrize(
    ("object_id", "reason"),
    [
        (None, "object_id is NULL"),
        ("..", "object_id '..' is a path dot-segment"),
        ("x1 ", "object_id has leading or trailing whitespace"),
        ("\t", "object_id is blank"),
    ],
)
def test_an_invalid_id_of_another_type_is_invalid_without_a_call(
    kind: ObjectType, object_id: str | None, reason: str
) -> None:
    h = Harness()
    route = h.router.route().respond(200, json=record(kind))

    outcome = h.archive(request_for(kind, object_id))

    assert outcome.status is Status.INVALID
    assert outcome.error == reason
    assert not route.called


def test_an_invalid_contact_id_keeps_its_words() -> None:
    h = Harness()
    route = h.router.route().respond(200, json=record(ObjectType.CONTACTS))

    outcome = h.archive(ArchiveRequest(request_id="r1", contact_id=None))

    assert outcome.status is Status.INVALID and outcome.error == "contact_id is NULL"
    assert not route.called


def test_the_same_id_as_a_contact_and_as_a_company_is_two_calls_on_two_paths() -> None:
    h = Harness(concurrency=2)
    contact = h.router.delete("/contacts/same").mock(
        return_value=json_response(200, json.dumps(record(ObjectType.CONTACTS, "same")))
    )
    company = h.router.delete("/companies/same").mock(
        return_value=json_response(200, json.dumps(record(ObjectType.COMPANIES, "same")))
    )
    other = elsewhere(h)
    wanted = [
        request_for(ObjectType.CONTACTS, "same", "r-contact"),
        request_for(ObjectType.COMPANIES, "same", "r-company"),
    ]

    async def scenario(client: RouteraClient) -> list[ArchiveOutcome]:
        return [o async for o in archive_concurrently(client, wanted, workers=2)]

    outcomes = {o.request.request_id: o for o in h.run(scenario)}

    assert {rid: o.status for rid, o in outcomes.items()} == {
        "r-contact": Status.ARCHIVED,
        "r-company": Status.ARCHIVED,
    }
    assert outcomes["r-company"].record == record(ObjectType.COMPANIES, "same")
    assert contact.call_count == 1 and company.call_count == 1
    assert not other.called


# --- the client's other routes -----------------------------------------------------------------


@pytest.mark.parametrize("kind", list(ObjectType))
def test_list_objects_lists_the_type_s_own_collection(kind: ObjectType) -> None:
    h = Harness(properties=PROPERTIES)
    page = {"data": [record(kind)], "pagination": {"limit": 10, "offset": 0, "count": 1}}
    route = h.router.get(f"/{kind.value}").respond(200, json=page)
    other = elsewhere(h)

    answer = h.run(lambda c: c.list_objects(kind, archived=False, limit=10, offset=0))

    assert answer.json() == page
    # A flat `properties` list is the contacts' (per type: a table, issue 14).
    asked = "&properties=lead_score" if kind is ObjectType.CONTACTS else ""
    assert route.calls.last.request.url.query == f"archived=false&limit=10&offset=0{asked}".encode()
    assert not other.called


@pytest.mark.parametrize("kind", list(ObjectType))
def test_create_object_posts_to_the_type_s_own_collection(kind: ObjectType) -> None:
    h = Harness()
    route = h.router.post(f"/{kind.value}").respond(201, json=record(kind))
    other = elsewhere(h)

    answer = h.run(lambda c: c.create_object(kind, dict(OWN_FIELDS[kind])))

    assert answer.status_code == 201
    assert json.loads(route.calls.last.request.content) == {"fields": OWN_FIELDS[kind]}
    assert not other.called


@pytest.mark.parametrize("kind", OTHER_TYPES)
def test_a_request_of_another_type_survives_the_trip_to_the_call_worker(
    kind: ObjectType,
) -> None:
    """ArchiveRequest travels as JSON (to the worker, into the journal): its type with it."""
    wanted = request_for(kind, "a/b\tc")
    line = wanted.model_dump_json()
    assert json.loads(line)["object_type"] == kind.value
    assert ArchiveRequest.model_validate_json(line) == wanted
