"""`routera-archive sandbox`, plus the time at which each API answer left the server.

The sandbox's `/_sandbox/stats` counts requests but keeps no times, and "no one-second window
over the rate limit" can only be judged from times. This launcher runs the very same CLI command
(same options, same code path, same URL line) with one thin ASGI wrapper around the app that
appends `(unix time, method, status, arrival time)` when an API answer starts: the answer's
time, and the time the request reached the app, which is what a server's rate limiter counts
(the answer comes after the sandbox's latency, and its own event loop's delays, on top). The list
is written as JSON to
the file named by `BENCH_SANDBOX_TIMES` when the server stops (SIGTERM), so measuring adds one
list append per request and nothing to the sandbox package itself.

Usage: `python bench/timed_sandbox.py sandbox --port 0 --contacts N --latency-ms L ...`
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

import routera_archive_sandbox.server as sandbox_server
from routera_archive_sandbox.config import SandboxConfig
from routera_archive_sandbox.gate import AnswerGate
from routera_archive_sandbox.state import SandboxState

TIMES_ENV = "BENCH_SANDBOX_TIMES"
# Paths of the sandbox's own test hooks: not API traffic, never counted.
INTERNAL_PREFIX = b"/_sandbox"

Stamp = tuple[float, str, int, float]


class AnswerTimes:
    """Wraps the sandbox's ASGI app and stamps every API answer as its status line is sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.stamps: list[Stamp] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw_path: bytes = scope.get("raw_path") or scope.get("path", "").encode()
        if scope["type"] != "http" or raw_path.startswith(INTERNAL_PREFIX):
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        stamps = self.stamps
        arrived = time.time()

        async def stamped_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                stamps.append((time.time(), method, int(message["status"]), arrived))
            await send(message)

        await self.app(scope, receive, stamped_send)


RECORDERS: list[AnswerTimes] = []


def _timed_create_app(
    config: SandboxConfig, state: SandboxState | None = None, gate: AnswerGate | None = None
) -> ASGIApp:
    recorder = AnswerTimes(ORIGINAL_CREATE_APP(config, state, gate))
    RECORDERS.append(recorder)
    return recorder


ORIGINAL_CREATE_APP = sandbox_server.create_app


def write_stamps(path: Path) -> None:
    """All stamps, in time order, as `[[t, method, status], ...]` (written whole, then renamed)."""
    stamps: list[Any] = sorted(s for recorder in RECORDERS for s in recorder.stamps)
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_text(json.dumps(stamps), encoding="utf-8")
    partial.replace(path)


def main() -> None:
    # `sandbox.server` looks `create_app` up at call time, so this swaps in the wrapper for the
    # server that `routera-archive sandbox` builds, without touching the sandbox package.
    sandbox_server.create_app = _timed_create_app  # type: ignore[assignment]
    from routera_archive_pipelines.cli import app

    target = os.environ.get(TIMES_ENV)
    try:
        app(args=sys.argv[1:], prog_name="routera-archive")
    finally:
        if target:
            write_stamps(Path(target))


if __name__ == "__main__":
    main()
