"""Where the bearer token of each call comes from: a static token, or OAuth client credentials.

The providers never send HTTP themselves. The OAuth provider is handed a `send` callable by the
client, so token requests go through the same rate limit, concurrency cap, retries and request
counter as every other call: a token storm is still a request storm.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from routera_archive.errors import AuthenticationError
from routera_archive.redaction import remember, scrub

logger = logging.getLogger(__name__)

# Used when a token answer carries no usable `expires_in`: short, so a token of unknown lifetime is
# renewed often rather than trusted for an hour (a 401 would renew it anyway).
FALLBACK_TOKEN_LIFETIME_S = 300.0
# How much of an unexpected token-endpoint body goes into an error message.
TOKEN_BODY_PREVIEW_CHARS = 200
CREDENTIALS_HINT = (
    "check the client id and secret (SOURCES__ROUTERA__CLIENT_ID and "
    "SOURCES__ROUTERA__CLIENT_SECRET, or .dlt/secrets.toml)"
)


class HttpAnswer(Protocol):
    """The part of an HTTP answer a token provider reads (the client's `ApiAnswer` fits)."""

    @property
    def status_code(self) -> int: ...

    @property
    def body(self) -> str: ...


# Posts the form-encoded token request and returns the final answer (retries are the sender's).
TokenSender = Callable[[dict[str, str]], Awaitable[HttpAnswer]]


class TokenProvider(Protocol):
    """Gives the client a bearer token for each attempt and hears about tokens that got a 401."""

    can_refresh: bool

    @property
    def issued_tokens(self) -> tuple[str, ...]:
        """Tokens this provider obtained itself (a configured one is the config's to know)."""
        ...

    async def get_token(self) -> str: ...

    async def invalidate(self, token: str) -> None: ...


class StaticTokenProvider:
    """A token configured by the user: nothing to renew, so a 401 is final."""

    can_refresh = False
    issued_tokens: tuple[str, ...] = ()

    def __init__(self, token: str) -> None:
        self._token = token

    def __repr__(self) -> str:
        return "StaticTokenProvider(token=<redacted>)"

    async def get_token(self) -> str:
        return self._token

    async def invalidate(self, token: str) -> None:
        """Nothing to do: the same token is all there is."""


class OAuthTokenProvider:
    """Client-credentials tokens, cached until shortly before they expire.

    One refresh at a time: concurrent callers wait on a lock and share the token (or the failure)
    of the single request made while they waited, so N calls never cost N token requests.
    """

    can_refresh = True

    def __init__(
        self,
        send: TokenSender,
        client_id: str,
        client_secret: str,
        refresh_margin: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send = send
        self._client_id = client_id
        self._client_secret = client_secret
        self._refresh_margin = refresh_margin
        self.clock = clock
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = asyncio.Lock()
        self._fetches = 0  # token requests started
        self._finished = 0  # token requests ended, successfully or not
        self._last_error: Exception | None = None

    def __repr__(self) -> str:
        return "OAuthTokenProvider(client_id=<redacted>, client_secret=<redacted>)"

    @property
    def issued_tokens(self) -> tuple[str, ...]:
        return () if self._token is None else (self._token,)

    @property
    def token_requests(self) -> int:
        """How many token requests this provider started (each may take several attempts)."""
        return self._fetches

    def _cached(self) -> str | None:
        if self._token is not None and self.clock() < self._renew_at:
            return self._token
        return None

    async def get_token(self) -> str:
        token = self._cached()
        if token is not None:
            return token
        finished_seen = self._finished
        async with self._lock:
            token = self._cached()
            if token is not None:
                return token
            if self._finished != finished_seen and self._last_error is not None:
                # The request that ended while we waited failed; asking again at once would turn
                # one bad secret into one token request per waiting call.
                raise self._last_error
            self._fetches += 1
            self._last_error = None
            try:
                token, lifetime = await self._fetch()
            except Exception as error:
                self._last_error = error
                raise
            finally:
                self._finished += 1
            remember(token)  # before any use: an API may echo it in the next answer
            self._token = token
            self._renew_at = self.clock() + self._cache_seconds(lifetime)
            logger.info("got an OAuth token from Routera (valid for %.0f s)", lifetime)
            return token

    async def invalidate(self, token: str) -> None:
        """Forget `token` if it is still the cached one (a newer token stays: no second refresh)."""
        if self._token == token:
            self._token = None
            self._renew_at = 0.0

    def _cache_seconds(self, lifetime: float) -> float:
        if lifetime <= self._refresh_margin:
            return lifetime / 2
        return lifetime - self._refresh_margin

    async def _fetch(self) -> tuple[str, float]:
        answer = await self._send(
            {
                "grant_type": "client_credentials",
                "client_id": self._client_id,
                "client_secret": self._client_secret,
            }
        )
        status = answer.status_code
        if status in (400, 401):
            raise AuthenticationError(
                f"Routera's token endpoint refused the client credentials (HTTP {status}"
                f"{self._oauth_error(answer.body)}); {CREDENTIALS_HINT}"
            )
        if not 200 <= status < 300:
            raise self._unexpected(status, answer.body)
        try:
            parsed: Any = json.loads(answer.body)
        except ValueError:
            raise self._unexpected(status, answer.body) from None
        token = parsed.get("access_token") if isinstance(parsed, dict) else None
        if not isinstance(token, str) or not is_header_safe_token(token):
            raise self._unexpected(status, answer.body)
        return token, _lifetime(parsed.get("expires_in"))

    def _oauth_error(self, body: str) -> str:
        """`: error — description` from an OAuth error body, `: message` from Routera's own
        error shape (`{"message": ..., "error": true}`, whose `error` says nothing), or a short
        cut of any other body."""
        try:
            parsed: Any = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            parts = [
                parsed[key]
                for key in ("error", "error_description")
                if isinstance(parsed.get(key), str) and parsed[key].strip()
            ]
            if not parts and isinstance(parsed.get("message"), str):
                parts = [parsed["message"]]
            if parts:
                return ": " + self._scrub(" — ".join(parts))
        preview = self._preview(body)
        return f": {preview}" if preview else ""

    def _unexpected(self, status: int, body: str) -> AuthenticationError:
        preview = self._preview(body)
        return AuthenticationError(
            f"Routera's token endpoint answered something unexpected (HTTP {status}"
            f"{': ' + preview if preview else ''}); check base_url and {CREDENTIALS_HINT}"
        )

    def _preview(self, body: str) -> str:
        """A short, secret-free cut of a body (none at all if it may hold a token)."""
        if "access_token" in body:
            return "<body withheld: it may contain a token>"
        text = self._scrub(body.strip())
        if len(text) > TOKEN_BODY_PREVIEW_CHARS:
            text = text[:TOKEN_BODY_PREVIEW_CHARS] + "…"
        return text

    def _scrub(self, text: str) -> str:
        text = scrub(text)
        return text.replace(self._client_secret, "<redacted>") if self._client_secret else text


def is_header_safe_token(token: str) -> bool:
    """True if `token` can go in an Authorization header as is.

    HTTP libraries reject a header value with a newline or other control character, and their
    error messages quote the value: such a token would end up in a traceback.
    """
    return bool(token) and token.isascii() and token.isprintable() and " " not in token


def _lifetime(expires_in: object) -> float:
    """Seconds a token lives, from `expires_in` (a number or numeric text; else a short default)."""
    if isinstance(expires_in, bool):
        return FALLBACK_TOKEN_LIFETIME_S
    if isinstance(expires_in, str):
        try:
            expires_in = float(expires_in)
        except ValueError:
            return FALLBACK_TOKEN_LIFETIME_S
    if isinstance(expires_in, int | float) and math.isfinite(expires_in) and expires_in > 0:
        return float(expires_in)
    return FALLBACK_TOKEN_LIFETIME_S
