"""A small HTTP server that answers as a test scripts it: the answers the sandbox would never
give (a proxy's HTML 404, a list call refused with 403, a body that never ends). It lives in
the test tree, not among the sandbox's flags, because no user rehearses with it.

    with MisbehavingApi() as api:
        api.answer("GET", "/contacts", 403, {"message": "forbidden", "error": True})
        api.answer("DELETE", "/contacts/*", 404, "<html>Not Found</html>", "text/html")
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


@dataclass
class MisbehavingApi:
    answers: list[tuple[str, str, Answer]] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)

    def answer(
        self, method: str, path: str, status: int, body: Any, content_type: str | None = None
    ) -> None:
        """Answer `method` on `path` (a glob, `*` matches one segment or more) thus; the last
        matching rule wins."""
        raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        kind = content_type or ("text/plain" if isinstance(body, str) else "application/json")
        self.answers.append((method, path, Answer(status, raw, kind)))

    def __enter__(self) -> MisbehavingApi:
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _serve(self) -> None:
                path = self.path.split("?", 1)[0]
                api.requests.append((self.command, self.path))
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                match = next(
                    (
                        answer
                        for method, pattern, answer in reversed(api.answers)
                        if method == self.command and fnmatch.fnmatchcase(path, pattern)
                    ),
                    Answer(500, b'{"message": "not scripted", "error": true}', "application/json"),
                )
                self.send_response(match.status)
                self.send_header("Content-Type", match.content_type)
                self.send_header("Content-Length", str(len(match.body)))
                self.end_headers()
                self.wfile.write(match.body)

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
        self._server.shutdown()
        self._server.server_close()
