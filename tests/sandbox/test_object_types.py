"""Companies, deals and tickets next to contacts: the same routes, answers and errors per type.

Each type has its own default fields, custom fields, ids and statistics; contacts stay exactly as
they were (their ids under a seed are pinned here, as the benchmarks compute them). Most tests
share one module-scoped server and touch only records they create; those that need exact counts
or another config start their own.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import httpx
import pytest

from routera_archive_sandbox import FaultConfig, SandboxConfig, SandboxServer, SandboxState
from routera_archive_sandbox.seed import (
    COMMON_FIELDS,
    DEAL_PIPELINES,
    OBJECT_TYPES,
    USERS,
    contact_rng,
    object_rng,
    random_uuid4,
)

CLIENT_ID = "types-client"
CLIENT_SECRET = "types-secret"
ISO_MS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
NOT_FOUND = {"message": "Object not found", "error": True}
NOT_FOUND_OR_ARCHIVED = {"message": "Object not found or already archived", "error": True}
TYPES = ("contacts", "companies", "deals", "tickets")
OTHER_TYPES = ("companies", "deals", "tickets")
# The reference's table of default response fields, in the published example's order.
DEFAULTS = {
    "contacts": ["first_name", "last_name", "email", "contact_owner"],
    "companies": ["company_name", "description", "industry", "company_owner"],
    "deals": ["deal_name", "pipeline", "deal_stage", "deal_owner"],
    "tickets": ["ticket_name", "pipeline", "ticket_owner"],
}
DEFAULT_ANSWER = {name: [*COMMON_FIELDS, *own] for name, own in DEFAULTS.items()}
# One identifying field each, enough to create a record.
NAME_FIELD = {
    "contacts": "first_name",
    "companies": "company_name",
    "deals": "deal_name",
    "tickets": "ticket_name",
}
SINGULAR = {"contacts": "contact", "companies": "company", "deals": "deal", "tickets": "ticket"}
COUNTS = {"contacts": 5, "companies": 25, "deals": 12, "tickets": 7}
CONFIG = SandboxConfig(port=0, seed=3, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, **COUNTS)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextmanager
def authed(server: SandboxServer) -> Iterator[httpx.Client]:
    """A client of `server` holding a token of the configured client."""
    with httpx.Client(base_url=server.url, timeout=5) as client:
        form = {"grant_type": "client_credentials"}
        token = client.post("/oauth2/token", data=form, auth=(CLIENT_ID, CLIENT_SECRET))
        assert token.status_code == 200, token.text
        client.headers.update(bearer(token.json()["access_token"]))
        yield client


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer(CONFIG) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: SandboxServer) -> Iterator[httpx.Client]:
    with authed(server) as http:
        yield http


@pytest.fixture
def make_server() -> Iterator[Callable[..., SandboxServer]]:
    started: list[SandboxServer] = []

    def start(state: SandboxState | None = None, **overrides: Any) -> SandboxServer:
        running = SandboxServer(replace(CONFIG, **overrides), state).start()
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


def create(client: httpx.Client, object_type: str, **fields: Any) -> dict[str, Any]:
    body = {"fields": {NAME_FIELD[object_type]: f"Test {uuid.uuid4().hex[:8]}", **fields}}
    response = client.post(f"/{object_type}", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def list_all(client: httpx.Client, object_type: str, **params: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    while True:
        query = {"limit": 10, "offset": len(rows), **params}
        page = client.get(f"/{object_type}", params=query).json()["data"]
        if not page:
            return rows
        rows += page


# -- seeding -------------------------------------------------------------------------------------


def test_contact_ids_are_the_ones_they_always_were() -> None:
    """Pinned: the benchmarks and tests compute contact ids from `contact_rng`; a new type must
    not move them (these are the ids the sandbox gave before it served other types)."""
    state = SandboxState(contacts=200, seed=0)
    ids = state.contact_ids()
    assert [ids[0], ids[1], ids[199]] == [
        "c13e74d4-7919-480d-8273-ad5166b48a3e",
        "d8eb20eb-5dfe-4ba2-8dfd-0c915b11b8b9",
        "f5c5d0ed-5c87-47f1-b5c4-958e0ace0960",
    ]
    assert ids == [random_uuid4(contact_rng(0, index)) for index in range(200)]
    assert SandboxState(contacts=1, seed=3).contact_ids() == [
        "f8313b6c-07a8-4929-a125-617571ff5797"
    ]
    # Seeding other types changes nothing of the contacts.
    alone = SandboxState(contacts=30, companies=0, deals=0, tickets=0, seed=4).snapshot()
    assert SandboxState(contacts=30, companies=90, deals=7, tickets=1, seed=4).snapshot() == alone


def test_each_type_has_its_own_ids_per_seed_and_index() -> None:
    state = SandboxState(contacts=40, companies=40, deals=40, tickets=40, seed=9)
    ids = {name: state.object_ids(name) for name in TYPES}
    for name in TYPES:
        assert len(set(ids[name])) == 40
        assert ids[name] == [
            random_uuid4(object_rng(OBJECT_TYPES[name], 9, index)) for index in range(40)
        ]
        assert all(uuid.UUID(i).version == 4 for i in ids[name])
    every = [i for name in TYPES for i in ids[name]]
    assert len(set(every)) == len(every)  # index i of two types never shares an id
    # Record i of a type does not depend on the counts (only its timestamps on its own count).
    fewer = SandboxState(contacts=0, companies=10, deals=3, tickets=0, seed=9)
    strip = ("created_at", "updated_at")
    for name, count in (("companies", 10), ("deals", 3)):
        assert [{k: v for k, v in r.items() if k not in strip} for r in fewer.snapshot(name)] == [
            {k: v for k, v in r.items() if k not in strip} for r in state.snapshot(name)[:count]
        ]
    other_seed = SandboxState(contacts=0, companies=40, deals=0, tickets=0, seed=10)
    assert set(other_seed.object_ids("companies")).isdisjoint(ids["companies"])


def test_created_ids_differ_per_type_and_contacts_keep_theirs() -> None:
    """Records created through the API get seeded ids too: per type, so the first contact and
    the first company created are not the same id, and contacts' are what they always were."""
    state = SandboxState(contacts=0, companies=0, deals=0, tickets=0, seed=5)
    first = [state.create_object(t, {NAME_FIELD[t]: "X"})["id"] for t in TYPES]
    assert len(set(first)) == len(TYPES)
    assert first[0] == "d05b8409-4a9c-4f6e-a2f8-254e3998c2fa"  # pinned before other types
    # Creating companies does not move the next contact's id.
    assert state.create_contact({"first_name": "Y"})["id"] == (
        "2d31e407-5097-45ab-a8f5-bfa40ddfd0b5"
    )


@pytest.mark.parametrize("object_type", OTHER_TYPES)
def test_seeded_records_look_real(object_type: str) -> None:
    records = SandboxState(contacts=0, companies=300, deals=300, tickets=300).snapshot(object_type)
    assert len(records) == 300
    created = [r["created_at"] for r in records]
    assert created == sorted(created)
    kind = OBJECT_TYPES[object_type]
    prefix = {"companies": "ext-co-", "deals": "ext-deal-", "tickets": "ext-tkt-"}[object_type]
    for record in records:
        assert list(record)[: len(DEFAULT_ANSWER[object_type])] == DEFAULT_ANSWER[object_type]
        assert record["archived"] is False and "archived_by" not in record
        assert ISO_MS.fullmatch(record["created_at"]) and ISO_MS.fullmatch(record["updated_at"])
        assert record["created_at"] <= record["updated_at"]
        assert record["external_id"] is None or re.fullmatch(
            re.escape(prefix) + r"\d{5}", record["external_id"]
        )
        assert record[NAME_FIELD[object_type]]  # the identifying field is always set
        owner = record[kind.owner_field]
        assert owner is None or owner in {email for _, email in USERS}
        assert set(record) <= {*DEFAULT_ANSWER[object_type], *(s.name for s in kind.custom_fields)}
    assert any(r["external_id"] is None for r in records)
    assert any(r[kind.owner_field] is None for r in records)
    if object_type == "deals":  # a deal's stage is one of its pipeline's
        assert {r["pipeline"] for r in records} == set(DEAL_PIPELINES)
        assert all(r["deal_stage"] in DEAL_PIPELINES[r["pipeline"]] for r in records)


def test_custom_fields_cover_every_documented_kind_on_every_type() -> None:
    state = SandboxState(contacts=300, companies=300, deals=300, tickets=300)
    user_ids = {user_id for user_id, _ in USERS}
    checks: dict[str, Callable[[Any], bool]] = {
        "text": lambda v: isinstance(v, str) and v != "",
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "checkbox": lambda v: isinstance(v, bool),
        "date": lambda v: isinstance(v, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", v) is not None,
        "user": lambda v: v in user_ids,
    }
    names: dict[str, set[str]] = {}
    for object_type in TYPES:
        kind = OBJECT_TYPES[object_type]
        records = state.snapshot(object_type)
        assert {spec.kind for spec in kind.custom_fields} == {*checks, "dropdown"}, object_type
        names[object_type] = {spec.name for spec in kind.custom_fields}
        for spec in kind.custom_fields:
            values = [r[spec.name] for r in records if spec.name in r]
            assert values, (object_type, spec.name)
            if spec.kind == "dropdown":
                assert {v for v in values if v is not None} <= set(spec.options)
            else:
                assert all(v is None or checks[spec.kind](v) for v in values), spec.name
            if spec.presence < 1:
                assert len(values) < len(records), spec.name  # some records lack the key
        odd = [n for n in names[object_type] if n != n.lower() or not n.isidentifier()]
        assert odd, f"{object_type} has no odd internal name"
    assert "lead_source" in names["contacts"] & names["deals"]  # shared across types
    assert {"annual_revenue", "account_manager"} <= names["contacts"] & names["companies"]
    assert "phone" not in names["companies"] | names["deals"] | names["tickets"]  # one type's


# -- the routes of each type ---------------------------------------------------------------------


@pytest.mark.parametrize("object_type", OTHER_TYPES)
def test_list_paginates_and_filters_archived(
    make_server: Callable[..., SandboxServer], object_type: str
) -> None:
    server = make_server()
    count = COUNTS[object_type]
    with authed(server) as client:
        ids = server.state.object_ids(object_type)
        assert len(ids) == count
        first = client.get(f"/{object_type}").json()
        assert first["pagination"] == {"limit": 10, "offset": 0, "count": count}
        assert [r["id"] for r in list_all(client, object_type)] == ids
        page = client.get(f"/{object_type}", params={"limit": 3, "offset": 2}).json()
        assert [r["id"] for r in page["data"]] == ids[2:5]

        archived = {ids[0], ids[-1]}
        for object_id in archived:
            assert client.delete(f"/{object_type}/{object_id}").status_code == 200
        active = client.get(f"/{object_type}", params={"limit": 100}).json()
        assert active["pagination"]["count"] == count - 2
        assert [r["id"] for r in active["data"]] == [i for i in ids if i not in archived]
        everything = client.get(f"/{object_type}", params={"limit": 100, "archived": "true"})
        assert everything.json()["pagination"]["count"] == count
        for record in everything.json()["data"]:
            if record["id"] in archived:
                assert ISO_MS.fullmatch(record["archived"]) and record["archived_by"] == CLIENT_ID
            else:
                assert record["archived"] is False
        assert client.get(f"/{object_type}", params={"limit": 101}).status_code == 400
        # Contacts were not touched.
        assert client.get("/contacts").json()["pagination"]["count"] == COUNTS["contacts"]


@pytest.mark.parametrize("object_type", OTHER_TYPES)
def test_create_get_and_patch(
    server: SandboxServer, client: httpx.Client, object_type: str
) -> None:
    record = create(client, object_type, external_id="ext-new", **{"Odd Key!": 3})
    assert list(record)[: len(DEFAULT_ANSWER[object_type])] == DEFAULT_ANSWER[object_type]
    assert uuid.UUID(record["id"]).version == 4
    assert record["archived"] is False and record["external_id"] == "ext-new"
    assert record["Odd Key!"] == 3
    assert ISO_MS.fullmatch(record["created_at"]) and record["updated_at"] == record["created_at"]
    owner = OBJECT_TYPES[object_type].owner_field
    assert record[owner] is None  # a default field never written is present, null
    path = f"/{object_type}/{record['id']}"
    assert client.get(path).json() == record == server.state.get_object(object_type, record["id"])
    assert server.state.get_contact(record["id"]) is None  # not a contact

    patched = client.patch(path, json={"fields": {owner: "jane@example.com", "Odd Key!": 4}})
    assert patched.status_code == 200
    body = patched.json()
    assert body[owner] == "jane@example.com" and body["Odd Key!"] == 4
    assert body[NAME_FIELD[object_type]] == record[NAME_FIELD[object_type]]
    assert body["updated_at"] > record["updated_at"]
    assert client.get(path).json() == body

    missing = client.get(f"/{object_type}/{uuid.uuid4()}")
    assert (missing.status_code, missing.json()) == (404, NOT_FOUND)
    unknown = client.patch(f"/{object_type}/{uuid.uuid4()}", json={"fields": {"x": 1}})
    assert (unknown.status_code, unknown.json()) == (404, NOT_FOUND)
    read_only = client.patch(path, json={"fields": {"archived": False}})
    assert read_only.status_code == 400


@pytest.mark.parametrize("object_type", OTHER_TYPES)
def test_create_needs_the_name_field(client: httpx.Client, object_type: str) -> None:
    before = client.get(f"/{object_type}").json()["pagination"]["count"]
    # A contact's identifying fields do not identify another type.
    for fields in ({"external_id": "x"}, {"email": "a@example.com", "first_name": "Ada"}):
        response = client.post(f"/{object_type}", json={"fields": fields})
        assert response.status_code == 400
        assert response.json() == {
            "message": f"A {SINGULAR[object_type]} needs {NAME_FIELD[object_type]}",
            "error": True,
        }
    empty = client.post(f"/{object_type}", json={"fields": {NAME_FIELD[object_type]: ""}})
    assert empty.status_code == 400
    assert client.post(f"/{object_type}", content=b"{").status_code == 400
    assert client.get(f"/{object_type}").json()["pagination"]["count"] == before


@pytest.mark.parametrize("object_type", OTHER_TYPES)
def test_delete_archives_once_then_patch_is_409(
    server: SandboxServer, client: httpx.Client, object_type: str
) -> None:
    record = create(client, object_type)
    path = f"/{object_type}/{record['id']}"
    first = client.delete(path)
    assert first.status_code == 200
    body = first.json()
    assert list(body) == [*record, "archived_by"]
    assert ISO_MS.fullmatch(body["archived"]) and body["updated_at"] == body["archived"]
    assert body["archived_by"] == CLIENT_ID
    second = client.delete(path)
    assert (second.status_code, second.json()) == (404, NOT_FOUND_OR_ARCHIVED)
    assert client.get(path).json() == body  # archived records are still read
    archived = client.patch(path, json={"fields": {"x": 1}})
    assert archived.status_code == 409
    assert archived.json() == {"message": "Object is archived — cannot update", "error": True}
    unknown = client.delete(f"/{object_type}/{uuid.uuid4()}")
    assert (unknown.status_code, unknown.json()) == (404, NOT_FOUND_OR_ARCHIVED)


@pytest.mark.parametrize("object_type", TYPES)
@pytest.mark.parametrize("method", ["DELETE", "PATCH"])
def test_a_collection_without_id_is_400_naming_the_type_s_id(
    client: httpx.Client, object_type: str, method: str
) -> None:
    for path in (f"/{object_type}", f"/{object_type}/"):
        response = client.request(method, path)
        assert response.status_code == 400
        message = f"Missing {SINGULAR[object_type]}Id in path"
        assert response.json() == {"message": message, "error": True}


@pytest.mark.parametrize("object_type", OTHER_TYPES)
@pytest.mark.parametrize(("method", "suffix"), [("GET", ""), ("POST", ""), ("DELETE", "/x")])
def test_every_type_needs_a_token(
    server: SandboxServer, object_type: str, method: str, suffix: str
) -> None:
    response = httpx.request(method, f"{server.url}/{object_type}{suffix}")
    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized: missing account context", "error": True}


# -- ids of one type under another ---------------------------------------------------------------


def test_a_contact_s_id_is_not_a_company_and_the_same_id_can_be_both(
    make_server: Callable[..., SandboxServer],
) -> None:
    server = make_server()
    with authed(server) as client:
        contact_id = server.state.contact_ids()[0]
        company_id = server.state.object_ids("companies")[0]
        for object_type in OTHER_TYPES:
            got = client.get(f"/{object_type}/{contact_id}")
            assert (got.status_code, got.json()) == (404, NOT_FOUND)
            gone = client.delete(f"/{object_type}/{contact_id}")
            assert (gone.status_code, gone.json()) == (404, NOT_FOUND_OR_ARCHIVED)
        queued_as_contact = client.delete(f"/contacts/{company_id}")  # a company id as contact
        assert (queued_as_contact.status_code, queued_as_contact.json()) == (
            404,
            NOT_FOUND_OR_ARCHIVED,
        )
        assert server.state.get_contact(contact_id)["archived"] is False  # type: ignore[index]
        assert server.state.get_object("companies", company_id)["archived"] is False  # type: ignore[index]

        # A test can plant a company under a contact's id: two records, archived apart.
        server.state.create_object("companies", {"company_name": "Twin"}, object_id=contact_id)
        with pytest.raises(ValueError, match="already exists"):
            server.state.create_object("companies", {"company_name": "x"}, object_id=contact_id)
        assert client.delete(f"/companies/{contact_id}").json()["company_name"] == "Twin"
        assert client.get(f"/contacts/{contact_id}").json()["archived"] is False
        assert client.delete(f"/contacts/{contact_id}").status_code == 200
        stats = server.state.stats()
        assert stats["deletes_succeeded"] == {contact_id: 1}
        assert stats["deletes_succeeded_by_type"]["companies"] == {contact_id: 1}


def test_raw_paths_route_one_segment_per_type(server: SandboxServer, client: httpx.Client) -> None:
    server.state.create_object("deals", {"deal_name": "Odd"}, object_id="a/b")
    server.state.reset_stats()
    encoded = httpx.URL(server.url + "/deals/a%2Fb")
    assert encoded.raw_path == b"/deals/a%2Fb"
    deleted = client.delete(encoded)
    assert deleted.status_code == 200 and deleted.json()["id"] == "a/b"
    absent = client.delete(httpx.URL(server.url + "/companies/a%2Fb"))
    assert (absent.status_code, absent.json()) == (404, NOT_FOUND_OR_ARCHIVED)
    for path in ("/companies/a/b", "/deals/a/b", "/tickets/x/", "/tickets//"):
        url = httpx.URL(server.url + path)
        assert url.raw_path == path.encode()
        response = client.get(url)
        assert response.status_code == 404, path
        assert response.json() == {"message": "Not found", "error": True}  # an unknown route
    stats = server.state.stats()
    assert stats["by_type"]["deals"]["requests"] == 1
    assert stats["by_type"]["companies"]["requests"] == 1  # the unknown routes are no type's
    assert stats["totals"]["requests"] == 6


# -- what an answer holds (`answer_fields`) ------------------------------------------------------


@pytest.fixture(scope="module")
def default_server() -> Iterator[SandboxServer]:
    with SandboxServer(replace(CONFIG, answer_fields="default")) as running:
        yield running


@pytest.fixture(scope="module")
def default_client(default_server: SandboxServer) -> Iterator[httpx.Client]:
    with authed(default_server) as http:
        yield http


CUSTOM = {"companies": "employee_count", "deals": "amount", "tickets": "satisfaction_score"}


@pytest.mark.parametrize("object_type", OTHER_TYPES)
def test_default_answers_hold_the_type_s_default_properties(
    default_server: SandboxServer, default_client: httpx.Client, object_type: str
) -> None:
    client = default_client
    custom = CUSTOM[object_type]
    expected = DEFAULT_ANSWER[object_type]
    record = create(client, object_type, **{custom: 7, "Odd Key!": "x"})
    assert list(record) == expected
    path = f"/{object_type}/{record['id']}"
    assert list(client.get(path).json()) == expected
    listed = client.get(f"/{object_type}", params={"limit": 100}).json()["data"]
    assert listed and all(list(row) == expected for row in listed)
    asked = {"properties": f"{custom},Odd Key!,{NAME_FIELD[object_type]}"}  # no default twice
    read = client.get(path, params=asked).json()
    assert list(read) == [*expected, custom, "Odd Key!"]
    assert read[custom] == 7
    page = client.get(f"/{object_type}", params={"limit": 100, "properties": custom}).json()
    assert [row[custom] for row in page["data"] if row["id"] == record["id"]] == [7]
    patched = client.patch(path, params={"properties": "Odd Key!"}, json={"fields": {custom: 8}})
    assert list(patched.json()) == [*expected, "Odd Key!"]
    stored = default_server.state.get_object(object_type, record["id"])
    assert stored is not None and stored[custom] == 8  # the account keeps every field

    archived = client.delete(path, params={"properties": custom})  # DELETE ignores it
    assert list(archived.json()) == [*expected, "archived_by"]


@pytest.mark.parametrize("object_type", OTHER_TYPES)
@pytest.mark.parametrize("route", ["get", "list", "patch"])
def test_properties_are_known_per_type(
    default_server: SandboxServer, default_client: httpx.Client, object_type: str, route: str
) -> None:
    client = default_client
    record_id = default_server.state.object_ids(object_type)[1]
    path = f"/{object_type}/{record_id}"
    name = NAME_FIELD[object_type]
    # `phone` is a contact field, `no_such_field` no field at all: both unknown here.
    asked = {"properties": f"{CUSTOM[object_type]},phone,no_such_field"}
    if route == "get":
        answer = client.get(path, params=asked)
    elif route == "list":
        answer = client.get(f"/{object_type}", params=asked)
    else:
        answer = client.patch(path, params=asked, json={"fields": {name: "Changed"}})
    assert answer.status_code == 400
    assert answer.json() == {"message": "Unknown properties: no_such_field, phone", "error": True}
    stored = default_server.state.get_object(object_type, record_id)
    assert stored is not None and stored[name] != "Changed"
    # A type's own custom field is unknown on contacts.
    contact = default_server.state.contact_ids()[0]
    refused = client.get(f"/contacts/{contact}", params={"properties": CUSTOM[object_type]})
    assert refused.status_code == 400


# -- statistics and faults -----------------------------------------------------------------------


def test_stats_per_type(make_server: Callable[..., SandboxServer]) -> None:
    server = make_server()
    with authed(server) as client:
        contact = server.state.contact_ids()[0]
        company = server.state.object_ids("companies")[0]
        ticket = server.state.object_ids("tickets")[0]
        server.state.reset_stats()
        client.get("/companies")
        client.get(f"/companies/{company}")
        client.delete(f"/companies/{company}")
        client.delete(f"/companies/{company}")
        client.delete(f"/contacts/{contact}")
        client.delete(f"/tickets/{ticket}", headers={"Authorization": "Bearer nope"})
        client.get("/nope")
        stats = client.get("/_sandbox/stats").json()
    assert stats == server.state.stats()
    assert stats["deletes_succeeded"] == {contact: 1}  # contacts, as before other types
    assert stats["deletes_succeeded_by_type"] == {
        "contacts": {contact: 1},
        "companies": {company: 1},
        "deals": {},
        "tickets": {},
    }
    assert stats["by_type"] == {
        "contacts": {"requests": 1, "by_method": {"DELETE": 1}, "by_status": {"200": 1}},
        "companies": {
            "requests": 4,
            "by_method": {"GET": 2, "DELETE": 2},
            "by_status": {"200": 3, "404": 1},
        },
        "deals": {"requests": 0, "by_method": {}, "by_status": {}},
        "tickets": {"requests": 1, "by_method": {"DELETE": 1}, "by_status": {"401": 1}},
    }
    assert stats["totals"] == {  # every API request, whatever its path
        "requests": 7,
        "by_method": {"GET": 3, "DELETE": 4},
        "by_status": {"200": 4, "404": 2, "401": 1},
    }
    assert server.state.object_calls("companies") == {
        company: ["GET 200", "DELETE 200", "DELETE 404"]
    }
    assert server.state.object_calls("tickets") == {ticket: ["DELETE 401"]}
    assert server.state.contact_calls() == {contact: ["DELETE 200"]}
    server.state.reset_stats()
    cleared = server.state.stats()
    assert cleared["by_type"]["companies"]["requests"] == 0
    assert cleared["deletes_succeeded_by_type"]["companies"] == {}
    assert server.state.object_calls("companies") == {}


def test_faults_apply_to_every_type(make_server: Callable[..., SandboxServer]) -> None:
    failing = make_server(faults=FaultConfig(error_rate=1.0), static_tokens=("static",))
    deal = failing.state.object_ids("deals")[0]
    response = httpx.delete(f"{failing.url}/deals/{deal}", headers=bearer("static"))
    assert response.status_code in (500, 502, 503) and response.json()["error"] is True
    assert failing.state.get_object("deals", deal)["archived"] is False  # type: ignore[index]
    assert failing.state.stats()["deletes_succeeded_by_type"]["deals"] == {}

    hanging = make_server(faults=FaultConfig(hang_rate=1.0), static_tokens=("static",))
    ticket = hanging.state.object_ids("tickets")[0]
    with pytest.raises(httpx.ReadTimeout):
        httpx.delete(f"{hanging.url}/tickets/{ticket}", headers=bearer("static"), timeout=0.3)
    assert hanging.state.get_object("tickets", ticket)["archived_by"] == "static-token-client"  # type: ignore[index]
    stats = hanging.state.stats()
    assert stats["by_type"]["tickets"]["by_status"] == {"0": 1}
    assert stats["deletes_succeeded_by_type"]["tickets"] == {ticket: 1}

    throttled = make_server(faults=FaultConfig(throttle_rate=1.0), static_tokens=("static",))
    limited = httpx.get(f"{throttled.url}/companies", headers=bearer("static"))
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"


# -- configuration and the CLI -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["companies", "deals", "tickets"])
def test_counts_are_checked(name: str) -> None:
    with pytest.raises(ValueError, match=f"{name} must be >= 0"):
        SandboxConfig(**{name: -1})  # type: ignore[arg-type]
