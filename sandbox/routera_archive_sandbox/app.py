"""The sandbox's ASGI application: Routera's documented routes, answers and error bodies.

Routing is done here, on the *raw* (still percent-encoded) request path, instead of by a
framework router: frameworks decode `%2F` into `/` before matching, which would turn the one
segment `/contacts/a%2Fb` into the unknown route `/contacts/a/b`. A connector that forgets to
encode ids must see the difference, so the sandbox keeps it. Starlette is only used to parse
requests and write responses.

Every object type (`/contacts`, `/companies`, `/deals`, `/tickets`) has the same routes, answers
and errors; only its fields, its identifying fields and the `{type}Id` of its 400 differ.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import secrets
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, quote, unquote, unquote_plus

from starlette.requests import Request
from starlette.responses import JSONResponse as StarletteJSONResponse
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from routera_archive_sandbox.config import STATIC_TOKEN_CLIENT_ID, SandboxConfig
from routera_archive_sandbox.faults import FaultInjector, Rejection
from routera_archive_sandbox.gate import AnswerGate
from routera_archive_sandbox.seed import OBJECT_TYPES, ObjectType
from routera_archive_sandbox.state import (
    ObjectArchived,
    ObjectNotFound,
    Record,
    SandboxState,
    validate_fields,
)

logger = logging.getLogger(__name__)

TOKEN_PATH = b"/oauth2/token"
INTERNAL_PREFIX = b"/_sandbox"
# The first path segment of each object type's routes.
OBJECT_SEGMENTS: dict[bytes, ObjectType] = {
    kind.name.encode(): kind for kind in OBJECT_TYPES.values()
}

# Methods each route knows; any other method on a known route is a 405.
ALLOWED_METHODS: dict[str, frozenset[str]] = {
    "token": frozenset({"POST"}),
    # PATCH and DELETE are "known" here only to answer the published 400 "Missing contactId"
    # (and its `companyId`, `dealId`, `ticketId` counterparts).
    "collection": frozenset({"GET", "POST", "PATCH", "DELETE"}),
    "item": frozenset({"GET", "PATCH", "DELETE"}),
    "stats": frozenset({"GET"}),
    "reset-stats": frozenset({"POST"}),
    "revoke": frozenset({"POST"}),
    "restore": frozenset({"POST"}),
}
# The `/_sandbox/*` test hooks.
INTERNAL_ROUTES = frozenset({"stats", "reset-stats", "revoke", "restore"})

UNAUTHORIZED = "Unauthorized: missing account context"
# What every answer of a type holds under `answer_fields="default"` (`archived_by` only once
# archived).
ANSWERED: dict[str, frozenset[str]] = {
    name: frozenset({*kind.default_fields, "archived_by"}) for name, kind in OBJECT_TYPES.items()
}
MAX_LIMIT = 100
DEFAULT_LIMIT = 10
_DIGITS = re.compile(r"[0-9]{1,18}")


def create_app(
    config: SandboxConfig, state: SandboxState | None = None, gate: AnswerGate | None = None
) -> ASGIApp:
    """The ASGI app serving `config`; pass `state` to share or inspect the data it serves, and
    `gate` to hold chosen requests from a test."""
    return SandboxApp(
        config, state if state is not None else SandboxState.from_config(config), gate
    )


class Route(NamedTuple):
    """What a raw path names: a route, and on an object type's paths the type and record id."""

    name: str
    kind: ObjectType | None = None
    object_id: str | None = None


def match_route(raw_path: bytes) -> Route | None:
    """The route of a raw request path, or None for an unknown path.

    `/{type}/{id}` matches only when the raw path has exactly one segment after `/{type}/`;
    that segment is then percent-decoded, so `/contacts/a%2Fb` is the contact `a/b` while
    `/contacts/a/b` matches nothing.
    """
    if raw_path == TOKEN_PATH:
        return Route("token")
    head, _, rest = raw_path[1:].partition(b"/")
    kind = OBJECT_SEGMENTS.get(head) if raw_path.startswith(b"/") else None
    if kind is not None:
        if not rest:  # `/contacts` or `/contacts/`
            return Route("collection", kind)
        if b"/" not in rest:
            return Route("item", kind, unquote(rest.decode("utf-8", "replace")))
        return None
    if raw_path.startswith(INTERNAL_PREFIX + b"/"):
        name = raw_path[len(INTERNAL_PREFIX) + 1 :].decode("ascii", "replace")
        if name in INTERNAL_ROUTES:
            return Route(name)
    return None


def _raw_path(scope: Scope) -> bytes:
    """The request path exactly as sent, without its query string.

    The ASGI spec makes `raw_path` optional; without it, re-encoding `path` is the best guess.
    """
    raw = scope.get("raw_path")
    if raw is None:
        raw = quote(scope.get("root_path", "") + scope["path"]).encode("ascii")
    return raw.split(b"?", 1)[0]


LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class JSONResponse(StarletteJSONResponse):
    """JSON as a JavaScript backend writes it: a lone surrogate (half of an emoji a backend cut)
    goes out as its escape `\\ud83d`, which JSON allows and UTF-8 cannot carry raw, and a
    number beyond 64 bits or a NaN as they are. So the sandbox can serve the records nobody
    plans for (tests seed them); every other answer is what starlette renders."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=True, separators=(",", ":"))
        return LONE_SURROGATE.sub(lambda found: f"\\u{ord(found.group()):04x}", text).encode()


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The only published error shape: `{"message": ..., "error": true}`."""
    return JSONResponse({"message": message, "error": True}, status_code=status, headers=headers)


def _oauth_error(status: int, error: str, description: str, **headers: str) -> JSONResponse:
    """The OAuth 2.0 error shape the token endpoint uses (RFC 6749 section 5.2)."""
    body = {"error": error, "error_description": description}
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store", **headers})


def _rejection_response(rejection: Rejection) -> JSONResponse:
    headers = {"Retry-After": str(rejection.retry_after)} if rejection.retry_after else None
    return _error(rejection.status, rejection.message, headers)


def _malformed(response: Response) -> Response:
    """The same answer with its body cut in half: JSON that no parser accepts."""
    body = bytes(response.body)
    headers = {
        k: v for k, v in response.headers.items() if k not in ("content-length", "content-type")
    }
    return Response(
        body[: len(body) // 2],
        status_code=response.status_code,
        headers=headers,
        media_type="application/json",
    )


def _reject_constant(name: str) -> Any:
    # NaN/Infinity would be stored, then break every later response that includes them.
    raise ValueError(f"{name} is not valid JSON")


def _parse_int(value: str | None, default: int) -> int | None:
    """A plain non-negative decimal integer, `default` when absent, None when malformed."""
    if value is None:
        return default
    return int(value) if _DIGITS.fullmatch(value) else None


async def _read_fields(request: Request) -> tuple[dict[str, Any] | None, str | None]:
    """The `fields` object of a create/update body, or why there is none."""
    shape = "Request body must be a JSON object with a 'fields' object"
    body = await request.body()
    try:
        payload = json.loads(body, parse_constant=_reject_constant) if body else None
    except ValueError:
        return None, "Request body is not valid JSON"
    if not isinstance(payload, dict) or not isinstance(payload.get("fields"), dict):
        return None, shape
    fields: dict[str, Any] = payload["fields"]
    problem = validate_fields(fields)
    if problem:
        return None, problem
    return fields, None


async def _wait_for_disconnect(receive: Receive) -> None:
    """Block until the client goes away (or the server cancels us on shutdown)."""
    while (await receive())["type"] != "http.disconnect":
        pass


class SandboxApp:
    """The ASGI callable. One instance serves one `SandboxState`."""

    def __init__(
        self, config: SandboxConfig, state: SandboxState, gate: AnswerGate | None = None
    ) -> None:
        self.config = config
        self.state = state
        self.faults = FaultInjector(config.faults, config.seed)
        self.gate = gate if gate is not None else AnswerGate()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":  # websockets: not part of the API
            await send({"type": "websocket.close", "code": 1003})
            return
        raw_path = _raw_path(scope)
        if raw_path == INTERNAL_PREFIX or raw_path.startswith(INTERNAL_PREFIX + b"/"):
            response = self._internal(scope["method"], raw_path)
            await response(scope, receive, send)
            return
        await self._api(scope, receive, send, raw_path)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _internal(self, method: str, raw_path: bytes) -> Response:
        """`/_sandbox/*`: test hooks, unauthenticated and never counted in the stats."""
        route = match_route(raw_path)
        if route is None or route.name not in INTERNAL_ROUTES:
            return _error(404, "Not found")
        allowed = ALLOWED_METHODS[route.name]
        if method not in allowed:
            return _error(405, "Method not allowed", {"Allow": ", ".join(sorted(allowed))})
        if route.name == "stats":
            return JSONResponse(self.state.stats())
        if route.name == "revoke":
            self.state.revoke()
            return JSONResponse({"revoked": True})
        if route.name == "restore":
            self.state.restore_credentials()
            return JSONResponse({"revoked": False})
        self.state.reset_stats()
        return JSONResponse({"reset": True})

    async def _api(self, scope: Scope, receive: Receive, send: Send, raw_path: bytes) -> None:
        """Serve one API request, with faults, and count it under its raw path and status."""
        method: str = scope["method"]
        path_text = raw_path.decode("utf-8", "backslashreplace")
        route = match_route(raw_path)
        kind = route.kind if route is not None else None
        object_id = route.object_id if route is not None else None
        recorded = False

        def record(status: int) -> None:
            nonlocal recorded
            if not recorded:
                recorded = True
                self.state.record_request(
                    method,
                    path_text,
                    status,
                    object_type=kind.name if kind is not None else None,
                    object_id=object_id,
                )
                logger.debug("sandbox %s %s -> %s", method, path_text, status or "no answer")

        async def send_and_record(message: Message) -> None:
            if message["type"] == "http.response.start":
                record(message["status"])
            await send(message)

        try:
            await self.faults.delay()
            await self.gate.pass_through(object_id)
            rejection = self.faults.reject()
            if rejection is not None:
                response: Response = _rejection_response(rejection)
            else:
                try:
                    response = await self._dispatch(Request(scope, receive), raw_path)
                except Exception:
                    logger.exception("sandbox failed on %s %s", method, path_text)
                    response = _error(500, "Internal server error")
                spoiler = self.faults.spoil()
                if spoiler.hang:
                    record(0)
                    await _wait_for_disconnect(receive)
                    return
                if spoiler.malformed:
                    response = _malformed(response)
            await response(scope, receive, send_and_record)
        finally:
            record(0)  # no-op unless we never answered (client gone, server shutting down)

    async def _dispatch(self, request: Request, raw_path: bytes) -> Response:
        route = match_route(raw_path)
        if route is None or route.name in INTERNAL_ROUTES:
            return _error(404, "Not found")
        name, kind, object_id = route
        method = request.method
        allowed = ALLOWED_METHODS[name]
        if method not in allowed:
            return _error(405, "Method not allowed", {"Allow": ", ".join(sorted(allowed))})
        if name == "token":
            return await self._token(request)
        client_id = self._authenticate(request)
        if client_id is None:
            return _error(401, UNAUTHORIZED, {"WWW-Authenticate": "Bearer"})
        assert kind is not None
        if name == "collection":
            if method == "GET":
                return self._list(request, kind)
            if method == "POST":
                return await self._create(request, kind)
            return _error(400, f"Missing {kind.singular}Id in path")
        assert object_id is not None
        if method == "GET":
            return self._get(request, kind, object_id)
        if method == "PATCH":
            return await self._update(request, kind, object_id)
        return self._archive(kind, object_id, client_id)

    # -- authentication -------------------------------------------------------------------------

    async def _token(self, request: Request) -> Response:
        """OAuth 2.0 client-credentials grant: form fields or HTTP Basic for the client."""
        body = await request.body()
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        form: dict[str, str] = {}
        if content_type in ("", "application/x-www-form-urlencoded"):
            form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        grant = form.get("grant_type")
        if grant != "client_credentials":
            why = f"grant_type {grant!r} is not supported" if grant else "grant_type is missing"
            return _oauth_error(
                400,
                "unsupported_grant_type",
                f"{why}; send grant_type=client_credentials, form-encoded",
            )
        authorization = request.headers.get("authorization")
        if authorization:
            credentials = _basic_credentials(authorization)
        else:
            credentials = (form.get("client_id", ""), form.get("client_secret", ""))
        extra = {"WWW-Authenticate": 'Basic realm="routera"'} if authorization else {}
        if credentials is None or not self._valid_client(*credentials):
            return _oauth_error(401, "invalid_client", "Client authentication failed", **extra)
        token = self.state.issue_token(credentials[0], self.config.token_ttl)
        if token is None:  # the credentials were revoked (`/_sandbox/revoke`)
            return _oauth_error(401, "invalid_client", "Client authentication failed", **extra)
        return JSONResponse(
            {
                "access_token": token,
                "expires_in": int(self.config.token_ttl),
                "token_type": "Bearer",
            },
            headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
        )

    def _valid_client(self, client_id: str, client_secret: str) -> bool:
        id_ok = secrets.compare_digest(client_id.encode(), self.config.client_id.encode())
        secret_ok = secrets.compare_digest(
            client_secret.encode(), self.config.client_secret.encode()
        )
        return id_ok and secret_ok

    def _authenticate(self, request: Request) -> str | None:
        """The API client id behind the bearer token, or None (which means 401)."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        if self.state.credentials_revoked:
            return None
        if any(
            secrets.compare_digest(token.encode(), t.encode()) for t in self.config.static_tokens
        ):
            return STATIC_TOKEN_CLIENT_ID
        return self.state.token_client(token)

    # -- records of every type ------------------------------------------------------------------

    def _list(self, request: Request, kind: ObjectType) -> Response:
        params = request.query_params
        archived = params.get("archived", "false").lower()
        if archived not in ("true", "false"):
            return _error(400, "Query parameter 'archived' must be true or false")
        limit = _parse_int(params.get("limit"), DEFAULT_LIMIT)
        if limit is None or not 1 <= limit <= MAX_LIMIT:
            return _error(400, f"Query parameter 'limit' must be an integer from 1 to {MAX_LIMIT}")
        offset = _parse_int(params.get("offset"), 0)
        if offset is None:
            return _error(400, "Query parameter 'offset' must be a non-negative integer")
        asked, refused = self._properties(request, kind)
        if refused is not None:
            return refused
        data, count = self.state.list_objects(
            kind.name, include_archived=archived == "true", limit=limit, offset=offset
        )
        return JSONResponse(
            {
                "data": [self._shaped(kind, record, asked) for record in data],
                "pagination": {"limit": limit, "offset": offset, "count": count},
            }
        )

    async def _create(self, request: Request, kind: ObjectType) -> Response:
        fields, problem = await _read_fields(request)
        if fields is None:
            return _error(400, problem or "Invalid body")
        if not any(fields.get(name) for name in kind.identity_fields):
            return _error(400, _identity_message(kind))
        created = self.state.create_object(kind.name, fields)
        return JSONResponse(self._shaped(kind, created), status_code=201)

    def _get(self, request: Request, kind: ObjectType, object_id: str) -> Response:
        asked, refused = self._properties(request, kind)
        if refused is not None:
            return refused
        record = self.state.get_object(kind.name, object_id)
        if record is None:
            return _error(404, "Object not found")
        return JSONResponse(self._shaped(kind, record, asked))

    async def _update(self, request: Request, kind: ObjectType, object_id: str) -> Response:
        asked, refused = self._properties(request, kind)
        if refused is not None:  # before the update: a refused request changes nothing
            return refused
        fields, problem = await _read_fields(request)
        if fields is None:
            return _error(400, problem or "Invalid body")
        try:
            updated = self.state.update_object(kind.name, object_id, fields)
        except ObjectNotFound:
            return _error(404, "Object not found")
        except ObjectArchived:
            return _error(409, "Object is archived — cannot update")
        return JSONResponse(self._shaped(kind, updated, asked))

    def _archive(self, kind: ObjectType, object_id: str, client_id: str) -> Response:
        """The archive page does not list `properties`: a DELETE ignores it."""
        record = self.state.archive_object(kind.name, object_id, archived_by=client_id)
        if record is None:
            return _error(404, "Object not found or already archived")
        return JSONResponse(self._shaped(kind, record))

    # -- what an answer holds -------------------------------------------------------------------

    def _properties(
        self, request: Request, kind: ObjectType
    ) -> tuple[frozenset[str], Response | None]:
        """The names `?properties=a,b` asks for, or the 400 a name unknown on `kind` gets (in
        both `answer_fields` modes: the reference says an invalid name is refused)."""
        requested = request.query_params.get("properties", "")
        names = frozenset(name.strip() for name in requested.split(",") if name.strip())
        if names:
            known = self.state.known_fields(kind.name)
            unknown = sorted(names - known)
            if unknown:
                return names, _error(400, f"Unknown properties: {', '.join(unknown)}")
        return names, None

    def _shaped(
        self, kind: ObjectType, record: Record, asked: frozenset[str] = frozenset()
    ) -> Record:
        """`record` as an answer holds it: whole under `answer_fields="all"`; under "default",
        only its type's default properties, `archived_by` once archived, and the names `asked`
        for that the record carries, in the record's own key order."""
        if self.config.answer_fields == "all":
            return record
        answered = ANSWERED[kind.name]
        return {key: value for key, value in record.items() if key in answered or key in asked}


def _identity_message(kind: ObjectType) -> str:
    """The 400 of a create without any identifying field (contacts: the published rule)."""
    if len(kind.identity_fields) == 1:
        return f"A {kind.singular} needs {kind.identity_fields[0]}"
    return f"A {kind.singular} needs at least one of {', '.join(kind.identity_fields)}"


def _basic_credentials(authorization: str) -> tuple[str, str] | None:
    """`(client_id, client_secret)` from an HTTP Basic header, None if it is not one.

    RFC 6749 2.3.1 has both parts form-urlencoded before base64, hence `unquote_plus`.
    """
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, client_secret = decoded.partition(":")
    if not sep:
        return None
    return unquote_plus(client_id), unquote_plus(client_secret)
