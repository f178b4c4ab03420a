"""Token providers, tested with a fake sender and a fake clock (no HTTP, no sleeping)."""

import asyncio
import json
from dataclasses import dataclass

import pytest

from routera_archive.errors import AuthenticationError
from routera_archive.http.auth import (
    FALLBACK_TOKEN_LIFETIME_S,
    OAuthTokenProvider,
    StaticTokenProvider,
)

CLIENT_ID = "client-id-123"
SECRET = "s3cr3t-VALUE-never-shown"


@dataclass(frozen=True)
class Answer:
    status_code: int
    body: str


class FakeTokenEndpoint:
    """Answers token requests from a list (the last answer repeats) and records the forms."""

    def __init__(self, *answers: Answer, delay_ticks: int = 0) -> None:
        self.answers = list(answers)
        self.forms: list[dict[str, str]] = []
        self.delay_ticks = delay_ticks

    async def __call__(self, form: dict[str, str]) -> Answer:
        self.forms.append(dict(form))
        for _ in range(self.delay_ticks):
            await asyncio.sleep(0)  # let concurrent callers pile up on the lock
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def token_answer(token: str, expires_in: object = 3600) -> Answer:
    return Answer(200, json.dumps({"access_token": token, "expires_in": expires_in}))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def provider(endpoint: FakeTokenEndpoint, clock: FakeClock, margin: float = 60.0):
    return OAuthTokenProvider(endpoint, CLIENT_ID, SECRET, margin, clock=clock)


def test_static_provider_returns_its_token_and_cannot_refresh() -> None:
    static = StaticTokenProvider("tok-abc")
    assert static.can_refresh is False
    assert asyncio.run(static.get_token()) == "tok-abc"
    asyncio.run(static.invalidate("tok-abc"))
    assert asyncio.run(static.get_token()) == "tok-abc"
    assert "tok-abc" not in repr(static)


def test_oauth_sends_client_credentials_form() -> None:
    endpoint = FakeTokenEndpoint(token_answer("T1"))
    oauth = provider(endpoint, FakeClock())
    assert asyncio.run(oauth.get_token()) == "T1"
    assert endpoint.forms == [
        {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": SECRET}
    ]
    assert oauth.can_refresh is True
    assert SECRET not in repr(oauth)


def test_oauth_caches_until_expiry_minus_margin() -> None:
    endpoint = FakeTokenEndpoint(token_answer("T1", 3600), token_answer("T2", 3600))
    clock = FakeClock()
    oauth = provider(endpoint, clock, margin=60)

    async def scenario() -> list[str]:
        seen = [await oauth.get_token()]
        clock.now += 3539
        seen.append(await oauth.get_token())
        clock.now += 1  # 3540 s = 3600 - 60: renew now
        seen.append(await oauth.get_token())
        return seen

    assert asyncio.run(scenario()) == ["T1", "T1", "T2"]
    assert len(endpoint.forms) == 2


def test_oauth_short_lifetime_uses_half_of_it() -> None:
    endpoint = FakeTokenEndpoint(token_answer("T1", 30), token_answer("T2", 30))
    clock = FakeClock()
    oauth = provider(endpoint, clock, margin=60)

    async def scenario() -> list[str]:
        seen = [await oauth.get_token()]
        clock.now += 14.9
        seen.append(await oauth.get_token())
        clock.now += 0.1
        seen.append(await oauth.get_token())
        return seen

    assert asyncio.run(scenario()) == ["T1", "T1", "T2"]


@pytest.mark.parametrize(
    ("expires_in", "lifetime"),
    [(None, FALLBACK_TOKEN_LIFETIME_S), ("120", 120.0), ("soon", FALLBACK_TOKEN_LIFETIME_S),
     (-5, FALLBACK_TOKEN_LIFETIME_S), (True, FALLBACK_TOKEN_LIFETIME_S)],
)  # fmt: skip
def test_oauth_lifetime_from_odd_expires_in(expires_in: object, lifetime: float) -> None:
    body = {"access_token": "T1"} if expires_in is None else None
    answer = Answer(200, json.dumps(body)) if body else token_answer("T1", expires_in)
    endpoint = FakeTokenEndpoint(answer, token_answer("T2"))
    clock = FakeClock()
    oauth = provider(endpoint, clock, margin=0)

    async def scenario() -> list[str]:
        seen = [await oauth.get_token()]
        clock.now += lifetime - 0.5
        seen.append(await oauth.get_token())
        clock.now += 0.5
        seen.append(await oauth.get_token())
        return seen

    assert asyncio.run(scenario()) == ["T1", "T1", "T2"]


def test_concurrent_callers_share_one_token_request() -> None:
    endpoint = FakeTokenEndpoint(token_answer("T1"), delay_ticks=5)
    oauth = provider(endpoint, FakeClock())

    async def scenario() -> list[str]:
        return await asyncio.gather(*(oauth.get_token() for _ in range(25)))

    assert asyncio.run(scenario()) == ["T1"] * 25
    assert len(endpoint.forms) == 1


def test_invalidate_only_drops_the_token_it_names() -> None:
    endpoint = FakeTokenEndpoint(token_answer("T1"), token_answer("T2"), token_answer("T3"))
    oauth = provider(endpoint, FakeClock())

    async def scenario() -> list[str]:
        first = await oauth.get_token()
        await oauth.invalidate(first)
        second = await oauth.get_token()
        await oauth.invalidate(first)  # a late 401 for the old token: keep T2
        third = await oauth.get_token()
        return [first, second, third]

    assert asyncio.run(scenario()) == ["T1", "T2", "T2"]
    assert len(endpoint.forms) == 2


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, '{"error": "invalid_grant", "error_description": "bad grant"}', "invalid_grant"),
        (401, '{"error": "invalid_client", "error_description": "unknown client"}', "unknown"),
        (401, "plain text refusal", "plain text refusal"),
        # Routera's own error shape: its `error` is `true`, its words are in `message`.
        (401, '{"message": "client disabled", "error": true}', "HTTP 401: client disabled)"),
        (401, '{"error": true}', 'HTTP 401: {"error": true})'),
    ],
)
def test_refused_credentials_raise_authentication_error(
    status: int, body: str, expected: str
) -> None:
    oauth = provider(FakeTokenEndpoint(Answer(status, body)), FakeClock())
    with pytest.raises(AuthenticationError) as caught:
        asyncio.run(oauth.get_token())
    message = str(caught.value)
    assert f"HTTP {status}" in message
    assert expected in message
    assert "SOURCES__ROUTERA__CLIENT_SECRET" in message
    assert SECRET not in message


def test_echoed_secret_is_masked_in_the_error() -> None:
    body = json.dumps({"error": "invalid_client", "error_description": f"bad secret {SECRET}"})
    oauth = provider(FakeTokenEndpoint(Answer(401, body)), FakeClock())
    with pytest.raises(AuthenticationError) as caught:
        asyncio.run(oauth.get_token())
    assert SECRET not in str(caught.value)
    assert "bad secret <redacted>" in str(caught.value)


@pytest.mark.parametrize(
    ("status", "body", "must_contain"),
    [
        (200, "<html>maintenance</html>", "maintenance"),
        (200, '{"token": "x"}', '{"token": "x"}'),
        (200, '{"access_token": ""}', "withheld"),
        (200, "[]", "HTTP 200"),
        (403, '{"message": "forbidden"}', "HTTP 403"),
        (404, "Not Found", "check base_url"),
    ],
)
def test_unexpected_token_answers(status: int, body: str, must_contain: str) -> None:
    oauth = provider(FakeTokenEndpoint(Answer(status, body)), FakeClock())
    with pytest.raises(AuthenticationError) as caught:
        asyncio.run(oauth.get_token())
    assert "answered something unexpected" in str(caught.value)
    assert must_contain in str(caught.value)


@pytest.mark.parametrize("token", ["LEAKY\nTOKEN", "LEAKY TOKEN", "LEAKY\x00TOKEN"])
def test_token_that_cannot_be_a_header_is_refused_without_quoting_it(token: str) -> None:
    oauth = provider(FakeTokenEndpoint(token_answer(token)), FakeClock())
    with pytest.raises(AuthenticationError, match="unexpected") as caught:
        asyncio.run(oauth.get_token())
    assert "LEAKY" not in str(caught.value)


def test_body_holding_a_token_is_never_quoted() -> None:
    body = json.dumps({"access_token": "LEAKY-TOKEN-999", "note": "but HTTP 403"})
    oauth = provider(FakeTokenEndpoint(Answer(403, body)), FakeClock())
    with pytest.raises(AuthenticationError) as caught:
        asyncio.run(oauth.get_token())
    assert "LEAKY-TOKEN-999" not in str(caught.value)


def test_long_unexpected_body_is_cut() -> None:
    oauth = provider(FakeTokenEndpoint(Answer(200, "x" * 5000)), FakeClock())
    with pytest.raises(AuthenticationError) as caught:
        asyncio.run(oauth.get_token())
    assert len(str(caught.value)) < 600


def test_concurrent_callers_share_one_failure() -> None:
    refusal = Answer(401, '{"error": "invalid_client"}')
    endpoint = FakeTokenEndpoint(refusal, delay_ticks=5)
    oauth = provider(endpoint, FakeClock())

    async def scenario() -> list[BaseException | str]:
        return await asyncio.gather(*(oauth.get_token() for _ in range(10)), return_exceptions=True)

    results = asyncio.run(scenario())
    assert all(isinstance(result, AuthenticationError) for result in results)
    assert len(endpoint.forms) == 1


def test_a_later_call_tries_again_after_a_failure() -> None:
    endpoint = FakeTokenEndpoint(Answer(401, '{"error": "invalid_client"}'), token_answer("T1"))
    oauth = provider(endpoint, FakeClock())

    async def scenario() -> str:
        with pytest.raises(AuthenticationError):
            await oauth.get_token()
        return await oauth.get_token()

    assert asyncio.run(scenario()) == "T1"
    assert len(endpoint.forms) == 2
