"""The async Routera HTTP client: one place that decides what is retried and what is final.

Archiving is destructive and Routera's 404 means "not found *or already archived*", so the client
reports, for every answer, whether an earlier attempt of the same call may already have been
processed (`ApiAnswer.maybe_reached_before`). Every request, token requests and retries included,
passes the run-wide rate limit and concurrency cap and is counted in `requests_sent`.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import random
import socket
import ssl
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC
from types import TracebackType
from typing import Any, Final, NoReturn

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from routera_archive import __version__
from routera_archive.errors import AuthenticationError, RetriesExhausted
from routera_archive.http.auth import OAuthTokenProvider, StaticTokenProvider, TokenProvider
from routera_archive.http.config import AccessToken, ClientConfig
from routera_archive.http.ids import object_path
from routera_archive.http.pacing import RatePacer
from routera_archive.objects import ObjectType
from routera_archive.redaction import scrub

logger = logging.getLogger(__name__)

TOKEN_PATH: Final = "/oauth2/token"

# Connections per httpx pool; a run opens ceil(concurrency / this) pools. httpcore's per-request
# bookkeeping grows with the connections in a pool: with 32 in one pool a bare loop spent 1.9 ms
# of CPU per request at latency 0, with four pools of 8 0.8 ms (bench/RESULTS.md).
HTTP_CONNECTIONS_PER_POOL: Final = 8

# Bodies kept in error messages and logs are cut to this many characters.
MAX_ERROR_BODY_CHARS: Final = 2000

USER_AGENT = f"routera-archive/{__version__}"
ACCESS_TOKEN_HINT = "check SOURCES__ROUTERA__ACCESS_TOKEN / .dlt/secrets.toml"
# Longest API `message` quoted in an authentication error.
API_MESSAGE_CHARS = 200

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class ApiAnswer:
    """A final, non-retryable HTTP answer: 2xx, 3xx, or any 4xx except 401/408/429.

    `maybe_reached_before` is true when an earlier attempt of this call may have been processed
    (sent, then a timeout, a dropped connection, a 408 or a 5xx): a 404 to a DELETE can then be
    our own archive. It is false when every earlier attempt provably never reached Routera
    (connect errors, pool timeouts, 429) or there was none.
    """

    status_code: int
    body: str
    attempts: int
    maybe_reached_before: bool
    retry_reasons: tuple[str, ...]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class _Received:
    """An answer as read (within call_deadline and max_body_bytes)."""

    status_code: int
    headers: httpx.Headers
    text: str


class _BodyTooLarge(Exception):
    """The answer's body passed max_body_bytes."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class _RetryableAttempt(Exception):
    """One attempt failed in a way that another attempt may fix."""

    def __init__(self, reason: str, *, retry_after: float | None = None, free: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        # A repeat after renewing a rejected OAuth token: immediate, and outside the budget.
        self.free = free


@dataclass
class _Call:
    """What one logical call has been through so far, across its attempts."""

    method: str
    path: str
    authenticated: bool
    params: dict[str, str] | None = None
    json_body: Any = None
    form: dict[str, str] | None = None
    attempts: int = 0
    # Attempts that do not count against max_attempts (the repeat after a token renewal).
    free_attempts: int = 0
    maybe_reached: bool = False
    reasons: list[str] = field(default_factory=list)
    # The most recent retryable HTTP answer (kept across later transport failures).
    last_status: int | None = None
    last_body: str | None = None
    token_renewed: bool = False
    stop_reason: str = ""


# Transport failures after which the request provably never reached Routera.
_NOT_SENT: tuple[tuple[type[Exception], str], ...] = (
    (httpx.ConnectTimeout, "connect timeout"),
    (httpx.PoolTimeout, "pool timeout"),
    (httpx.ConnectError, "connection failed"),
    (httpx.ProxyError, "proxy error"),
)
# Transport failures after which the request may have been processed.
_MAYBE_SENT: tuple[tuple[type[Exception], str], ...] = (
    (httpx.ReadTimeout, "read timeout"),
    (httpx.WriteTimeout, "write timeout"),
    (httpx.ReadError, "connection dropped while reading"),
    (httpx.WriteError, "connection dropped while sending"),
    (httpx.CloseError, "connection close failed"),
    (httpx.RemoteProtocolError, "malformed or cut response"),
    (httpx.DecodingError, "undecodable response"),
    (httpx.TimeoutException, "timeout"),
    (httpx.NetworkError, "network error"),
)


class RouteraClient:
    """Async client for the Routera calls the connector makes.

    Raises InvalidObjectId (before sending), AuthenticationError, or RetriesExhausted; every
    other answer, success or not, comes back as an ApiAnswer for the caller to interpret.
    """

    def __init__(
        self,
        config: ClientConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        self.config = config
        # What this client will do, whichever process it lives in (secrets are not in the repr).
        logger.debug("client settings: %r", config)
        # Replaceable so tests can record waits instead of sleeping.
        self.sleep: Sleep = sleep or asyncio.sleep
        # Wall clock for Retry-After HTTP dates; replaceable for tests.
        self.wall_clock: Callable[[], float] = time.time
        # Several small pools, not one of `concurrency` connections: httpcore checks every
        # connection of a pool at each request's start and end, which at 32 connections took a
        # third of the run's CPU (bench/RESULTS.md). Each request goes to the least busy pool.
        pools = max(1, math.ceil(config.concurrency / HTTP_CONNECTIONS_PER_POOL))
        per_pool = math.ceil(config.concurrency / pools)
        limits = httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool)
        # Proxies from the environment (HTTP(S)_PROXY, ALL_PROXY, NO_PROXY): httpx's client
        # picks a proxy transport per URL, but only when it builds its own transports. Without
        # any, this client builds them and sends on them directly (see `_send`).
        self._direct = transport is not None or not urllib.request.getproxies()
        # One verifying TLS context for all pools: each would otherwise load the CA bundle.
        tls = httpx.create_ssl_context(verify=True) if transport is None else None
        self._transports: list[httpx.AsyncBaseTransport] = (
            [
                transport or httpx.AsyncHTTPTransport(verify=tls or True, limits=limits)
                for _ in range(pools)
            ]
            if self._direct
            else []
        )
        self._pools = [
            httpx.AsyncClient(
                base_url=config.base_url,
                transport=self._transports[index] if self._direct else None,
                verify=tls or True,
                limits=limits,
                timeout=httpx.Timeout(
                    connect=config.connect_timeout,
                    read=config.read_timeout,
                    write=config.write_timeout,
                    pool=config.pool_timeout,
                ),
                headers={"User-Agent": USER_AGENT},
                follow_redirects=False,
            )
            for index in range(pools)
        ]
        self._in_flight = [0] * pools
        self._semaphore = asyncio.Semaphore(config.concurrency)
        self._pacer = RatePacer(config.rps) if config.rps > 0 else None
        self._requests_sent = 0
        self._token_provider: TokenProvider
        credentials = config.credentials
        if isinstance(credentials, AccessToken):
            self._token_provider = StaticTokenProvider(credentials.token)
        else:
            self._token_provider = OAuthTokenProvider(
                self._send_token_request,
                credentials.client_id,
                credentials.client_secret,
                config.token_refresh_margin,
            )

    def __repr__(self) -> str:
        return f"RouteraClient({self.config!r})"

    async def __aenter__(self) -> RouteraClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()

    @property
    def requests_sent(self) -> int:
        """HTTP requests handed to the transport: every method, retries and token calls."""
        return self._requests_sent

    @property
    def secrets(self) -> tuple[str, ...]:
        """What must never be quoted back: the configured credentials and any token issued."""
        return (*self.config.secrets, *self._token_provider.issued_tokens)

    @property
    def token_provider(self) -> TokenProvider:
        return self._token_provider

    async def delete_object(self, object_type: ObjectType, object_id: str) -> ApiAnswer:
        """Archive one record (Routera's DELETE keeps it and stamps `archived`), under its
        own type's path only."""
        path = object_path(object_type, object_id)
        return await self._call(_Call("DELETE", path, authenticated=True))

    async def get_object(self, object_type: ObjectType, object_id: str) -> ApiAnswer:
        """Read one record, archived ones too, with the configured `properties` (every read
        of a record asks for them: a snapshot, the GET after a 404, a recovery)."""
        path = object_path(object_type, object_id)
        call = _Call("GET", path, authenticated=True, params=self._asked(object_type))
        return await self._call(call)

    async def list_objects(
        self, object_type: ObjectType, *, archived: bool = False, limit: int = 100, offset: int = 0
    ) -> ApiAnswer:
        """One page of records. With `properties` configured it asks for them too, so the
        run's first call (guardrails.probe_account) is also the check of their names."""
        params = {
            "archived": "true" if archived else "false",
            "limit": str(limit),
            "offset": str(offset),
            **(self._asked(object_type) or {}),
        }
        return await self._call(_Call("GET", object_type.path, authenticated=True, params=params))

    def _asked(self, object_type: ObjectType) -> dict[str, str] | None:
        """`properties` for a read of `object_type`: that type's own names only, since one
        type's custom fields are unknown on another's and Routera answers 400 to them."""
        properties = self.config.properties_of(object_type)
        if not properties:
            return None
        return {"properties": ",".join(properties)}

    async def create_object(self, object_type: ObjectType, fields: dict[str, Any]) -> ApiAnswer:
        call = _Call("POST", object_type.path, authenticated=True, json_body={"fields": fields})
        return await self._call(call)

    async def _send_token_request(self, form: dict[str, str]) -> ApiAnswer:
        """The OAuth provider's way out: a token call with the same limits and retries."""
        try:
            return await self._call(_Call("POST", TOKEN_PATH, authenticated=False, form=form))
        except RetriesExhausted as error:
            body = error.last_body
            if body is not None and (
                "access_token" in body or any(secret in body for secret in self.config.secrets)
            ):
                body = "<withheld>"
            raise RetriesExhausted(
                f"could not get an OAuth token: {error.reason}",
                attempts=error.attempts,
                maybe_reached_server=error.maybe_reached_server,
                last_status=error.last_status,
                last_body=body,
            ) from None

    async def _call(self, call: _Call) -> ApiAnswer:
        # Almost every call succeeds at once; building tenacity's machinery for each of them
        # cost 7% of a run's CPU (bench/RESULTS.md). So the first attempt runs bare, and only a
        # retryable failure enters tenacity, as its first attempt, without being sent again.
        try:
            return await self._attempt(call)
        except _RetryableAttempt as failure:
            first_failure: _RetryableAttempt | None = failure

        async def attempt(call: _Call) -> ApiAnswer:
            nonlocal first_failure
            if first_failure is not None:
                failure, first_failure = first_failure, None
                raise failure
            return await self._attempt(call)

        retrying = AsyncRetrying(
            retry=retry_if_exception_type(_RetryableAttempt),
            wait=lambda state: self._wait_seconds(call, state),
            stop=lambda state: self._should_stop(call, state),
            sleep=self._sleep,
            before_sleep=lambda state: self._log_retry(call, state),
            retry_error_callback=lambda state: self._exhausted(call, state),
        )
        answer: ApiAnswer = await retrying(attempt, call)
        return answer

    async def _sleep(self, seconds: float) -> None:
        if seconds > 0:  # the repeat after a token renewal needs no pause
            await self.sleep(seconds)

    async def _attempt(self, call: _Call) -> ApiAnswer:
        token = await self._token_for(call) if call.authenticated else None
        headers = {"Authorization": f"Bearer {token}"} if token is not None else None
        request = self._pools[0].build_request(
            call.method,
            call.path,
            params=call.params,
            json=call.json_body,
            data=call.form,
            headers=headers,
        )
        maybe_reached_before = call.maybe_reached
        call.attempts += 1
        try:
            async with self._semaphore:
                if self._pacer is not None:
                    await self._pacer.wait()
                self._requests_sent += 1
                response = await self._send(request)
        except (httpx.TransportError, httpx.DecodingError) as error:
            reason = self._classify_transport_error(call, error)
            raise _RetryableAttempt(reason) from error
        except TimeoutError:  # call_deadline, whatever came or did not come meanwhile
            call.maybe_reached = True
            deadline = f"no whole answer within call_deadline ({self.config.call_deadline:g} s)"
            raise _RetryableAttempt(deadline) from None
        except _BodyTooLarge as error:
            # The same request would get the same body: not tried again, not read further.
            raise RetriesExhausted(
                f"{call.method} {call.path}: the answer (HTTP {error.status}) is longer than "
                f"max_body_bytes ({self.config.max_body_bytes}); not read further",
                attempts=call.attempts,
                maybe_reached_server=True,
                last_status=error.status,
            ) from None

        status = response.status_code
        # An API may echo what it was sent (a form, headers): no body leaves here unmasked.
        body = scrub(response.text)
        if status == 401 and call.authenticated:
            await self._on_unauthorized(call, token or "", body)
            raise _RetryableAttempt("HTTP 401 (OAuth token renewed)", free=True)
        if status == 429 or status == 408 or status >= 500:
            call.last_status, call.last_body = status, body
            # 429 means throttled, not processed; 408 and 5xx may come after processing.
            call.maybe_reached = call.maybe_reached or status != 429
            retry_after = parse_retry_after(response.headers.get("Retry-After"), self.wall_clock())
            raise _RetryableAttempt(f"HTTP {status}", retry_after=retry_after)
        return ApiAnswer(
            status_code=status,
            body=body,
            attempts=call.attempts,
            maybe_reached_before=maybe_reached_before,
            retry_reasons=tuple(call.reasons),
        )

    async def _send(self, request: httpx.Request) -> _Received:
        """Send on the pool with the fewest requests in flight (the semaphore bounds them all,
        so no pool ever holds more than its share), and read the answer within
        `call_deadline` and `max_body_bytes` (TimeoutError, _BodyTooLarge)."""
        index = self._in_flight.index(min(self._in_flight))
        self._in_flight[index] += 1
        try:
            async with asyncio.timeout(self.config.call_deadline):
                if not self._direct:
                    response = await self._pools[index].send(request, stream=True)
                else:
                    # Straight to the transport (httpx's public transport API): the client's
                    # send adds auth and redirect flows, cookie extraction and event hooks,
                    # none of which these calls use, at about a tenth of the HTTP time
                    # (bench/RESULTS.md). The request carries the client's timeouts.
                    response = await self._transports[index].handle_async_request(request)
                try:
                    return await self._read(response)
                finally:
                    await response.aclose()
        finally:
            self._in_flight[index] -= 1

    async def _read(self, response: httpx.Response) -> _Received:
        """The answer's body, decoded, up to `max_body_bytes` of it (a body that never ends
        would otherwise take the memory)."""
        limit = self.config.max_body_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _BodyTooLarge(response.status_code)
        body = bytearray()
        async for piece in response.aiter_bytes():
            body += piece
            if len(body) > limit:
                raise _BodyTooLarge(response.status_code)
        text = body.decode(response.encoding or "utf-8", errors="replace")
        return _Received(response.status_code, response.headers, text)

    async def _token_for(self, call: _Call) -> str:
        try:
            return await self._token_provider.get_token()
        except RetriesExhausted as error:
            # The call's own earlier attempts may have reached Routera even if no token came.
            raise RetriesExhausted(
                f"{call.method} {call.path}: {error.reason}",
                attempts=call.attempts,
                maybe_reached_server=call.maybe_reached,
                last_status=error.last_status,
                last_body=error.last_body,
            ) from error

    async def _on_unauthorized(self, call: _Call, token: str, body: str) -> None:
        """Renew a rejected OAuth token once per call; otherwise the 401 is final."""
        message = api_message(body, secrets=(token, *self.secrets), fallback=False)
        detail = f" ({message})" if message else ""
        if not self._token_provider.can_refresh:
            raise AuthenticationError(
                f"Routera answered 401 for the access token{detail}; {ACCESS_TOKEN_HINT}"
            )
        if call.token_renewed:
            raise AuthenticationError(
                f"Routera answered 401 even with a freshly issued OAuth token{detail}; check "
                "that the API client (SOURCES__ROUTERA__CLIENT_ID) belongs to the right "
                "account and may use this route"
            )
        call.token_renewed = True
        call.free_attempts += 1
        logger.info(
            "Routera answered 401 to %s %s; renewing the OAuth token", call.method, call.path
        )
        await self._token_provider.invalidate(token)

    def _classify_transport_error(self, call: _Call, error: Exception) -> str:
        if isinstance(error, httpx.ConnectError):
            return _connect_failure(error)
        for kind, reason in _NOT_SENT:
            if isinstance(error, kind):
                return reason
        call.maybe_reached = True
        for kind, reason in _MAYBE_SENT:
            if isinstance(error, kind):
                return reason
        return type(error).__name__

    def _wait_seconds(self, call: _Call, state: RetryCallState) -> float:
        failure = _failure(state)
        call.reasons.append(failure.reason)
        if failure.free:
            return 0.0
        if failure.retry_after is not None:
            return failure.retry_after
        # Full jitter: uniform(0, min(cap, initial * 2^n)) spreads many failing calls apart.
        retries_so_far = call.attempts - call.free_attempts - 1
        ceiling = min(self.config.backoff_max, self.config.backoff_initial * 2**retries_so_far)
        return random.uniform(0, ceiling)

    def _should_stop(self, call: _Call, state: RetryCallState) -> bool:
        failure = _failure(state)
        if failure.free:
            return False
        if call.attempts - call.free_attempts >= self.config.max_attempts:
            call.stop_reason = f"{call.attempts} attempts"
            return True
        if state.idle_for + state.upcoming_sleep > self.config.max_retry_wait:
            call.stop_reason = (
                f"waiting {state.upcoming_sleep:.1f} s more would exceed max_retry_wait "
                f"({self.config.max_retry_wait:.1f} s, {state.idle_for:.1f} s already waited)"
            )
            return True
        return False

    def _log_retry(self, call: _Call, state: RetryCallState) -> None:
        failure = _failure(state)
        if failure.free:
            return
        logger.warning(
            "Routera %s %s: %s on attempt %d; retrying in %.2f s",
            call.method,
            call.path,
            failure.reason,
            call.attempts,
            state.upcoming_sleep,
        )

    def _exhausted(self, call: _Call, state: RetryCallState) -> NoReturn:
        failure = _failure(state)
        body = call.last_body
        if body is not None and len(body) > MAX_ERROR_BODY_CHARS:
            body = body[:MAX_ERROR_BODY_CHARS]
        reason = (
            f"{call.method} {call.path}: gave up after {call.stop_reason} "
            f"({summarize_reasons(call.reasons)})"
        )
        logger.warning("Routera %s", reason)
        raise RetriesExhausted(
            reason,
            attempts=call.attempts,
            maybe_reached_server=call.maybe_reached,
            last_status=call.last_status,
            last_body=body,
        ) from failure


def summarize_reasons(reasons: list[str] | tuple[str, ...]) -> str:
    """`connection refused x5`, or `HTTP 503 x2, read timeout`: each reason once, in order."""
    counts: dict[str, int] = {}
    for reason in reasons:
        counts[reason] = counts.get(reason, 0) + 1
    return ", ".join(reason if n == 1 else f"{reason} x{n}" for reason, n in counts.items())


def _connect_failure(error: httpx.ConnectError) -> str:
    """Why a connection could not be made, in the words a person checks first: the host's name,
    the port (refused), or TLS (a wrong certificate, a plain-HTTP port)."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, socket.gaierror):
            return "unknown host"
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS certificate not trusted ({cause.verify_message})"
        if isinstance(cause, ssl.SSLError):
            return "TLS handshake failed"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        cause = cause.__cause__ or cause.__context__
    return "connection failed"


def _failure(state: RetryCallState) -> _RetryableAttempt:
    assert state.outcome is not None
    error = state.outcome.exception()
    assert isinstance(error, _RetryableAttempt)
    return error


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or HTTP-date, RFC 9110 §10.2.3).

    Returns None when absent or unreadable, so the normal backoff applies instead.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" parses as naive; HTTP dates are always UTC
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def api_message(body: str, *, secrets: tuple[str, ...] = (), fallback: bool = True) -> str:
    """The `message` of Routera's published error shape, or (with `fallback`) a cut of
    whatever body came instead: on one line (an API's text may hold line breaks), cut short,
    and with every secret this client knows masked (an API may echo what it was sent)."""
    try:
        parsed: Any = json.loads(body)
    except ValueError:
        parsed = None
    message = parsed.get("message") if isinstance(parsed, dict) else None
    if not isinstance(message, str):
        if not fallback:
            return ""
        message = body if body.strip() else "(empty body)"
    message = " ".join(scrub(message).split())
    for secret in secrets:
        if secret:
            message = message.replace(secret, "<redacted>")
    return message if len(message) <= API_MESSAGE_CHARS else f"{message[:API_MESSAGE_CHARS]}…"
