"""Holding chosen requests until a test lets them through: an overlap made certain, not timed.

A test that needs a run to be in the middle of its calls while something else happens (a second
run meeting the lock) cannot rely on latency: on a loaded machine the run may finish its share
first, and the test then proves nothing or fails. `AnswerGate.hold(which)` makes every API
request for a record that `which` picks wait before it is handled (as latency does: the request
has no effect until it passes), for as long as the test likes; `release()` lets them through.

A hook for a test that serves the sandbox in its own process (`SandboxServer.gate`): the
server's loop polls it, so it can be set from the test's thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable

# How often a held request looks whether it may pass (it holds no thread while it waits).
POLL_S = 0.02


class AnswerGate:
    """Which records' requests wait, and which are waiting now."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._which: Callable[[str], bool] | None = None
        self._waiting: Counter[str] = Counter()

    def hold(self, which: Callable[[str], bool]) -> None:
        """From now on, requests for a record id `which` is true of wait (those waiting
        already and no longer picked go on)."""
        with self._lock:
            self._which = which

    def release(self) -> None:
        """Let every request through, the waiting ones at once."""
        with self._lock:
            self._which = None

    def waiting(self) -> list[str]:
        """The record ids of the requests held now (one entry per request)."""
        with self._lock:
            return sorted(self._waiting.elements())

    def _holds(self, object_id: str) -> bool:
        with self._lock:
            return self._which is not None and self._which(object_id)

    async def pass_through(self, object_id: str | None) -> None:
        """Return once a request for `object_id` (None: not a record's) may be handled."""
        if self._which is None or object_id is None or not self._holds(object_id):
            return
        with self._lock:
            self._waiting[object_id] += 1
        try:
            while self._holds(object_id):
                await asyncio.sleep(POLL_S)
        finally:
            with self._lock:
                self._waiting[object_id] -= 1
                if self._waiting[object_id] <= 0:
                    del self._waiting[object_id]
