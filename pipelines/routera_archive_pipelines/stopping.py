"""Ctrl-C and SIGTERM during a run: the first stops taking requests and lets the calls in
flight finish and load (exit 130); a second gives up at once (the next run recovers them)."""

import signal
import threading
from types import FrameType
from typing import Any

from routera_archive_pipelines.console import stderr


class GracefulStop:
    """Installs the handlers for the life of a `with` block; its value is the stop event."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()
        stderr().print(
            f"[yellow]{signal.Signals(signum).name}: finishing the calls in flight and loading "
            "what is done (again to abort)[/yellow]"
        )

    def __enter__(self) -> threading.Event:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self.event

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
