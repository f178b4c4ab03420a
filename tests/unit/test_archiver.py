"""archive_request and archive_concurrently against respx: each answer, the right outcome."""

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import unquote

import httpx
import pytest
import respx

from routera_archive.calls.archiver import archive_concurrently, archive_request
from routera_archive.errors import AuthenticationError
from routera_archive.http.client import RouteraClient
from routera_archive.models import ArchiveOutcome, ArchiveRequest, Status
from tests.conftest import client_config

BASE = "https://api.test"
TOKEN = "tok"
ARCHIVED_AT = "2026-05-28T12:00:00.000Z"
JSON_UTF8 = {"Content-Type": "application/json; charset=utf-8"}

T = TypeVar("T")


class Harness:
    """A client wired to a respx router; retry waits are recorded, never slept."""

    def __init__(self, **config: Any) -> None:
        self.router = respx.MockRouter(base_url=BASE, assert_all_called=False)
        self.waits: list[float] = []
        values: dict[str, Any] = {"base_url": BASE, "access_token": TOKEN, "rps": 0}
        values.update(config)
        self.config = client_config(**values)

    async def _sleep(self, seconds: float) -> None:
        self.waits.append(seconds)

    def run(self, scenario: Callable[[RouteraClient], Awaitable[T]]) -> T:
        async def main() -> T:
            transport = httpx.MockTransport(self.router.async_handler)
            async with RouteraClient(self.config, transport=transport, sleep=self._sleep) as c:
                return await scenario(c)

        return asyncio.run(main())

    def archive(self, request: ArchiveRequest) -> ArchiveOutcome:
        return self.run(lambda c: archive_request(c, request))


def contact(contact_id: str = "c1", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": contact_id,
        "external_id": "ext-1",
        "first_name": "Ada",
        "created_at": "2026-05-01T10:00:00.000Z",
        "updated_at": ARCHIVED_AT,
        "archived": ARCHIVED_AT,
        "archived_by": "user-uuid",
    }
    body.update(fields)
    return body


def json_response(status: int, body: str) -> httpx.Response:
    return httpx.Response(status, content=body.encode("utf-8"), headers=JSON_UTF8)


def request(contact_id: str | None = "c1", request_id: str = "r1") -> ArchiveRequest:
    return ArchiveRequest(request_id=request_id, contact_id=contact_id, requested_by="ana")


# --- DELETE 200 ------------------------------------------------------------------------------

# Odd spacing, unicode escapes, raw non-ASCII, nested values and custom fields in a chosen order:
# the record must be the decoded body and raw_response the very same text.
ODD_BODY = (
    ' \n{ "zeta_custom" : 1,\n  "id":"c1" , "archived" :"2026-05-28T12:00:00.000Z",'
    '"archived_by":"user-uuid","first_name":"Ad\\u00e9", "名前": "名",  '
    '"Lead Score": 7.50, "tags": ["a", {"b": null}], "opted_in": false, '
    '"alpha": "\\ud83d\\ude00" }\r\n'
)


def test_delete_200_is_archived_with_the_body_as_received() -> None:
    h = Harness()
    route = h.router.delete("/contacts/c1").mock(return_value=json_response(200, ODD_BODY))
    get = h.router.get("/contacts/c1").respond(500)

    outcome = h.archive(request())

    assert outcome.status is Status.ARCHIVED
    assert outcome.raw_response == ODD_BODY
    decoded = json.loads(ODD_BODY)
    assert outcome.record == decoded
    assert list(outcome.record) == list(decoded)  # received order, custom fields kept
    assert outcome.record["名前"] == "名"
    assert outcome.record["alpha"] == "\U0001f600"
    assert outcome.record["archived"] == ARCHIVED_AT  # the record is not rewritten
    assert outcome.record_source == "delete"
    assert outcome.recovered is False
    assert outcome.http_status == 200
    assert outcome.attempts == 1
    assert outcome.error is None
    assert outcome.request.request_id == "r1"
    assert route.call_count == 1
    assert not get.called


def test_delete_200_after_a_retried_503_counts_both_attempts() -> None:
    h = Harness(max_attempts=3)
    body = json.dumps(contact())
    h.router.delete("/contacts/c1").side_effect = [
        httpx.Response(503),
        json_response(200, body),
    ]
    outcome = h.archive(request())
    assert outcome.status is Status.ARCHIVED
    assert outcome.attempts == 2
    assert outcome.raw_response == body
    assert len(h.waits) == 1


CONTRACT_BREAKS = [
    pytest.param("<html>Bad gateway</html>", "not JSON", id="not-json"),
    pytest.param(json.dumps([contact()]), "JSON list", id="json-array"),
    pytest.param(json.dumps(contact(archived=True)), "archived", id="archived-true"),
    pytest.param(json.dumps(contact(archived=False)), "archived", id="archived-false"),
    pytest.param(
        json.dumps({k: v for k, v in contact().items() if k != "archived"}),
        "no `archived`",
        id="archived-missing",
    ),
    pytest.param(json.dumps(contact(archived=1780000000)), "archived", id="archived-number"),
    pytest.param(json.dumps(contact("c2")), "'c2'", id="other-id"),
    pytest.param(
        json.dumps({k: v for k, v in contact().items() if k != "id"}), "no `id`", id="id-missing"
    ),
]


@pytest.mark.parametrize(("body", "reason"), CONTRACT_BREAKS)
def test_delete_200_with_a_broken_contract_fails_and_keeps_the_body(body: str, reason: str) -> None:
    h = Harness()
    h.router.delete("/contacts/c1").mock(return_value=json_response(200, body))
    get = h.router.get("/contacts/c1").respond(200, json=contact())

    outcome = h.archive(request())

    assert outcome.status is Status.FAILED
    assert not outcome.status.is_terminal  # stays pending for the next run
    assert outcome.http_status == 200
    assert outcome.attempts == 1
    assert outcome.raw_response == body
    assert outcome.record is None
    assert outcome.record_source is None
    assert outcome.error is not None
    assert "DELETE answered 200" in outcome.error
    assert reason in outcome.error
    assert not get.called


# --- DELETE 404: resolved by a GET -----------------------------------------------------------


def test_404_then_get_archived_is_already_archived_and_recovered() -> None:
    h = Harness()
    h.router.delete("/contacts/c1").respond(404, json={"message": "not found", "error": True})
    get_body = json.dumps(contact(**{"Lead Score": 3}), indent=1)
    get = h.router.get("/contacts/c1").mock(return_value=json_response(200, get_body))

    outcome = h.archive(request())

    assert outcome.status is Status.ALREADY_ARCHIVED
    assert outcome.recovered is True
    assert outcome.record_source == "get"
    assert outcome.raw_response == get_body
    assert outcome.record == json.loads(get_body)
    assert outcome.http_status == 404
    assert outcome.attempts == 2
    assert outcome.error is None  # nothing suggests an answer of ours was lost
    assert get.call_count == 1


def test_404_after_a_retried_503_notes_that_an_answer_may_have_been_lost() -> None:
    h = Harness(max_attempts=3)
    h.router.delete("/contacts/c1").side_effect = [
        httpx.Response(503, text="upstream"),
        httpx.Response(404, json={"message": "not found", "error": True}),
    ]
    get_body = json.dumps(contact())
    h.router.get("/contacts/c1").mock(return_value=json_response(200, get_body))

    outcome = h.archive(request())

    assert outcome.status is Status.ALREADY_ARCHIVED
    assert outcome.recovered is True
    assert outcome.raw_response == get_body
    assert outcome.attempts == 3
    assert outcome.error is not None
    assert "may have archived it" in outcome.error
    assert "HTTP 503" in outcome.error


def test_404_after_a_429_only_has_no_lost_answer_note() -> None:
    # A 429 is "throttled, not processed": no earlier attempt can have archived the contact.
    h = Harness(max_attempts=3)
    h.router.delete("/contacts/c1").side_effect = [
        httpx.Response(429),
        httpx.Response(404, json={"message": "not found", "error": True}),
    ]
    h.router.get("/contacts/c1").respond(200, json=contact())
    outcome = h.archive(request())
    assert outcome.status is Status.ALREADY_ARCHIVED
    assert outcome.error is None


def test_404_then_get_404_is_not_found() -> None:
    h = Harness()
    h.router.delete("/contacts/c1").respond(404, json={"message": "not found", "error": True})
    h.router.get("/contacts/c1").respond(404, json={"message": "Object not found", "error": True})

    outcome = h.archive(request())

    assert outcome.status is Status.NOT_FOUND
    assert outcome.status.is_terminal
    assert outcome.http_status == 404
    assert outcome.attempts == 2
    assert outcome.record is None
    assert outcome.recovered is False


def test_404_then_get_shows_it_active_fails() -> None:
    h = Harness()
    h.router.delete("/contacts/c1").respond(404, json={"message": "not found", "error": True})
    body = json.dumps(contact(archived=False, archived_by=None))
    h.router.get("/contacts/c1").mock(return_value=json_response(200, body))

    outcome = h.archive(request())

    assert outcome.status is Status.FAILED
    assert outcome.error is not None
    assert "active" in outcome.error
    assert outcome.raw_response == body
    assert outcome.record is None
    assert outcome.attempts == 2


def test_404_then_get_retries_exhausted_fails() -> None:
    h = Harness(max_attempts=3)
    h.router.delete("/contacts/c1").respond(404, json={"message": "not found", "error": True})
    get = h.router.get("/contacts/c1").respond(500, text="boom")

    outcome = h.archive(request())

    assert outcome.status is Status.FAILED
    assert get.call_count == 3
    assert outcome.attempts == 1 + 3
    assert outcome.http_status == 404
    assert outcome.error is not None
    assert "DELETE answered 404" in outcome.error
    assert "gave up" in outcome.error
    assert outcome.raw_response == "boom"
    assert outcome.record is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param("{not json", "not JSON", id="not-json"),
        pytest.param(json.dumps(contact(archived="soon")), "archived", id="archived-garbage"),
        pytest.param(json.dumps(contact("c9")), "'c9'", id="other-id"),
        pytest.param(json.dumps(contact(archived=True)), "archived", id="archived-true"),
    ],
)
def test_404_then_get_200_malformed_fails(body: str, reason: str) -> None:
    h = Harness()
    h.router.delete("/contacts/c1").respond(404, json={"message": "not found", "error": True})
    h.router.get("/contacts/c1").mock(return_value=json_response(200, body))

    outcome = h.archive(request())

    assert outcome.status is Status.FAILED
    assert outcome.error is not None
    assert "GET answered 200 but" in outcome.error
    assert reason in outcome.error
    assert outcome.raw_response == body
    assert outcome.record is None
    assert outcome.recovered is False


def test_404_then_get_answering_another_4xx_fails_with_its_message() -> None:
    h = Harness()
    h.router.delete("/contacts/c1").respond(404, json={"message": "not found", "error": True})
    h.router.get("/contacts/c1").respond(403, json={"message": "no read scope", "error": True})
    outcome = h.archive(request())
    assert outcome.status is Status.FAILED
    assert outcome.error is not None
    assert "GET answered 403" in outcome.error
    assert "no read scope" in outcome.error


# --- other final answers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (400, "Missing contactId in path"),
        (403, "Forbidden for this API client"),
        (409, "Object is locked"),
    ],
)
def test_final_4xx_fails_without_retry(status: int, message: str) -> None:
    h = Harness(max_attempts=5)
    body = json.dumps({"message": message, "error": True})
    route = h.router.delete("/contacts/c1").mock(return_value=json_response(status, body))
    get = h.router.get("/contacts/c1").respond(200, json=contact())

    outcome = h.archive(request())

    assert outcome.status is Status.FAILED
    assert route.call_count == 1
    assert not get.called
    assert outcome.http_status == status
    assert outcome.attempts == 1
    assert outcome.error is not None
    assert f"DELETE answered {status}" in outcome.error
    assert message in outcome.error
    assert outcome.raw_response == body
    assert h.waits == []


def test_delete_5xx_exhausted_fails_with_the_maybe_archived_note() -> None:
    h = Harness(max_attempts=3)
    route = h.router.delete("/contacts/c1").respond(503, text="try later")
    get = h.router.get("/contacts/c1").respond(200, json=contact())

    outcome = h.archive(request())

    assert outcome.status is Status.FAILED
    assert route.call_count == 3
    assert outcome.attempts == h.config.max_attempts == 3
    assert outcome.http_status == 503
    assert outcome.raw_response == "try later"
    assert outcome.error is not None
    assert "may have archived it" in outcome.error
    assert not get.called


def test_delete_429_exhausted_fails_without_the_maybe_archived_note() -> None:
    h = Harness(max_attempts=2)
    h.router.delete("/contacts/c1").respond(429)
    outcome = h.archive(request())
    assert outcome.status is Status.FAILED
    assert outcome.attempts == 2
    assert outcome.error is not None
    assert "may have archived it" not in outcome.error


# --- ids -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("contact_id", "why"),
    [
        (None, "NULL"),
        ("", "empty"),
        (" ", "blank"),
        ("a\x00b", "U+0000"),
        ("a\nb", "U+000A"),
        ("x" * 300, "300 characters"),
        ("..", "dot-segment"),
        (".", "dot-segment"),
        (" c1", "whitespace"),
        ("c1 ", "whitespace"),
    ],
)
def test_invalid_ids_are_invalid_without_any_http_call(contact_id: str | None, why: str) -> None:
    h = Harness()
    route = h.router.route().respond(200, json=contact())

    async def scenario(client: RouteraClient) -> tuple[ArchiveOutcome, int]:
        outcome = await archive_request(client, request(contact_id))
        return outcome, client.requests_sent

    outcome, sent = h.run(scenario)

    assert outcome.status is Status.INVALID
    assert outcome.status.is_terminal
    assert outcome.error is not None
    assert why in outcome.error
    assert outcome.attempts == 0
    assert outcome.http_status is None
    assert sent == 0
    assert not route.called


@pytest.mark.parametrize(
    ("contact_id", "segment"),
    [
        ("a/b", b"a%2Fb"),
        ("?x", b"%3Fx"),
        ("#x", b"%23x"),
        ("%2F", b"%252F"),
        ("a b", b"a%20b"),
        ("名前", b"%E5%90%8D%E5%89%8D"),
        ("../x", b"..%2Fx"),
    ],
)
def test_hostile_but_valid_ids_are_one_encoded_segment(contact_id: str, segment: bytes) -> None:
    h = Harness()
    route = h.router.route(method="DELETE").mock(
        return_value=json_response(200, json.dumps(contact(contact_id)))
    )

    outcome = h.archive(request(contact_id))

    assert route.call_count == 1
    raw_path = route.calls.last.request.url.raw_path
    assert raw_path == b"/contacts/" + segment
    sent = raw_path.removeprefix(b"/contacts/").decode("ascii")
    assert not any(char in sent for char in "/?#")
    assert unquote(sent) == contact_id
    assert outcome.status is Status.ARCHIVED
    assert outcome.record is not None
    assert outcome.record["id"] == contact_id


# --- authentication --------------------------------------------------------------------------


def test_authentication_error_on_delete_propagates() -> None:
    h = Harness()
    h.router.delete("/contacts/c1").respond(401, json={"message": "Unauthorized", "error": True})
    with pytest.raises(AuthenticationError):
        h.archive(request())


def test_authentication_error_on_the_resolving_get_propagates() -> None:
    h = Harness()
    h.router.delete("/contacts/c1").respond(404, json={"message": "not found", "error": True})
    h.router.get("/contacts/c1").respond(401, json={"message": "Unauthorized", "error": True})
    with pytest.raises(AuthenticationError):
        h.archive(request())


# --- archive_concurrently --------------------------------------------------------------------


def contact_id_of(http_request: httpx.Request) -> str:
    return unquote(http_request.url.raw_path.decode("ascii").removeprefix("/contacts/"))


def test_archive_concurrently_yields_one_outcome_per_request_within_the_worker_bound() -> None:
    workers = 4
    # The client's own cap is far above `workers`, so only archive_concurrently bounds the calls.
    h = Harness(concurrency=64)
    in_flight = 0
    peak = 0

    async def slow_delete(http_request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.005)
        in_flight -= 1
        return json_response(200, json.dumps(contact(contact_id_of(http_request))))

    route = h.router.route(method="DELETE")
    route.side_effect = slow_delete
    requests = [request(f"c{i}", request_id=f"r{i}") for i in range(50)]

    async def scenario(client: RouteraClient) -> list[ArchiveOutcome]:
        return [o async for o in archive_concurrently(client, requests, workers=workers)]

    outcomes = h.run(scenario)

    assert sorted(o.request.request_id for o in outcomes) == sorted(r.request_id for r in requests)
    assert all(o.status is Status.ARCHIVED for o in outcomes)
    assert all(o.record is not None and o.record["id"] == o.request.object_id for o in outcomes)
    assert route.call_count == 50
    assert peak == workers


def test_archive_concurrently_takes_requests_from_an_async_iterator_lazily() -> None:
    h = Harness(concurrency=64)
    h.router.route(method="DELETE").side_effect = lambda r: json_response(
        200, json.dumps(contact(contact_id_of(r)))
    )
    pulled = 0

    async def source() -> Any:
        nonlocal pulled
        for i in range(30):
            pulled += 1
            yield request(f"c{i}", request_id=f"r{i}")

    async def scenario(client: RouteraClient) -> tuple[int, int]:
        stream = archive_concurrently(client, source(), workers=2)
        first = await anext(stream)
        assert first.status is Status.ARCHIVED
        pulled_after_first = pulled
        rest = [o async for o in stream]
        return pulled_after_first, 1 + len(rest)

    pulled_after_first, total = h.run(scenario)
    assert total == 30
    # A bounded hand-off: the whole source is not drained before the first outcome.
    assert pulled_after_first < 30


@pytest.mark.parametrize("kind", ["iterable", "async-iterator"])
def test_archive_concurrently_stops_intake_on_an_authentication_error(kind: str) -> None:
    h = Harness(concurrency=64)
    sent: list[str] = []
    pulled = 0

    async def delete(http_request: httpx.Request) -> httpx.Response:
        sent.append(contact_id_of(http_request))
        if len(sent) == 5:
            return httpx.Response(401, json={"message": "Unauthorized", "error": True})
        await asyncio.sleep(0.005)
        return json_response(200, json.dumps(contact(contact_id_of(http_request))))

    h.router.route(method="DELETE").side_effect = delete

    def plain() -> Iterator[ArchiveRequest]:
        nonlocal pulled
        for i in range(100):
            pulled += 1
            yield request(f"c{i}", request_id=f"r{i}")

    async def lazy() -> AsyncIterator[ArchiveRequest]:
        for item in plain():
            yield item

    outcomes: list[ArchiveOutcome] = []

    async def scenario(client: RouteraClient) -> None:
        source = plain() if kind == "iterable" else lazy()
        async for outcome in archive_concurrently(client, source, workers=4):
            outcomes.append(outcome)

    with pytest.raises(AuthenticationError):
        h.run(scenario)

    assert 5 <= len(sent) <= 12, sent  # far fewer than 100
    assert pulled < 30  # the intake stopped: the rest of the queue was never even read
    refused = sent[4]
    # Every DELETE that was answered 200 has its outcome yielded; the refused one has none.
    assert sorted(o.request.object_id or "" for o in outcomes) == sorted(
        cid for cid in sent if cid != refused
    )
    assert all(o.status is Status.ARCHIVED for o in outcomes)


def test_archive_concurrently_starts_nothing_pulled_once_the_run_is_stopping() -> None:
    """A stop finishes the calls in flight only: requests already taken from the queue but not
    started get no outcome and no call (they stay pending for the next run)."""
    h = Harness(concurrency=64)
    route = h.router.route(method="DELETE")
    route.side_effect = lambda r: json_response(200, json.dumps(contact(contact_id_of(r))))
    requests = [request(f"c{i}", request_id=f"r{i}") for i in range(40)]
    outcomes: list[ArchiveOutcome] = []

    async def scenario(client: RouteraClient) -> None:
        stream = archive_concurrently(
            client, requests, workers=2, may_start=lambda: len(outcomes) < 3
        )
        async for outcome in stream:
            outcomes.append(outcome)

    h.run(scenario)
    assert 3 <= len(outcomes) <= 3 + 2  # the calls in flight when the stop came
    assert route.call_count == len(outcomes)


def test_an_error_reading_the_requests_is_raised_not_taken_for_the_end_of_the_queue() -> None:
    h = Harness(concurrency=64)
    route = h.router.route(method="DELETE")
    route.side_effect = lambda r: json_response(200, json.dumps(contact(contact_id_of(r))))
    outcomes: list[ArchiveOutcome] = []

    async def broken_queue() -> AsyncIterator[ArchiveRequest]:
        for i in range(3):
            yield request(f"c{i}", request_id=f"r{i}")
        raise RuntimeError("the queue's next page could not be read")

    async def scenario(client: RouteraClient) -> None:
        async for outcome in archive_concurrently(client, broken_queue(), workers=2):
            outcomes.append(outcome)

    with pytest.raises(RuntimeError, match="next page"):
        h.run(scenario)
    # The requests taken before the error were archived and their outcomes handed over first.
    assert sorted(o.request.request_id for o in outcomes) == ["r0", "r1", "r2"]
    assert route.call_count == 3
