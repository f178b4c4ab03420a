"""Revoking the sandbox's credentials mid-run: `POST /_sandbox/revoke` and `SandboxState.revoke()`.

A revocation is what an admin does to a leaked secret: every issued token stops working at once,
the token endpoint refuses the client credentials (401 `invalid_client`) and static tokens are
refused too, until a test restores them with `restore_credentials()` (or `/_sandbox/restore`).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest

from routera_archive_sandbox import SandboxConfig, SandboxServer, SandboxState

CLIENT_ID = "revoke-client"
CLIENT_SECRET = "revoke-secret"
STATIC = "revoke-static-token"
UNAUTHORIZED = {"message": "Unauthorized: missing account context", "error": True}
INVALID_CLIENT = {"error": "invalid_client", "error_description": "Client authentication failed"}


def token_form() -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }


def basic_header() -> dict[str, str]:
    encoded = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def server() -> Iterator[SandboxServer]:
    config = SandboxConfig(
        port=0,
        contacts=10,
        seed=21,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        static_tokens=(STATIC,),
    )
    with SandboxServer(config) as running:
        yield running


@pytest.fixture
def client(server: SandboxServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=5) as http:
        yield http


def new_token(client: httpx.Client) -> str:
    response = client.post("/oauth2/token", data=token_form())
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def test_revoke_endpoint_invalidates_tokens_and_refuses_every_credential(
    server: SandboxServer, client: httpx.Client
) -> None:
    token = new_token(client)
    first, second = server.state.contact_ids(include_archived=False)[:2]
    assert client.delete(f"/contacts/{first}", headers=bearer(token)).status_code == 200

    revoked = client.post("/_sandbox/revoke")

    assert revoked.status_code == 200
    assert revoked.json() == {"revoked": True}
    assert server.state.credentials_revoked
    # The token that worked a moment ago, and the static token, are refused: nothing is archived.
    for headers in (bearer(token), bearer(STATIC)):
        answer = client.delete(f"/contacts/{second}", headers=headers)
        assert answer.status_code == 401
        assert answer.json() == UNAUTHORIZED
        assert answer.headers["WWW-Authenticate"] == "Bearer"
        assert client.get("/contacts", headers=headers).status_code == 401
    assert server.state.get_contact(second)["archived"] is False  # type: ignore[index]
    # The token endpoint refuses the configured client, by form and by HTTP Basic.
    by_form = client.post("/oauth2/token", data=token_form())
    assert by_form.status_code == 401
    assert by_form.json() == INVALID_CLIENT
    assert "access_token" not in by_form.text
    by_basic = client.post(
        "/oauth2/token", data={"grant_type": "client_credentials"}, headers=basic_header()
    )
    assert by_basic.status_code == 401
    assert by_basic.json() == INVALID_CLIENT
    assert by_basic.headers["WWW-Authenticate"] == 'Basic realm="routera"'
    # Wrong credentials are refused as before; a bad grant still says so first.
    assert client.post("/oauth2/token", data={"grant_type": "password"}).status_code == 400
    assert server.state.stats()["deletes_succeeded"] == {first: 1}


def test_revoke_is_a_test_hook_post_only_and_not_counted(
    server: SandboxServer, client: httpx.Client
) -> None:
    assert client.get("/_sandbox/revoke").status_code == 405
    assert client.get("/_sandbox/restore").status_code == 405
    assert not server.state.credentials_revoked
    assert client.post("/_sandbox/revoke").status_code == 200
    assert client.post("/_sandbox/revoke").status_code == 200  # idempotent
    assert server.state.stats()["totals"]["requests"] == 0
    assert client.post("/_sandbox/revoke/").status_code == 404


def test_restore_accepts_credentials_again_but_not_the_old_tokens(
    server: SandboxServer, client: httpx.Client
) -> None:
    old = new_token(client)
    server.state.revoke()
    assert client.post("/oauth2/token", data=token_form()).status_code == 401

    restored = client.post("/_sandbox/restore")

    assert restored.status_code == 200 and restored.json() == {"revoked": False}
    assert not server.state.credentials_revoked
    assert client.get("/contacts", headers=bearer(old)).status_code == 401
    fresh = new_token(client)
    assert fresh != old
    assert client.get("/contacts", headers=bearer(fresh)).status_code == 200
    assert client.get("/contacts", headers=bearer(STATIC)).status_code == 200
    contact = server.state.contact_ids(include_archived=False)[0]
    assert client.delete(f"/contacts/{contact}", headers=bearer(fresh)).status_code == 200


def test_state_revoke_without_a_server() -> None:
    state = SandboxState(contacts=1, seed=1)
    token = state.issue_token("someone", 60)
    assert token is not None and state.token_client(token) == "someone"

    state.revoke()

    assert state.credentials_revoked
    assert state.token_client(token) is None
    assert state.issue_token("someone", 60) is None
    state.restore_credentials()
    assert state.token_client(token) is None  # revoked tokens stay revoked
    again = state.issue_token("someone", 60)
    assert again is not None and state.token_client(again) == "someone"
    assert state.get_contact(state.contact_ids()[0]) is not None  # the data is untouched


def test_a_second_server_sharing_the_state_sees_the_revocation(server: SandboxServer) -> None:
    with SandboxServer(server.config, server.state) as other:
        server.state.revoke()
        for url in (server.url, other.url):
            with httpx.Client(base_url=url, timeout=5) as client:
                assert client.post("/oauth2/token", data=token_form()).status_code == 401
        server.state.restore_credentials()
        for url in (server.url, other.url):
            with httpx.Client(base_url=url, timeout=5) as client:
                assert client.post("/oauth2/token", data=token_form()).status_code == 200


def test_revoking_only_the_tokens_keeps_the_credentials(
    server: SandboxServer, client: httpx.Client
) -> None:
    old = new_token(client)

    server.state.revoke(credentials=False)

    assert not server.state.credentials_revoked
    assert client.get("/contacts", headers=bearer(old)).status_code == 401
    assert client.get("/contacts", headers=bearer(new_token(client))).status_code == 200
    assert client.get("/contacts", headers=bearer(STATIC)).status_code == 200
