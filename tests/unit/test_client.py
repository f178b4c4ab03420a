"""RouteraClient against respx: what is retried, what is final, what is sent on the wire."""

import asyncio
import http.server
import itertools
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote

import httpx
import pytest
import respx
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import routera_archive.http.client as client_module
from routera_archive import __version__
from routera_archive.errors import (
    AuthenticationError,
    InvalidObjectId,
    RetriesExhausted,
)
from routera_archive.http.client import (
    MAX_ERROR_BODY_CHARS,
    ApiAnswer,
    RouteraClient,
    api_message,
    parse_retry_after,
)
from routera_archive.http.ids import validate_contact_id
from routera_archive.http.pacing import SLOT_SHARE, WINDOW_S, RatePacer
from routera_archive.objects import ObjectType
from tests.conftest import client_config
from tests.unit.test_pacing import SimulatedLoop, most_in_any_window

BASE = "https://api.routera.test"
TOKEN = "static-TOKEN-value-7f3a"
CLIENT_ID = "client-id-42"
SECRET = "client-SECRET-value-9c1d"
CONTACT = {"id": "c1", "archived": "2026-05-28T12:00:00.000Z", "archived_by": "api-client"}

T = TypeVar("T")


class Harness:
    """A client wired to a respx router, recording every sleep instead of sleeping."""

    def __init__(self, **config: Any) -> None:
        self.router = respx.MockRouter(base_url=config.get("base_url", BASE))
        self.waits: list[float] = []
        settings_ = {"base_url": BASE, "access_token": TOKEN, "rps": 0, **config}
        self.config = client_config(**settings_)
        self._client: RouteraClient | None = None

    async def _sleep(self, seconds: float) -> None:
        self.waits.append(seconds)

    def client(self) -> RouteraClient:
        if self._client is None:
            transport = httpx.MockTransport(self.router.async_handler)
            self._client = RouteraClient(self.config, transport=transport, sleep=self._sleep)
        return self._client

    def run(self, scenario: Callable[[RouteraClient], Awaitable[T]]) -> T:
        async def main() -> T:
            async with self.client() as client:
                return await scenario(client)

        return asyncio.run(main())


def oauth_harness(**config: Any) -> Harness:
    return Harness(access_token=None, client_id=CLIENT_ID, client_secret=SECRET, **config)


def token_json(token: str, expires_in: int = 3600) -> httpx.Response:
    return httpx.Response(
        200, json={"access_token": token, "expires_in": expires_in, "token_type": "Bearer"}
    )


def bearer(request: httpx.Request) -> str:
    return request.headers["Authorization"].removeprefix("Bearer ")


# --- configuration ---------------------------------------------------------------------------


def test_repr_never_shows_secrets() -> None:
    static = client_config(access_token=TOKEN)
    oauth = client_config(client_id=CLIENT_ID, client_secret=SECRET)
    for text in (repr(static), str(static), repr(oauth), str(oauth)):
        assert TOKEN not in text
        assert SECRET not in text
    assert CLIENT_ID not in repr(oauth)  # a credential too: never in a log line
    client = RouteraClient(oauth)
    assert SECRET not in repr(client)
    assert SECRET not in repr(client.token_provider)
    asyncio.run(client.aclose())


def test_timeouts_and_limits_come_from_the_config() -> None:
    config = client_config(
        access_token=TOKEN,
        connect_timeout=1,
        read_timeout=2,
        write_timeout=3,
        pool_timeout=4,
        concurrency=20,
    )
    client = RouteraClient(config)
    try:
        # 20 connections in ceil(20 / 8) = 3 pools of at most 7, the real transport each.
        assert len(client._pools) == 3
        for http in client._pools:
            assert http.timeout == httpx.Timeout(connect=1, read=2, write=3, pool=4)
            pool = http._transport._pool
            assert pool._max_connections == 7
            assert pool._max_keepalive_connections == 7
            assert pool._ssl_context.verify_mode.name == "CERT_REQUIRED"
    finally:
        asyncio.run(client.aclose())


def test_requests_in_flight_are_spread_over_the_pools_within_each_pool_s_share() -> None:
    """32 requests at once on four pools of 8: no pool is asked for more than its connections
    (which would make a request wait for one while another pool has some free)."""
    most_in_flight: list[int] = []
    pools_after: list[list[int]] = []

    async def run() -> None:
        async def answer(request: httpx.Request) -> httpx.Response:
            most_in_flight.append(max(client._in_flight))
            await asyncio.sleep(0.01)
            return httpx.Response(200, json={"id": request.url.path.rsplit("/", 1)[-1]})

        config = client_config(access_token=TOKEN, concurrency=32, rps=0)
        client = RouteraClient(config, transport=httpx.MockTransport(answer))
        async with client:
            await asyncio.gather(
                *(client.delete_object(ObjectType.CONTACTS, f"c{n}") for n in range(96))
            )
        pools_after.append(client._in_flight)

    asyncio.run(run())

    assert pools_after == [[0, 0, 0, 0]]
    assert len(most_in_flight) == 96
    assert max(most_in_flight) == 8


# --- static token ----------------------------------------------------------------------------


def test_static_token_is_sent_as_bearer_with_user_agent() -> None:
    h = Harness()
    body = ' {"id": "c1",  "archived": "2026-05-28T12:00:00.000Z"} \n'
    route = h.router.delete("/contacts/c1").respond(200, text=body)
    answer = h.run(lambda c: c.delete_object(ObjectType.CONTACTS, "c1"))
    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["User-Agent"] == f"routera-archive/{__version__}"
    assert answer == ApiAnswer(200, body, 1, False, ())  # the body exactly as received
    assert answer.json() == {"id": "c1", "archived": "2026-05-28T12:00:00.000Z"}


def test_static_token_401_is_final_and_quotes_the_api_message() -> None:
    h = Harness()
    body = {"message": f"Unauthorized: missing account context for {TOKEN}", "error": True}
    route = h.router.delete("/contacts/c1").respond(401, json=body)
    with pytest.raises(AuthenticationError) as caught:
        h.run(lambda c: c.delete_object(ObjectType.CONTACTS, "c1"))
    message = str(caught.value)
    assert "401" in message
    assert "SOURCES__ROUTERA__ACCESS_TOKEN" in message
    assert "missing account context" in message
    assert TOKEN not in message
    assert route.call_count == 1
    assert h.waits == []


# --- OAuth -----------------------------------------------------------------------------------


def test_oauth_token_is_fetched_once_for_many_concurrent_calls() -> None:
    h = oauth_harness()
    token_route = h.router.post("/oauth2/token").respond(
        200, json={"access_token": "T1", "expires_in": 3600, "token_type": "Bearer"}
    )
    api = h.router.get(path__startswith="/contacts/").respond(200, json=CONTACT)

    async def scenario(client: RouteraClient) -> int:
        await asyncio.gather(*(client.get_object(ObjectType.CONTACTS, f"c{i}") for i in range(20)))
        await client.get_object(ObjectType.CONTACTS, "again")  # still cached
        return client.requests_sent

    assert h.run(scenario) == 22
    assert token_route.call_count == 1
    token_request = token_route.calls.last.request
    assert token_request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert "Authorization" not in token_request.headers
    assert parse_qs(token_request.content.decode()) == {
        "grant_type": ["client_credentials"],
        "client_id": [CLIENT_ID],
        "client_secret": [SECRET],
    }
    assert {bearer(call.request) for call in api.calls} == {"T1"}


def test_oauth_token_is_renewed_after_expiry() -> None:
    h = oauth_harness(token_refresh_margin=60)
    token_route = h.router.post("/oauth2/token")
    token_route.side_effect = [token_json("T1", 3600), token_json("T2", 3600)]
    api = h.router.get("/contacts/c1").respond(200, json=CONTACT)
    now = [0.0]
    h.client().token_provider.clock = lambda: now[0]  # type: ignore[attr-defined]

    async def scenario(client: RouteraClient) -> None:
        await client.get_object(ObjectType.CONTACTS, "c1")
        now[0] = 3539.0
        await client.get_object(ObjectType.CONTACTS, "c1")
        now[0] = 3541.0
        await client.get_object(ObjectType.CONTACTS, "c1")

    h.run(scenario)
    assert [bearer(call.request) for call in api.calls] == ["T1", "T1", "T2"]
    assert token_route.call_count == 2


def test_oauth_401_renews_the_token_once_and_repeats_the_call() -> None:
    h = oauth_harness()
    h.router.post("/oauth2/token").side_effect = [token_json("T1"), token_json("T2")]
    api = h.router.delete("/contacts/c1")
    api.side_effect = lambda request: (
        httpx.Response(200, json=CONTACT)
        if bearer(request) == "T2"
        else httpx.Response(401, json={"message": "expired", "error": True})
    )
    answer = h.run(lambda c: c.delete_object(ObjectType.CONTACTS, "c1"))
    assert answer.status_code == 200
    assert answer.attempts == 2
    assert answer.maybe_reached_before is False
    assert answer.retry_reasons == ("HTTP 401 (OAuth token renewed)",)
    assert [bearer(call.request) for call in api.calls] == ["T1", "T2"]
    assert h.waits == []


def test_oauth_repeat_after_401_does_not_use_up_max_attempts() -> None:
    h = oauth_harness(max_attempts=1)
    h.router.post("/oauth2/token").side_effect = [token_json("T1"), token_json("T2")]
    api = h.router.get("/contacts/c1")
    api.side_effect = lambda request: httpx.Response(200 if bearer(request) == "T2" else 401)
    assert h.run(lambda c: c.get_object(ObjectType.CONTACTS, "c1")).status_code == 200


def test_oauth_repeat_after_401_is_outside_the_attempt_budget() -> None:
    h = oauth_harness(max_attempts=2)
    h.router.post("/oauth2/token").side_effect = [token_json("T1"), token_json("T2")]
    api = h.router.get("/contacts/c1")
    api.side_effect = [httpx.Response(401), httpx.Response(503), httpx.Response(200)]
    answer = h.run(lambda c: c.get_object(ObjectType.CONTACTS, "c1"))
    assert (answer.status_code, answer.attempts) == (200, 3)
    assert answer.retry_reasons == ("HTTP 401 (OAuth token renewed)", "HTTP 503")
    assert answer.maybe_reached_before is True


def test_oauth_second_401_raises_authentication_error() -> None:
    h = oauth_harness()
    token_route = h.router.post("/oauth2/token")
    token_route.side_effect = [token_json("T1"), token_json("T2"), token_json("T3")]
    api = h.router.delete("/contacts/c1").respond(
        401, json={"message": "Unauthorized: missing account context", "error": True}
    )
    with pytest.raises(AuthenticationError) as caught:
        h.run(lambda c: c.delete_object(ObjectType.CONTACTS, "c1"))
    assert "missing account context" in str(caught.value)
    assert "freshly issued" in str(caught.value)
    for secret in (SECRET, "T1", "T2"):
        assert secret not in str(caught.value)
    assert api.call_count == 2
    assert token_route.call_count == 2


def test_concurrent_401s_trigger_a_single_refresh() -> None:
    h = oauth_harness()
    token_route = h.router.post("/oauth2/token")
    token_route.side_effect = [token_json("T1"), token_json("T2"), token_json("T3")]
    gate = asyncio.Event()
    first_wave: list[str] = []

    async def answer(request: httpx.Request) -> httpx.Response:
        if bearer(request) == "T1":
            first_wave.append(request.url.path)
            if len(first_wave) < 10:
                await gate.wait()  # hold until all ten calls have sent with T1
            gate.set()
            return httpx.Response(401)
        return httpx.Response(200, json=CONTACT)

    h.router.get(path__startswith="/contacts/").side_effect = answer

    async def scenario(client: RouteraClient) -> list[ApiAnswer]:
        return await asyncio.gather(
            *(client.get_object(ObjectType.CONTACTS, f"c{i}") for i in range(10))
        )

    answers = h.run(scenario)
    assert len(first_wave) == 10
    assert [a.status_code for a in answers] == [200] * 10
    assert token_route.call_count == 2


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, {"error": "invalid_grant", "error_description": "grant type not allowed"}),
        (401, {"error": "invalid_client", "error_description": f"bad secret {SECRET}"}),
    ],
)
def test_token_endpoint_refusal_raises_without_the_secret(status: int, body: dict) -> None:
    h = oauth_harness()
    h.router.post("/oauth2/token").respond(status, json=body)
    api = h.router.delete("/contacts/c1").respond(200, json=CONTACT)
    with pytest.raises(AuthenticationError) as caught:
        h.run(lambda c: c.delete_object(ObjectType.CONTACTS, "c1"))
    message = str(caught.value)
    assert body["error"] in message
    assert "client id and secret" in message
    assert SECRET not in message
    assert SECRET not in repr(caught.value)
    assert not api.called


def test_token_endpoint_5xx_is_retried_and_counted() -> None:
    h = oauth_harness()
    token_route = h.router.post("/oauth2/token")
    token_route.side_effect = [httpx.Response(503), httpx.ReadTimeout, token_json("T1")]
    h.router.get("/contacts/c1").respond(200, json=CONTACT)

    async def scenario(client: RouteraClient) -> int:
        await client.get_object(ObjectType.CONTACTS, "c1")
        return client.requests_sent

    assert h.run(scenario) == 4
    assert token_route.call_count == 3
    assert len(h.waits) == 2


def test_token_endpoint_exhaustion_raises_retries_exhausted_without_the_secret() -> None:
    h = oauth_harness(max_attempts=2)
    h.router.post("/oauth2/token").respond(503, text=f"echo client_secret={SECRET}")
    api = h.router.delete("/contacts/c1").respond(200, json=CONTACT)
    with pytest.raises(RetriesExhausted) as caught:
        h.run(lambda c: c.delete_object(ObjectType.CONTACTS, "c1"))
    error = caught.value
    assert "OAuth token" in str(error)
    assert SECRET not in str(error)
    assert SECRET not in (error.last_body or "")
    assert error.last_status == 503
    assert error.maybe_reached_server is False  # the DELETE itself was never sent
    assert not api.called


def test_token_failure_mid_call_keeps_the_calls_maybe_reached() -> None:
    h = oauth_harness(max_attempts=3)
    token_route = h.router.post("/oauth2/token")
    token_route.side_effect = [token_json("T1")] + [httpx.Response(503)] * 3
    api = h.router.delete("/contacts/c1")
    api.side_effect = [httpx.Response(502), httpx.Response(401)]
    with pytest.raises(RetriesExhausted) as caught:
        h.run(lambda c: c.delete_object(ObjectType.CONTACTS, "c1"))
    assert caught.value.maybe_reached_server is True  # the 502 may have archived it
    assert caught.value.attempts == 2
    assert "OAuth token" in str(caught.value)
    assert SECRET not in str(caught.value)


# --- final answers and retries ---------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 400, 403, 404, 409, 422])
def test_final_answers_are_returned_without_retry(status: int) -> None:
    h = Harness()
    body = '{"message": "Object not found or already archived", "error": true}'
    route = h.router.delete("/contacts/c1").respond(status, text=body)
    answer = h.run(lambda c: c.delete_object(ObjectType.CONTACTS, "c1"))
    assert answer.status_code == status
    assert answer.body == body
    assert answer.attempts == 1
    assert answer.retry_reasons == ()
    assert route.call_count == 1
    assert h.waits == []


def test_429_with_retry_after_seconds_is_honoured() -> None:
    h = Harness()
    route = h.router.delete("/contacts/c1")
    route.side_effect = [
        httpx.Response(429, headers={"Retry-After": "7"}),
        httpx.Response(200, json=CONTACT),
    ]
    answer = h.run(lambda c: c.delete_object(ObjectType.CONTACTS, "c1"))
    assert h.waits == [7.0]
    assert answer.attempts == 2
    assert answer.maybe_reached_before is False
    assert answer.retry_reasons == ("HTTP 429",)


def test_429_with_retry_after_http_date_is_honoured() -> None:
    h = Harness()
    now = datetime(2026, 5, 28, 12, 0, 0, tzinfo=UTC)
    h.client().wall_clock = now.timestamp
    later = format_datetime(datetime(2026, 5, 28, 12, 0, 42, tzinfo=UTC), usegmt=True)
    route = h.router.get("/contacts/c1")
    route.side_effect = [
        httpx.Response(429, headers={"Retry-After": later}),
        httpx.Response(200, json=CONTACT),
    ]
    assert h.run(lambda c: c.get_object(ObjectType.CONTACTS, "c1")).status_code == 200
    assert h.waits == [42.0]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("0", 0.0),
        (" 12 ", 12.0),
        ("-3", None),
        ("1.5", None),
        ("soon", None),
        ("Wed, 28 May 2026 12:00:10 GMT", 10.0),
        ("Wed, 28 May 2026 11:59:00 GMT", 0.0),  # in the past: go now
        ("Wed, 28 May 2026 12:00:10 -0000", 10.0),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    now = datetime(2026, 5, 28, 12, 0, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after(value, now) == expected


def test_5xx_are_retried_until_success() -> None:
    h = Harness(backoff_initial=0.5, backoff_max=30)
    route = h.router.delete("/contacts/c1")
    route.side_effect = [
        httpx.Response(500),
        httpx.Response(502),
        httpx.Response(503),
        httpx.Response(200, json=CONTACT),
    ]

    async def scenario(client: RouteraClient) -> tuple[ApiAnswer, int]:
        return await client.delete_object(ObjectType.CONTACTS, "c1"), client.requests_sent

    answer, sent = h.run(scenario)
    assert answer.status_code == 200
    assert answer.attempts == 4
    assert sent == 4
    assert answer.maybe_reached_before is True
    assert answer.retry_reasons == ("HTTP 500", "HTTP 502", "HTTP 503")
    assert len(h.waits) == 3
    for n, wait in enumerate(h.waits):
        assert 0 <= wait <= 0.5 * 2**n


def test_backoff_is_exponential_and_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("routera_archive.http.client.random.uniform", lambda low, high: high)
    h = Harness(backoff_initial=1, backoff_max=3, max_attempts=5, max_retry_wait=100)
    h.router.get("/contacts/c1").respond(503)
    with pytest.raises(RetriesExhausted):
        h.run(lambda c: c.get_object(ObjectType.CONTACTS, "c1"))
    assert h.waits == [1.0, 2.0, 3.0, 3.0]


def test_backoff_draws_full_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    draws: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        draws.append((low, high))
        return low

    monkeypatch.setattr("routera_archive.http.client.random.uniform", uniform)
    h = Harness(backoff_initial=1, backoff_max=3, max_attempts=5, max_retry_wait=100)
    h.router.get("/contacts/c1").respond(503)
    with pytest.raises(RetriesExhausted):
        h.run(lambda c: c.get_object(ObjectType.CONTACTS, "c1"))
    # Five draws: the last one is the wait that max_attempts then refuses.
    assert draws == [(0, 1.0), (0, 2.0), (0, 3.0), (0, 3.0), (0, 3.0)]
    assert h.waits == []  # zero-second waits are not slept


def test_408_is_retried() -> None:
    h = Harness()
    route = h.router.get("/contacts/c1")
    route.side_effect = [httpx.Response(408), httpx.Response(200, json=CONTACT)]
    answer = h.run(lambda c: c.get_object(ObjectType.CONTACTS, "c1"))
    assert (answer.status_code, answer.attempts) == (200, 2)


@pytest.mark.parametrize(
    ("error", "reason", "maybe_reached"),
    [
        (httpx.ConnectError, "connection failed", False),
        (httpx.ConnectTimeout, "connect timeout", False),
        (httpx.PoolTimeout, "pool timeout", False),
        (httpx.ReadTimeout, "read timeout", True),
        (httpx.WriteTimeout, "write timeout", True),
        (httpx.ReadError, "connection dropped while reading", True),
        (httpx.RemoteProtocolError, "malformed or cut response", True),
    ],
)
def test_transport_errors_are_retried_and_classified(
    error: type[Exception], reason: str, maybe_reached: bool
) -> None:
    h = Harness()
    route = h.router.delete("/contacts/c1")
    route.side_effect = [error, httpx.Response(200, json=CONTACT)]
    answer = h.run(lambda c: c.delete_object(ObjectType.CONTACTS, "c1"))
    assert answer.status_code == 200
    assert answer.attempts == 2
    assert answer.maybe_reached_before is maybe_reached
    assert answer.retry_reasons == (reason,)


def test_one_maybe_reached_attempt_taints_the_whole_call() -> None:
    h = Harness()
    route = h.router.delete("/contacts/c1")
    route.side_effect = [
        httpx.ReadTimeout,
        httpx.Response(429),
        httpx.ConnectError,
        httpx.Response(404, json={"message": "not found or already archived"}),
    ]
    answer = h.run(lambda c: c.delete_object(ObjectType.CONTACTS, "c1"))
    assert answer.status_code == 404
    assert answer.maybe_reached_before is True
    assert answer.retry_reasons == ("read timeout", "HTTP 429", "connection failed")


def test_exhaustion_reports_attempts_status_and_cut_body() -> None:
    h = Harness(max_attempts=3)
    long_body = "x" * (MAX_ERROR_BODY_CHARS * 3)
    route = h.router.delete("/contacts/c1").respond(503, text=long_body)
    with pytest.raises(RetriesExhausted) as caught:
        h.run(lambda c: c.delete_object(ObjectType.CONTACTS, "c1"))
    error = caught.value
    assert error.attempts == 3
    assert error.last_status == 503
    assert error.last_body == "x" * MAX_ERROR_BODY_CHARS
    assert error.maybe_reached_server is True
    assert "3 attempts" in str(error)
    assert TOKEN not in str(error)
    assert route.call_count == 3
    assert len(h.waits) == 2


def test_exhaustion_by_connect_errors_never_reached_the_server() -> None:
    h = Harness(max_attempts=3)
    h.router.delete("/contacts/c1").side_effect = httpx.ConnectError
    with pytest.raises(RetriesExhausted) as caught:
        h.run(lambda c: c.delete_object(ObjectType.CONTACTS, "c1"))
    assert caught.value.maybe_reached_server is False
    assert caught.value.last_status is None
    assert caught.value.attempts == 3


def test_exhaustion_by_429_never_reached_the_server() -> None:
    h = Harness(max_attempts=2)
    h.router.delete("/contacts/c1").respond(429, text="slow down")
    with pytest.raises(RetriesExhausted) as caught:
        h.run(lambda c: c.delete_object(ObjectType.CONTACTS, "c1"))
    assert caught.value.maybe_reached_server is False
    assert (caught.value.last_status, caught.value.last_body) == (429, "slow down")


def test_retry_after_beyond_budget_gives_up_without_sleeping() -> None:
    h = Harness(max_retry_wait=120)
    route = h.router.delete("/contacts/c1").respond(429, headers={"Retry-After": "600"})
    with pytest.raises(RetriesExhausted) as caught:
        h.run(lambda c: c.delete_object(ObjectType.CONTACTS, "c1"))
    assert h.waits == []
    assert caught.value.attempts == 1
    assert "max_retry_wait" in str(caught.value)
    assert route.call_count == 1


def test_total_wait_never_exceeds_max_retry_wait() -> None:
    h = Harness(max_retry_wait=120, max_attempts=10)
    route = h.router.delete("/contacts/c1").respond(503, headers={"Retry-After": "50"})
    with pytest.raises(RetriesExhausted) as caught:
        h.run(lambda c: c.delete_object(ObjectType.CONTACTS, "c1"))
    assert h.waits == [50.0, 50.0]
    assert caught.value.attempts == 3
    assert route.call_count == 3


def test_retries_are_logged_without_secrets(caplog: pytest.LogCaptureFixture) -> None:
    h = Harness()
    route = h.router.delete("/contacts/a%2Fb")
    route.side_effect = [httpx.Response(503), httpx.Response(200, json=CONTACT)]
    with caplog.at_level(logging.DEBUG, logger="routera_archive"):
        h.run(lambda c: c.delete_object(ObjectType.CONTACTS, "a/b"))
    retry_logs = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert retry_logs
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "DELETE /contacts/a%2Fb: HTTP 503 on attempt 1" in text
    assert TOKEN not in text
    assert "Authorization" not in text


# --- ids on the wire -------------------------------------------------------------------------

HOSTILE_IDS = [
    ("a/b", b"a%2Fb"),
    ("?x", b"%3Fx"),
    ("#x", b"%23x"),
    ("%2F", b"%252F"),
    ("%25", b"%2525"),
    ("a b", b"a%20b"),
    ("é", b"%C3%A9"),
    ("名前", b"%E5%90%8D%E5%89%8D"),
    ("../oauth2/token", b"..%2Foauth2%2Ftoken"),
    ("...", b"..."),
]


@pytest.mark.parametrize("base_url", [BASE, "https://gateway.test/api/v1/"])
@pytest.mark.parametrize(("contact_id", "segment"), HOSTILE_IDS)
def test_ids_are_one_encoded_segment_on_the_wire(
    base_url: str, contact_id: str, segment: bytes
) -> None:
    h = Harness(base_url=base_url)
    route = h.router.route().respond(200, json=CONTACT)

    async def scenario(client: RouteraClient) -> None:
        await client.delete_object(ObjectType.CONTACTS, contact_id)
        await client.get_object(ObjectType.CONTACTS, contact_id)

    h.run(scenario)
    prefix = httpx.URL(base_url).raw_path.rstrip(b"/")
    expected = prefix + b"/contacts/" + segment
    assert [call.request.method for call in route.calls] == ["DELETE", "GET"]
    for call in route.calls:
        assert call.request.url.raw_path == expected
        assert call.request.url.host == httpx.URL(base_url).host


INVALID_IDS = ["", "   ", ".", "..", "a\x00b", "a\nb", "x" * 257, " a", "a ", "a\u200b"]


@pytest.mark.parametrize("contact_id", INVALID_IDS)
def test_invalid_ids_raise_before_anything_is_sent(contact_id: str) -> None:
    h = Harness()
    route = h.router.route().respond(200, json=CONTACT)

    async def scenario(client: RouteraClient) -> int:
        for call in (client.delete_object, client.get_object):
            with pytest.raises(InvalidObjectId):
                await call(ObjectType.CONTACTS, contact_id)
        return client.requests_sent

    assert h.run(scenario) == 0
    assert not route.called


# Any text, plus text without the refused categories and text made of URL-special characters, so
# that most examples are accepted ids and the hostile ones come up often.
ID_LIKE_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(
        st.characters(exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn")), min_size=1, max_size=40
    ),
    st.text(alphabet="/?#%.&=+;:@ aé名\\", min_size=1, max_size=20),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ID_LIKE_TEXT)
def test_any_valid_id_reaches_the_wire_as_one_reversible_segment(text: str) -> None:
    try:
        validate_contact_id(text)
    except InvalidObjectId:
        assume(False)
    h = Harness()
    route = h.router.route().respond(200, json=CONTACT)
    h.run(lambda c: c.delete_object(ObjectType.CONTACTS, text))
    raw = route.calls.last.request.url.raw_path
    assert raw.startswith(b"/contacts/")
    segment = raw.removeprefix(b"/contacts/").decode("ascii")
    assert not any(char in segment for char in "/?#")
    assert unquote(segment, errors="strict") == text


# --- other routes ----------------------------------------------------------------------------


def test_list_contacts_sends_query_parameters() -> None:
    h = Harness()
    page = {"data": [CONTACT], "pagination": {"limit": 50, "offset": 100, "count": 101}}
    route = h.router.get("/contacts").respond(200, json=page)
    answer = h.run(
        lambda c: c.list_objects(ObjectType.CONTACTS, archived=True, limit=50, offset=100)
    )
    assert route.calls.last.request.url.query == b"archived=true&limit=50&offset=100"
    assert answer.json() == page
    h2 = Harness()
    route2 = h2.router.get("/contacts").respond(200, json=page)
    h2.run(lambda c: c.list_objects(ObjectType.CONTACTS))
    assert route2.calls.last.request.url.query == b"archived=false&limit=100&offset=0"


def test_create_contact_posts_fields() -> None:
    h = Harness()
    route = h.router.post("/contacts").respond(201, json={"id": "new"})
    fields = {"first_name": "Ada", "external_id": "ext-1", "Lead Score": 3}
    answer = h.run(lambda c: c.create_object(ObjectType.CONTACTS, fields))
    assert answer.status_code == 201
    assert json.loads(route.calls.last.request.content) == {"fields": fields}
    assert route.calls.last.request.headers["Content-Type"] == "application/json"


def test_api_answer_json_propagates_value_error() -> None:
    with pytest.raises(ValueError):
        ApiAnswer(200, "<html>", 1, False, ()).json()


# --- concurrency and rate ----------------------------------------------------------------------


def test_concurrency_cap_is_never_exceeded() -> None:
    h = Harness(concurrency=3)
    in_flight = 0
    peak = 0

    async def slow(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return httpx.Response(200, json=CONTACT)

    h.router.get(path__startswith="/contacts/").side_effect = slow

    async def scenario(client: RouteraClient) -> None:
        await asyncio.gather(*(client.get_object(ObjectType.CONTACTS, f"c{i}") for i in range(15)))

    h.run(scenario)
    assert peak == 3


def test_backoff_sleep_does_not_hold_a_concurrency_slot() -> None:
    h = Harness(concurrency=1)
    other_done = asyncio.Event()
    a = h.router.get("/contacts/a")
    a.side_effect = [httpx.Response(503), httpx.Response(200, json=CONTACT)]
    h.router.get("/contacts/b").respond(200, json=CONTACT)

    async def blocking_sleep(seconds: float) -> None:
        await other_done.wait()  # would deadlock if the sleeper still held the only slot

    async def scenario(client: RouteraClient) -> list[int]:
        client.sleep = blocking_sleep
        first = asyncio.create_task(client.get_object(ObjectType.CONTACTS, "a"))
        await asyncio.sleep(0)
        second = await client.get_object(ObjectType.CONTACTS, "b")
        other_done.set()
        return [second.status_code, (await first).status_code]

    async def bounded(client: RouteraClient) -> list[int]:
        return await asyncio.wait_for(scenario(client), timeout=2)

    assert h.run(bounded) == [200, 200]


def test_rate_limit_spaces_every_request_including_retries() -> None:
    rps = 20.0
    h = Harness(rps=rps, concurrency=8)
    sent_at: list[float] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent_at.append(time.monotonic())
        if request.url.path == "/contacts/c0" and len(sent_at) == 1:
            return httpx.Response(503)
        return httpx.Response(200, json=CONTACT)

    h.router.get(path__startswith="/contacts/").side_effect = record

    async def scenario(client: RouteraClient) -> int:
        await asyncio.gather(*(client.get_object(ObjectType.CONTACTS, f"c{i}") for i in range(5)))
        return client.requests_sent

    started = time.monotonic()
    assert h.run(scenario) == 6
    elapsed = time.monotonic() - started
    gaps = [b - a for a, b in itertools.pairwise(sent_at)]
    assert len(sent_at) == 6
    assert min(gaps) >= 1 / rps - 0.015, gaps
    assert sent_at[-1] - sent_at[0] >= 5 / rps - 0.02
    assert elapsed < 2


def test_snapshot_gets_and_deletes_share_one_pacer(monkeypatch: pytest.MonkeyPatch) -> None:
    """With `properties` each contact costs a snapshot GET and its DELETE, and `rps` holds for
    the two together (README: "the pacer holds the rate for both"). On a simulated clock (the
    client's pacer built on it), 40 contacts archived as the archiver does, 8 at a time: every
    request of either method starts at its own slot of one grid, so the rate is never doubled.
    A GET that skipped the pacer would start with the DELETE before it, no gap between them."""
    rps = 20.0
    loop = SimulatedLoop()

    def simulated_pacer(rate: float) -> RatePacer:
        return RatePacer(rate, clock=loop.clock, sleep=loop.sleep)

    monkeypatch.setattr(client_module, "RatePacer", simulated_pacer)
    h = Harness(rps=rps, concurrency=8, properties=["lead_score"])
    started: list[tuple[float, str]] = []

    def record(request: httpx.Request) -> httpx.Response:
        started.append((loop.now, request.method))
        return httpx.Response(200, json=CONTACT)

    h.router.route(path__startswith="/contacts/").side_effect = record

    async def scenario(client: RouteraClient) -> None:
        async def archive(number: int) -> None:
            await client.get_object(ObjectType.CONTACTS, f"c{number}")  # the snapshot, then
            await client.delete_object(ObjectType.CONTACTS, f"c{number}")  # its DELETE

        await loop.run(asyncio.gather(*(archive(number) for number in range(40))))

    h.run(scenario)

    assert Counter(method for _, method in started) == {"GET": 40, "DELETE": 40}
    times = sorted(moment for moment, _ in started)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert min(gaps) == pytest.approx(1 / (rps * SLOT_SHARE))
    assert most_in_any_window(times, window=WINDOW_S) <= rps
    # The 80 requests took the time of 80 at the rate, not of 40 (each method on its own).
    assert times[-1] - times[0] >= 79 / (rps * SLOT_SHARE) - 1e-9
    assert h.waits == []  # no retry: every wait was the pacer's


def test_rps_zero_disables_the_limit() -> None:
    h = Harness(rps=0, concurrency=50)
    h.router.get(path__startswith="/contacts/").respond(200, json=CONTACT)

    async def scenario(client: RouteraClient) -> None:
        await asyncio.gather(*(client.get_object(ObjectType.CONTACTS, f"c{i}") for i in range(200)))

    started = time.monotonic()
    h.run(scenario)
    assert time.monotonic() - started < 1.5


def test_a_proxy_from_the_environment_carries_the_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY/HTTPS_PROXY as the user's environment sets them: the calls go through the
    proxy (a real one on loopback here), as httpx's client would send them."""
    seen: list[str] = []

    class Proxy(http.server.BaseHTTPRequestHandler):
        def do_DELETE(self) -> None:
            seen.append(self.requestline)
            body = json.dumps(CONTACT).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.server_port}")

        async def archive() -> int:
            config = client_config(base_url="http://api.routera.invalid", access_token=TOKEN)
            async with RouteraClient(config) as client:
                return (await client.delete_object(ObjectType.CONTACTS, "c1")).status_code

        assert asyncio.run(archive()) == 200
    finally:
        server.shutdown()
        server.server_close()

    assert seen == ["DELETE http://api.routera.invalid/contacts/c1 HTTP/1.1"]


def test_an_api_message_is_one_line_cut_short_and_never_quotes_a_secret() -> None:
    body = json.dumps({"message": f"denied for\n Bearer {TOKEN}\twith  {SECRET}", "error": True})
    message = api_message(body, secrets=(TOKEN, SECRET))
    assert message == "denied for Bearer <redacted> with <redacted>"
    assert api_message("x" * 500).endswith("…") and len(api_message("x" * 500)) == 201
    assert api_message("   ") == "(empty body)"
    assert api_message("<html>oops</html>", fallback=False) == ""


def test_an_oauth_client_knows_the_tokens_it_was_issued_as_secrets() -> None:
    h = oauth_harness()
    h.router.post("/oauth2/token").mock(return_value=token_json("issued-TOKEN-1"))
    h.router.delete("/contacts/c1").respond(200, json=CONTACT)
    h.run(lambda c: c.delete_object(ObjectType.CONTACTS, "c1"))
    assert set(h.client().secrets) == {SECRET, "issued-TOKEN-1"}
