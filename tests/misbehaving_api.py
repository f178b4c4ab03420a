"""A small HTTP server that answers as a test scripts it: the answers the sandbox would never
give (a proxy's HTML 404, a list call refused with 403, a body that never ends). It lives in
the test tree, not among the sandbox's flags, because no user rehearses with it.

    with MisbehavingApi() as api:
        api.answer("GET", "/contacts", 403, {"message": "forbidden", "error": True})
        api.answer("DELETE", "/contacts/*", 404, "<html>Not Found</html>", "text/html")
        api.answer("POST", "/oauth2/token", 400, "bad form: {request_body}")  # echoes it
        ... api.url ...  # requests seen: api.requests
"""

from __future__ import annotations

import fnmatch
import http.server
import json
import threading
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any


@dataclass
class Answer:
    status: int
    body: bytes
    content_type: str
    times: int | None = None  # answered this many times, then the rule is used up
    # "endless": the body never ends (64 KB pieces until the client goes); "trickle": one
    # byte every half second.
    stream: str | None = None


# Routera's answer to the run's first call (`GET /contacts?limit=1`): the account probe.
ROUTERA_LISTING = {"data": [], "pagination": {"limit": 1, "offset": 0, "count": 100000}}


@dataclass
class MisbehavingApi:
    answers: list[tuple[str, str, Answer]] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    closing: threading.Event = field(default_factory=threading.Event)

    def answer(
        self,
        method: str,
        path: str,
        status: int,
        body: Any,
        content_type: str | None = None,
        *,
        times: int | None = None,
        stream: str | None = None,
    ) -> None:
        """Answer `method` on `path` (a glob, `*` matches one segment or more) thus, `times`
        times or for ever; the last matching rule not used up wins. In a body,
        `{request_body}` and `{request_headers}` become what the request carried."""
        raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        kind = content_type or ("text/plain" if isinstance(body, str) else "application/json")
        self.answers.append((method, path, Answer(status, raw, kind, times, stream)))

    @classmethod
    def like_routera(cls) -> MisbehavingApi:
        """One that passes the run's account probe, to misbehave later in the run."""
        api = cls()
        api.answer("GET", "/contacts", 200, ROUTERA_LISTING)
        return api

    def __enter__(self) -> MisbehavingApi:
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _serve(self) -> None:
                path = self.path.split("?", 1)[0]
                api.requests.append((self.command, self.path))
                length = int(self.headers.get("Content-Length") or 0)
                sent = self.rfile.read(length) if length else b""
                with api.lock:
                    match = next(
                        (
                            answer
                            for method, pattern, answer in reversed(api.answers)
                            if method == self.command
                            and fnmatch.fnmatchcase(path, pattern)
                            and answer.times != 0
                        ),
                        Answer(
                            500, b'{"message": "not scripted", "error": true}', "application/json"
                        ),
                    )
                    if match.times is not None:
                        match.times -= 1
                # An API that echoes what it was sent, as some do in their errors.
                body = match.body.replace(b"{request_body}", sent).replace(
                    b"{request_headers}", str(self.headers).encode()
                )
                self.send_response(match.status)
                self.send_header("Content-Type", match.content_type)
                if match.stream is None:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if match.stream is None:
                    self.wfile.write(body)
                    return
                # No length: the body runs until the connection closes (HTTP/1.0).
                self.close_connection = True
                try:
                    while not api.closing.is_set():
                        if match.stream == "endless":
                            self.wfile.write(b" " * 65536)
                        else:
                            self.wfile.write(b" ")
                            self.wfile.flush()
                            api.closing.wait(0.5)
                except OSError:
                    return  # the client gave up on it, as it should

            do_GET = do_POST = do_DELETE = do_PATCH = _serve

            def log_message(self, *args: object) -> None: ...

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.closing.set()
        self._server.shutdown()
        self._server.server_close()
