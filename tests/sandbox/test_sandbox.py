"""The sandbox against its brief: a real server on loopback, talked to with a plain httpx client.

Most tests share one module-scoped server (they only touch contacts they create or pick, and
stats tests reset the counters first); tests that need exact counts or a special config start
their own with `make_server`.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from routera_archive_sandbox import FaultConfig, SandboxConfig, SandboxServer, SandboxState
from routera_archive_sandbox.seed import CUSTOM_FIELDS, LEAD_SOURCES, LIFECYCLE_STAGES, USERS

REPO = Path(__file__).resolve().parents[2]
CLIENT_ID = "test-client"
CLIENT_SECRET = "test-secret"
STATIC = "static-token-for-tests"
ISO_MS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
REFERENCE_ORDER = [  # the published DELETE example, in its order
    "id",
    "external_id",
    "created_at",
    "updated_at",
    "archived",
    "first_name",
    "last_name",
    "email",
    "contact_owner",
    "archived_by",
]
UNAUTHORIZED = {"message": "Unauthorized: missing account context", "error": True}
NOT_FOUND_OR_ARCHIVED = {"message": "Object not found or already archived", "error": True}

BASE_CONFIG = SandboxConfig(
    port=0,
    contacts=25,
    seed=3,
    client_id=CLIENT_ID,
    client_secret=CLIENT_SECRET,
    static_tokens=(STATIC,),
)


def token_form(client_id: str = CLIENT_ID, secret: str = CLIENT_SECRET) -> dict[str, str]:
    return {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}


def get_token(client: httpx.Client) -> str:
    response = client.post("/oauth2/token", data=token_form())
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def raw_url(server: SandboxServer, raw_path: str) -> httpx.URL:
    """A URL whose path goes on the wire exactly as written (httpx keeps existing %XX escapes)."""
    url = httpx.URL(server.url + raw_path)
    assert url.raw_path == raw_path.encode()
    return url


def stats_entries(client: httpx.Client) -> dict[tuple[str, str, int], int]:
    stats = client.get("/_sandbox/stats").json()
    return {(r["method"], r["path"], r["status"]): r["count"] for r in stats["requests"]}


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer(BASE_CONFIG) as running:
        yield running


@pytest.fixture(scope="module")
def module_client(server: SandboxServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=5) as client:
        client.headers.update(bearer(get_token(client)))
        yield client


@pytest.fixture
def client(module_client: httpx.Client) -> httpx.Client:
    """The shared, authenticated client (a test that drops the header uses `headers=`)."""
    return module_client


@pytest.fixture
def make_server() -> Iterator[Callable[..., SandboxServer]]:
    started: list[SandboxServer] = []

    def start(state: SandboxState | None = None, **overrides: Any) -> SandboxServer:
        running = SandboxServer(replace(BASE_CONFIG, **overrides), state).start()
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


def new_contact(client: httpx.Client, **fields: Any) -> dict[str, Any]:
    body = {"fields": {"first_name": "Test", "email": f"{uuid.uuid4().hex}@example.com", **fields}}
    response = client.post("/contacts", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


# -- token endpoint ------------------------------------------------------------------------------


def test_token_with_form_credentials(server: SandboxServer) -> None:
    with httpx.Client(base_url=server.url) as client:
        response = client.post("/oauth2/token", data=token_form())
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"access_token", "expires_in", "token_type"}
        assert body["token_type"] == "Bearer"
        assert body["expires_in"] == 3600
        assert isinstance(body["access_token"], str) and len(body["access_token"]) > 20
        assert client.get("/contacts", headers=bearer(body["access_token"])).status_code == 200


def test_token_with_basic_auth(server: SandboxServer) -> None:
    with httpx.Client(base_url=server.url) as client:
        response = client.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(CLIENT_ID, CLIENT_SECRET),
        )
        assert response.status_code == 200, response.text
        token = response.json()["access_token"]
        assert client.get("/contacts", headers=bearer(token)).status_code == 200


@pytest.mark.parametrize(
    "form", [{"grant_type": "password"}, {}, {"grant_type": ""}], ids=["password", "none", "empty"]
)
def test_token_bad_grant_is_400(server: SandboxServer, form: dict[str, str]) -> None:
    data = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, **form}
    response = httpx.post(server.url + "/oauth2/token", data=data)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "unsupported_grant_type"
    assert isinstance(body["error_description"], str) and body["error_description"]


@pytest.mark.parametrize(
    "credentials",
    [
        {"data": token_form(secret="wrong")},
        {"data": token_form(client_id="someone-else")},
        {"data": {"grant_type": "client_credentials"}},
        {"data": {"grant_type": "client_credentials"}, "auth": (CLIENT_ID, "wrong")},
        {
            "data": {"grant_type": "client_credentials"},
            "headers": {"Authorization": "Basic !!not-base64!!"},
        },
    ],
    ids=["wrong-secret", "wrong-id", "missing", "basic-wrong-secret", "basic-garbage"],
)
def test_token_bad_credentials_is_401(server: SandboxServer, credentials: dict[str, Any]) -> None:
    response = httpx.post(server.url + "/oauth2/token", **credentials)
    assert response.status_code == 401
    body = response.json()
    assert body["error"] == "invalid_client"
    assert body["error_description"]
    assert "access_token" not in body


# -- authentication of API calls -----------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, bearer("not-a-token"), {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}],
    ids=["none", "unknown-token", "basic", "empty-bearer"],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/contacts"),
        ("DELETE", "/contacts/x"),
        ("POST", "/contacts"),
        ("GET", "/contacts/x"),
    ],
)
def test_api_without_valid_token_is_401(
    server: SandboxServer, headers: dict[str, str], method: str, path: str
) -> None:
    response = httpx.request(method, server.url + path, headers=headers)
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED


def test_expired_token_is_401(make_server: Callable[..., SandboxServer]) -> None:
    server = make_server(token_ttl=0.3)
    with httpx.Client(base_url=server.url) as client:
        response = client.post("/oauth2/token", data=token_form())
        assert response.json()["expires_in"] == 0  # int(0.3)
        token = response.json()["access_token"]
        assert client.get("/contacts", headers=bearer(token)).status_code == 200
        time.sleep(0.4)
        expired = client.get("/contacts", headers=bearer(token))
        assert expired.status_code == 401
        assert expired.json() == UNAUTHORIZED
        assert client.get("/contacts", headers=bearer(get_token(client))).status_code == 200


def test_static_token_is_accepted_and_archives_as_static_client(server: SandboxServer) -> None:
    with httpx.Client(base_url=server.url, headers=bearer(STATIC)) as client:
        contact = new_contact(client)
        response = client.delete(f"/contacts/{contact['id']}")
        assert response.status_code == 200
        assert response.json()["archived_by"] == "static-token-client"


# -- list ----------------------------------------------------------------------------------------


def test_list_paginates_in_creation_order(make_server: Callable[..., SandboxServer]) -> None:
    server = make_server()
    with httpx.Client(base_url=server.url, timeout=5) as client:
        client.headers.update(bearer(get_token(client)))
        seen: list[str] = []
        for offset in (0, 10, 20, 30):
            page = client.get("/contacts", params={"limit": 10, "offset": offset}).json()
            assert page["pagination"] == {"limit": 10, "offset": offset, "count": 25}
            seen += [contact["id"] for contact in page["data"]]
        assert len(seen) == 25
        assert seen == server.state.contact_ids()
        default = client.get("/contacts").json()
        assert default["pagination"] == {"limit": 10, "offset": 0, "count": 25}
        assert [c["id"] for c in default["data"]] == seen[:10]


def test_list_archived_filter(make_server: Callable[..., SandboxServer]) -> None:
    server = make_server()
    with httpx.Client(base_url=server.url, timeout=5) as client:
        client.headers.update(bearer(get_token(client)))
        ids = server.state.contact_ids()
        archived = {ids[0], ids[7], ids[24]}
        for contact_id in archived:
            assert client.delete(f"/contacts/{contact_id}").status_code == 200

        active = client.get("/contacts", params={"limit": 100}).json()
        assert active["pagination"]["count"] == 22
        assert {c["id"] for c in active["data"]} == set(ids) - archived
        assert all(c["archived"] is False for c in active["data"])
        explicit = client.get("/contacts", params={"limit": 100, "archived": "false"}).json()
        assert explicit == active

        everything = client.get("/contacts", params={"limit": 100, "archived": "true"}).json()
        assert everything["pagination"]["count"] == 25
        assert [c["id"] for c in everything["data"]] == ids
        for contact in everything["data"]:
            if contact["id"] in archived:
                assert ISO_MS.fullmatch(contact["archived"])
                assert contact["archived_by"] == CLIENT_ID
            else:
                assert contact["archived"] is False and "archived_by" not in contact
        # Offsets count within the filtered set.
        second = client.get("/contacts", params={"limit": 5, "offset": 5}).json()
        assert [c["id"] for c in second["data"]] == [c["id"] for c in active["data"][5:10]]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "101"},
        {"limit": "-1"},
        {"limit": "ten"},
        {"limit": ""},
        {"offset": "-5"},
        {"offset": "x"},
        {"archived": "maybe"},
    ],
)
def test_list_rejects_bad_query(client: httpx.Client, params: dict[str, str]) -> None:
    response = client.get("/contacts", params=params)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] is True and isinstance(body["message"], str) and body["message"]


@pytest.mark.parametrize("limit", [1, 100])
def test_list_limit_bounds_are_inclusive(client: httpx.Client, limit: int) -> None:
    response = client.get("/contacts", params={"limit": limit, "archived": "true"})
    assert response.status_code == 200
    body = response.json()
    assert body["pagination"]["limit"] == limit
    assert len(body["data"]) == min(limit, body["pagination"]["count"])


def test_list_offset_past_the_end_is_empty(client: httpx.Client) -> None:
    body = client.get("/contacts", params={"offset": 10_000}).json()
    assert body["data"] == []
    assert body["pagination"]["offset"] == 10_000


# -- create --------------------------------------------------------------------------------------


def test_create_contact(client: httpx.Client) -> None:
    before = time.time()
    fields = {
        "first_name": "Grace",
        "email": "grace@example.com",
        "external_id": "ext-new",
        "Lead Source Detail": "Booth #7",
        "lead_score": 42,
    }
    response = client.post("/contacts", json={"fields": fields})
    assert response.status_code == 201
    contact = response.json()
    assert uuid.UUID(contact["id"]).version == 4
    assert contact["archived"] is False and "archived_by" not in contact
    assert (
        ISO_MS.fullmatch(contact["created_at"]) and contact["updated_at"] == contact["created_at"]
    )
    created = time.mktime(time.strptime(contact["created_at"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert abs(created - time.timezone - before) < 5  # "now", in UTC
    for key, value in fields.items():
        assert contact[key] == value
    assert contact["last_name"] is None  # default fields are always present
    assert client.get(f"/contacts/{contact['id']}").json() == contact


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not an object"),
        (b'{"first_name": "Ada"}', "no fields"),
        (b'{"fields": "Ada"}', "fields not an object"),
        (b'{"fields": {"external_id": "x", "lead_score": 3}}', "no name or email"),
        (b'{"fields": {"first_name": "", "email": null}}', "empty name and email"),
        (b'{"fields": {"first_name": "Ada", "id": "mine"}}', "read-only id"),
        (b'{"fields": {"first_name": "Ada", "archived": true}}', "read-only archived"),
        (b'{"fields": {"first_name": "Ada", "lead_score": NaN}}', "NaN"),
        (b"", "empty body"),
    ],
)
def test_create_validation(client: httpx.Client, content: bytes, why: str) -> None:
    response = client.post(
        "/contacts", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, why
    body = response.json()
    assert body["error"] is True and body["message"]


# -- read and update -----------------------------------------------------------------------------


def test_get_contact_and_unknown(server: SandboxServer, client: httpx.Client) -> None:
    contact_id = server.state.contact_ids()[3]
    response = client.get(f"/contacts/{contact_id}")
    assert response.status_code == 200
    assert response.json() == server.state.get_contact(contact_id)
    missing = client.get(f"/contacts/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert missing.json() == {"message": "Object not found", "error": True}


def test_get_properties(server: SandboxServer, client: httpx.Client) -> None:
    contact_id = server.state.contact_ids()[4]
    ok = client.get(f"/contacts/{contact_id}", params={"properties": "email,Lead Source Detail"})
    assert ok.status_code == 200
    assert ok.json()["id"] == contact_id
    bad = client.get(f"/contacts/{contact_id}", params={"properties": "email,no_such_field"})
    assert bad.status_code == 400
    assert bad.json()["error"] is True and "no_such_field" in bad.json()["message"]
    # A key that some contact was written with becomes a known property.
    new_contact(client, favourite_colour="teal")
    assert client.get(f"/contacts/{contact_id}?properties=favourite_colour").status_code == 200


def test_patch_merges_and_bumps_updated_at(client: httpx.Client) -> None:
    contact = new_contact(client, lead_score=1, company="Globex")
    time.sleep(0.002)
    response = client.patch(
        f"/contacts/{contact['id']}", json={"fields": {"lead_score": 2, "Odd Key!": True}}
    )
    assert response.status_code == 200
    updated = response.json()
    assert updated["lead_score"] == 2 and updated["Odd Key!"] is True
    assert updated["company"] == "Globex" and updated["email"] == contact["email"]
    assert updated["created_at"] == contact["created_at"]
    assert updated["updated_at"] > contact["updated_at"]
    assert client.get(f"/contacts/{contact['id']}").json() == updated


def test_patch_unknown_archived_and_invalid(client: httpx.Client) -> None:
    missing = client.patch(f"/contacts/{uuid.uuid4()}", json={"fields": {"lead_score": 1}})
    assert missing.status_code == 404
    assert missing.json() == {"message": "Object not found", "error": True}

    contact = new_contact(client)
    assert client.patch(f"/contacts/{contact['id']}", content=b"{").status_code == 400
    read_only = client.patch(f"/contacts/{contact['id']}", json={"fields": {"archived": False}})
    assert read_only.status_code == 400

    assert client.delete(f"/contacts/{contact['id']}").status_code == 200
    archived = client.patch(f"/contacts/{contact['id']}", json={"fields": {"lead_score": 1}})
    assert archived.status_code == 409
    assert archived.json() == {"message": "Object is archived — cannot update", "error": True}


# -- archive -------------------------------------------------------------------------------------


def test_delete_archives_once(server: SandboxServer, client: httpx.Client) -> None:
    contact = new_contact(client, external_id="ext-del", last_name="Lovelace")
    path = f"/contacts/{contact['id']}"

    first = client.delete(path)
    assert first.status_code == 200
    body = first.json()
    assert list(body) == REFERENCE_ORDER
    assert ISO_MS.fullmatch(body["archived"])
    assert body["archived_by"] == CLIENT_ID
    assert body["updated_at"] == body["archived"] > contact["updated_at"]
    unchanged = {k: v for k, v in contact.items() if k not in ("updated_at", "archived")}
    assert {k: body[k] for k in unchanged} == unchanged

    second = client.delete(path)
    assert second.status_code == 404
    assert second.json() == NOT_FOUND_OR_ARCHIVED

    read = client.get(path)
    assert read.status_code == 200
    assert read.json() == body
    assert server.state.get_contact(contact["id"]) == body


def test_delete_unknown_is_404(client: httpx.Client) -> None:
    response = client.delete(f"/contacts/{uuid.uuid4()}")
    assert response.status_code == 404
    assert response.json() == NOT_FOUND_OR_ARCHIVED


@pytest.mark.parametrize("path", ["/contacts", "/contacts/"])
def test_delete_without_id_is_400(client: httpx.Client, path: str) -> None:
    response = client.delete(path)
    assert response.status_code == 400
    assert response.json() == {"message": "Missing contactId in path", "error": True}


# -- raw-path routing ----------------------------------------------------------------------------


def test_encoded_slash_is_one_segment(server: SandboxServer, client: httpx.Client) -> None:
    server.state.reset_stats()
    encoded = client.delete(raw_url(server, "/contacts/a%2Fb"))
    assert encoded.status_code == 404
    assert encoded.json() == NOT_FOUND_OR_ARCHIVED  # routed as the contact "a/b"
    two_segments = client.delete(raw_url(server, "/contacts/a/b"))
    assert two_segments.status_code == 404
    assert two_segments.json() == {"message": "Not found", "error": True}

    entries = stats_entries(client)
    assert entries[("DELETE", "/contacts/a%2Fb", 404)] == 1
    assert entries[("DELETE", "/contacts/a/b", 404)] == 1
    assert ("DELETE", "/contacts/a/b", 404) in entries and len(entries) == 2


@pytest.mark.parametrize(
    ("contact_id", "raw_path"),
    [
        ("a/b", "/contacts/a%2Fb"),
        ("c/d", "/contacts/c%2fd"),
        ("100%", "/contacts/100%25"),
        ("x y", "/contacts/x%20y"),
        ("Zoë", "/contacts/Zo%C3%AB"),
    ],
)
def test_encoded_ids_are_decoded_once(
    server: SandboxServer, client: httpx.Client, contact_id: str, raw_path: str
) -> None:
    server.state.create_contact({"first_name": "Odd"}, contact_id=contact_id)
    server.state.reset_stats()
    response = client.delete(raw_url(server, raw_path))
    assert response.status_code == 200, response.text
    assert response.json()["id"] == contact_id
    assert stats_entries(client) == {("DELETE", raw_path, 200): 1}


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/nope", 404),
        ("GET", "/contacts/a/b", 404),
        ("GET", "/contacts/x/", 404),
        ("GET", "/contacts//", 404),
        ("GET", "/Contacts", 404),
        ("GET", "/companies/a/b", 404),
        ("GET", "/Companies", 404),
        ("GET", "/contactsx", 404),
        ("GET", "/routers", 404),  # documented, not served
        ("PUT", "/deals/x", 405),
        ("PUT", "/contacts/x", 405),
        ("POST", "/contacts/x", 405),
        ("GET", "/oauth2/token", 405),
        ("GET", "/_sandbox/nope", 404),
    ],
)
def test_unknown_routes(client: httpx.Client, method: str, path: str, status: int) -> None:
    response = client.request(method, path)
    assert response.status_code == status
    body = response.json()
    assert body["error"] is True
    assert body["message"] == ("Not found" if status == 404 else "Method not allowed")


# -- stats ---------------------------------------------------------------------------------------


def test_stats_count_by_method_path_and_status(
    make_server: Callable[..., SandboxServer],
) -> None:
    server = make_server()
    with httpx.Client(base_url=server.url, timeout=5) as client:
        token = get_token(client)
        target = server.state.contact_ids()[2]
        assert client.post("/_sandbox/reset-stats").status_code == 200
        client.get("/contacts?limit=5", headers=bearer(token))
        client.get("/contacts?limit=5&offset=5", headers=bearer(token))
        client.get("/contacts")
        client.delete(f"/contacts/{target}", headers=bearer(token))
        client.delete(f"/contacts/{target}", headers=bearer(token))
        client.get("/nope", headers=bearer(token))
        client.get("/_sandbox/stats")  # never counted

        stats = client.get("/_sandbox/stats").json()
        entries = {(r["method"], r["path"], r["status"]): r["count"] for r in stats["requests"]}
        assert entries == {
            ("GET", "/contacts", 200): 2,
            ("GET", "/contacts", 401): 1,
            ("DELETE", f"/contacts/{target}", 200): 1,
            ("DELETE", f"/contacts/{target}", 404): 1,
            ("GET", "/nope", 404): 1,
        }
        assert stats["deletes_succeeded"] == {target: 1}
        assert stats["totals"] == {
            "requests": 6,
            "by_method": {"GET": 4, "DELETE": 2},
            "by_status": {"200": 3, "401": 1, "404": 2},
        }
        assert server.state.stats() == stats


def test_reset_stats(make_server: Callable[..., SandboxServer]) -> None:
    server = make_server()
    with httpx.Client(base_url=server.url, timeout=5) as client:
        client.headers.update(bearer(get_token(client)))
        client.delete(f"/contacts/{server.state.contact_ids()[0]}")
        assert client.get("/_sandbox/stats").json()["totals"]["requests"] == 2
        assert client.get("/_sandbox/reset-stats").status_code == 405
        assert client.post("/_sandbox/reset-stats").status_code == 200
        zero = {"requests": 0, "by_method": {}, "by_status": {}}
        types = ("contacts", "companies", "deals", "tickets")
        assert client.get("/_sandbox/stats").json() == {
            "requests": [],
            "deletes_succeeded": {},
            "deletes_succeeded_by_type": {name: {} for name in types},
            "totals": zero,
            "by_type": {name: zero for name in types},
        }
        # Contacts are kept: the archived one stays archived.
        assert client.delete(f"/contacts/{server.state.contact_ids()[0]}").status_code == 404


# -- seeding -------------------------------------------------------------------------------------


def test_seed_is_deterministic() -> None:
    first = SandboxState(contacts=60, seed=11).snapshot()
    assert first == SandboxState(contacts=60, seed=11).snapshot()
    other = SandboxState(contacts=60, seed=12).snapshot()
    assert {c["id"] for c in first}.isdisjoint(c["id"] for c in other)
    assert [c["email"] for c in first] != [c["email"] for c in other]
    # Contact i does not depend on the count (only timestamps are spread over the count).
    fewer = SandboxState(contacts=10, seed=11).snapshot()
    strip = ("created_at", "updated_at")
    assert [{k: v for k, v in c.items() if k not in strip} for c in fewer] == [
        {k: v for k, v in c.items() if k not in strip} for c in first[:10]
    ]


def test_created_ids_are_deterministic() -> None:
    a, b = SandboxState(contacts=0, seed=5), SandboxState(contacts=0, seed=5)
    ids_a = [a.create_contact({"first_name": "X"})["id"] for _ in range(3)]
    assert ids_a == [b.create_contact({"first_name": "X"})["id"] for _ in range(3)]
    c = SandboxState(contacts=0, seed=6)
    assert ids_a[0] != c.create_contact({"first_name": "X"})["id"]


def test_seeded_contacts_look_real() -> None:
    contacts = SandboxState(contacts=200, seed=0).snapshot()
    assert len(contacts) == 200
    assert len({c["id"] for c in contacts}) == 200
    assert len({c["email"] for c in contacts}) == 200
    created = [c["created_at"] for c in contacts]
    assert created == sorted(created)
    now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    for contact in contacts:
        assert list(contact)[:9] == REFERENCE_ORDER[:9]
        assert uuid.UUID(contact["id"]).version == 4
        assert contact["archived"] is False and "archived_by" not in contact
        assert ISO_MS.fullmatch(contact["created_at"]) and ISO_MS.fullmatch(contact["updated_at"])
        assert contact["created_at"] <= contact["updated_at"] < now
        assert contact["external_id"] is None or re.fullmatch(r"ext-\d{5}", contact["external_id"])
        assert contact["first_name"] and contact["last_name"]
        assert contact["contact_owner"] is None or contact["contact_owner"].endswith("@example.com")
    assert any(c["external_id"] is None for c in contacts)
    assert any(c["contact_owner"] is None for c in contacts)
    assert any(not c["email"].isascii() or not c["last_name"].isascii() for c in contacts)


def test_seeded_custom_fields_cover_every_type() -> None:
    contacts = SandboxState(contacts=400, seed=0).snapshot()
    user_ids = {user_id for user_id, _ in USERS}
    checks: dict[str, Callable[[Any], bool]] = {
        "text": lambda v: isinstance(v, str) and v != "",
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "checkbox": lambda v: isinstance(v, bool),
        "dropdown": lambda v: v in LEAD_SOURCES or v in LIFECYCLE_STAGES,
        "date": lambda v: isinstance(v, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", v) is not None,
        "user": lambda v: v in user_ids,
    }
    assert {spec.kind for spec in CUSTOM_FIELDS} == set(checks)
    shares: dict[str, float] = {}
    for spec in CUSTOM_FIELDS:
        values = [c[spec.name] for c in contacts if spec.name in c]
        shares[spec.name] = len(values) / len(contacts)
        assert values, spec.name
        assert all(v is None or checks[spec.kind](v) for v in values), spec.name
        if spec.kind == "dropdown":
            assert {v for v in values if v is not None} <= set(spec.options)
    assert shares["is_customer"] == 1.0
    assert 0.2 <= shares["annual_revenue"] <= 0.4
    assert 0.01 <= shares["Lead Source Detail"] <= 0.1
    assert any(c.get("phone", "") is None for c in contacts)  # defined-but-empty: null
    assert any(" " in name and name != name.lower() for name in shares)


def test_served_contacts_match_the_state(server: SandboxServer, client: httpx.Client) -> None:
    served: list[dict[str, Any]] = []
    while True:
        params = {"archived": "true", "limit": 100, "offset": len(served)}
        page = client.get("/contacts", params=params).json()["data"]
        if not page:
            break
        served += page
    assert served == server.state.snapshot()
    assert any("Lead Source Detail" in c for c in served) or len(served) < 50


# -- faults --------------------------------------------------------------------------------------


def test_latency_delays_answers(make_server: Callable[..., SandboxServer]) -> None:
    server = make_server(faults=FaultConfig(latency_ms=150, jitter_ms=50))
    with httpx.Client(base_url=server.url, headers=bearer(STATIC), timeout=5) as client:
        client.get("/contacts")  # connection set up outside the measurement
        for _ in range(2):
            started = time.perf_counter()
            assert client.get("/contacts").status_code == 200
            assert time.perf_counter() - started >= 0.15
        started = time.perf_counter()
        client.get("/_sandbox/stats")
        assert time.perf_counter() - started < 0.15  # test hooks are never delayed


def test_error_rate_answers_5xx_without_effect(make_server: Callable[..., SandboxServer]) -> None:
    server = make_server(faults=FaultConfig(error_rate=1.0))
    contact_id = server.state.contact_ids()[0]
    with httpx.Client(base_url=server.url, headers=bearer(STATIC), timeout=5) as client:
        response = client.delete(f"/contacts/{contact_id}")
        assert response.status_code in (500, 502, 503)
        assert response.json()["error"] is True
    assert server.state.get_contact(contact_id)["archived"] is False  # type: ignore[index]
    assert server.state.stats()["deletes_succeeded"] == {}


def test_fault_dice_are_seeded(make_server: Callable[..., SandboxServer]) -> None:
    def statuses(seed: int) -> list[int]:
        server = make_server(seed=seed, faults=FaultConfig(error_rate=0.5))
        with httpx.Client(base_url=server.url, headers=bearer(STATIC), timeout=5) as client:
            return [client.get("/contacts").status_code for _ in range(30)]

    first = statuses(1)
    assert 200 in first and any(status >= 500 for status in first)
    assert statuses(1) == first
    assert statuses(2) != first


def test_throttle_rate_answers_429(make_server: Callable[..., SandboxServer]) -> None:
    server = make_server(faults=FaultConfig(throttle_rate=1.0))
    response = httpx.get(server.url + "/contacts", headers=bearer(STATIC))
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    assert response.json() == {"message": "Too many requests", "error": True}


def test_rate_limit(make_server: Callable[..., SandboxServer]) -> None:
    server = make_server(faults=FaultConfig(rate_limit=3))
    with httpx.Client(base_url=server.url, headers=bearer(STATIC), timeout=5) as client:
        statuses = [client.get("/contacts").status_code for _ in range(6)]
        assert statuses[:3] == [200, 200, 200]
        assert 429 in statuses[3:]
        limited = client.get("/contacts")
        assert limited.status_code == 429
        assert int(limited.headers["Retry-After"]) >= 1
        time.sleep(0.4)  # 3/s refills one request in 1/3 s
        assert client.get("/contacts").status_code == 200


def test_malformed_rate_cuts_the_body_after_acting(
    make_server: Callable[..., SandboxServer],
) -> None:
    server = make_server(faults=FaultConfig(malformed_rate=1.0))
    contact_id = server.state.contact_ids()[1]
    response = httpx.delete(f"{server.url}/contacts/{contact_id}", headers=bearer(STATIC))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)
    assert server.state.get_contact(contact_id)["archived_by"] == "static-token-client"  # type: ignore[index]


def test_hang_rate_acts_then_never_answers(make_server: Callable[..., SandboxServer]) -> None:
    server = make_server(faults=FaultConfig(hang_rate=1.0))
    contact_id = server.state.contact_ids()[1]
    with pytest.raises(httpx.ReadTimeout):
        httpx.delete(f"{server.url}/contacts/{contact_id}", headers=bearer(STATIC), timeout=0.3)
    assert server.state.get_contact(contact_id)["archived"] is not False  # type: ignore[index]
    stats = server.state.stats()
    assert stats["requests"] == [
        {"method": "DELETE", "path": f"/contacts/{contact_id}", "status": 0, "count": 1}
    ]
    assert stats["deletes_succeeded"] == {contact_id: 1}


def test_the_gate_holds_the_records_it_picks_unhandled_until_released(
    make_server: Callable[..., SandboxServer],
) -> None:
    server = make_server()
    held, free = server.state.contact_ids()[2:4]
    server.gate.hold(lambda object_id: object_id == held)
    answers: list[int] = []
    with httpx.Client(base_url=server.url, headers=bearer(STATIC), timeout=10) as client:
        waiting = threading.Thread(
            target=lambda: answers.append(client.delete(f"/contacts/{held}").status_code)
        )
        waiting.start()
        deadline = time.monotonic() + 5
        while server.gate.waiting() != [held]:
            assert time.monotonic() < deadline, server.gate.waiting()
            time.sleep(0.01)
        assert client.delete(f"/contacts/{free}").status_code == 200  # not picked: goes on
        time.sleep(0.2)
        assert answers == []
        assert server.state.get_contact(held)["archived"] is False  # type: ignore[index]
        server.gate.release()
        waiting.join(timeout=5)
    assert answers == [200]
    assert server.gate.waiting() == []
    assert server.state.stats()["deletes_succeeded"] == {held: 1, free: 1}


# -- server lifecycle ----------------------------------------------------------------------------


def test_server_binds_a_free_port_and_stops() -> None:
    server = SandboxServer(replace(BASE_CONFIG, contacts=1))
    with pytest.raises(RuntimeError):
        server.url  # noqa: B018 - not started yet
    with server:
        assert server.port != 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert httpx.get(server.url + "/_sandbox/stats").status_code == 200
        started = time.monotonic()
    assert time.monotonic() - started < 2
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/_sandbox/stats", timeout=1)


def test_stop_does_not_wait_for_a_hanging_request(
    make_server: Callable[..., SandboxServer],
) -> None:
    server = make_server(faults=FaultConfig(hang_rate=1.0))
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            b"GET /contacts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + STATIC.encode()
        )
        sock.sendall(b"\r\n\r\n")
        deadline = time.monotonic() + 2
        while not server.state.stats()["requests"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.state.stats()["requests"][0]["status"] == 0  # it is hanging
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 3


SERVE_SCRIPT = """
import sys
import threading
from routera_archive_sandbox import SandboxConfig
from routera_archive_sandbox.server import serve_forever
serve_forever(SandboxConfig(port=0, contacts=3), lambda url: print(url, flush=True))
print("stopped cleanly", flush=True)
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_forever_stops_on_signal(sig: signal.Signals) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with subprocess.Popen(
        [sys.executable, "-c", SERVE_SCRIPT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    ) as process:
        try:
            assert process.stdout is not None
            url = process.stdout.readline().strip()
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url), url
            token = httpx.post(
                url + "/oauth2/token", data=token_form("sandbox-client", "sandbox-secret")
            )
            assert token.status_code == 200
            process.send_signal(sig)
            out, err = process.communicate(timeout=5)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0, err
    assert "stopped cleanly" in out
    assert "Traceback" not in err


def test_basic_credentials_are_form_urlencoded(make_server: Callable[..., SandboxServer]) -> None:
    server = make_server(client_id="id:with colon", client_secret="s&cret+")
    encoded = base64.b64encode(b"id%3Awith+colon:s%26cret%2B").decode()
    response = httpx.post(
        server.url + "/oauth2/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {encoded}"},
    )
    assert response.status_code == 200, response.text


# -- what an answer holds (`answer_fields`) ------------------------------------------------------

DEFAULT_ANSWER = [key for key in REFERENCE_ORDER if key != "archived_by"]


@pytest.fixture(scope="module")
def default_server() -> Iterator[SandboxServer]:
    """A sandbox answering as Routera's reference reads: default properties only."""
    with SandboxServer(replace(BASE_CONFIG, answer_fields="default")) as running:
        yield running


@pytest.fixture(scope="module")
def default_client(default_server: SandboxServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=default_server.url, timeout=5) as client:
        client.headers.update(bearer(get_token(client)))
        yield client


def test_default_answers_hold_only_default_properties_on_every_route(
    default_server: SandboxServer, default_client: httpx.Client
) -> None:
    client = default_client
    created = client.post(
        "/contacts", json={"fields": {"first_name": "Ada", "lead_score": 7, "company": "Acme"}}
    )
    assert created.status_code == 201
    assert list(created.json()) == DEFAULT_ANSWER  # POST takes any custom key, answers defaults
    contact_id = created.json()["id"]
    path = f"/contacts/{contact_id}"

    assert list(client.get(path).json()) == DEFAULT_ANSWER
    listed = client.get("/contacts", params={"limit": 100}).json()["data"]
    assert all(set(row) <= set(REFERENCE_ORDER) for row in listed)
    patched = client.patch(path, json={"fields": {"company": "Globex"}})
    assert list(patched.json()) == DEFAULT_ANSWER

    # The store keeps every field: an answer shows less, the account holds all of it.
    stored = default_server.state.get_contact(contact_id)
    assert stored is not None and stored["lead_score"] == 7 and stored["company"] == "Globex"

    archived = client.delete(path, params={"properties": "lead_score"})  # DELETE ignores it
    assert archived.status_code == 200
    assert list(archived.json()) == REFERENCE_ORDER


def test_default_answers_add_the_properties_asked_for_on_reads_and_patch(
    default_client: httpx.Client,
) -> None:
    client = default_client
    contact = client.post(
        "/contacts", json={"fields": {"first_name": "Ada", "lead_score": 7, "company": "Acme"}}
    ).json()
    path = f"/contacts/{contact['id']}"
    asked = {"properties": "lead_score, email,company"}  # a default name is not repeated

    read = client.get(path, params=asked).json()
    assert list(read) == [*DEFAULT_ANSWER, "lead_score", "company"]  # the contact's own order
    assert (read["lead_score"], read["company"]) == (7, "Acme")
    page = client.get("/contacts", params={"limit": 100, "properties": "lead_score"}).json()
    assert [row.get("lead_score") for row in page["data"] if row["id"] == contact["id"]] == [7]
    patched = client.patch(path, params={"properties": "company"}, json={"fields": {"x": 1}})
    assert patched.json()["company"] == "Acme" and "x" not in patched.json()

    client.delete(path)
    after = client.get(path, params={"properties": "lead_score"}).json()
    assert after["archived_by"] == CLIENT_ID and after["lead_score"] == 7


@pytest.mark.parametrize("route", ["get", "list", "patch"])
def test_an_unknown_property_is_a_400_naming_it_and_changes_nothing(
    default_server: SandboxServer, default_client: httpx.Client, route: str
) -> None:
    client = default_client
    contact = client.post("/contacts", json={"fields": {"first_name": "Ada"}}).json()
    path = f"/contacts/{contact['id']}"
    asked = {"properties": "email,no_such_field"}
    if route == "get":
        answer = client.get(path, params=asked)
    elif route == "list":
        answer = client.get("/contacts", params=asked)
    else:
        answer = client.patch(path, params=asked, json={"fields": {"first_name": "Grace"}})
    assert answer.status_code == 400
    assert answer.json() == {"message": "Unknown properties: no_such_field", "error": True}
    assert default_server.state.get_contact(contact["id"])["first_name"] == "Ada"  # type: ignore[index]


def test_all_answers_every_field_whatever_is_asked(client: httpx.Client) -> None:
    contact = new_contact(client, lead_score=3)
    read = client.get(f"/contacts/{contact['id']}", params={"properties": "company"}).json()
    assert read == contact


def test_the_call_log_keeps_each_contact_s_calls_in_order(
    default_server: SandboxServer, default_client: httpx.Client
) -> None:
    contact = default_client.post("/contacts", json={"fields": {"first_name": "Ada"}}).json()
    path = f"/contacts/{contact['id']}"
    default_client.get(path)
    default_client.delete(path)
    default_client.delete(path)
    assert default_server.state.contact_calls()[contact["id"]] == [
        "GET 200",
        "DELETE 200",
        "DELETE 404",
    ]


def test_answer_fields_is_checked() -> None:
    with pytest.raises(ValueError, match="answer_fields must be 'all' or 'default'"):
        SandboxConfig(answer_fields="some")  # type: ignore[arg-type]
