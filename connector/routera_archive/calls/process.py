"""The call worker's process, started before the run knows anything (issue 18).

Its interpreter start and imports take about 0.4 s. Started as the first thing a `run`
command does, before dlt is imported, they overlap that import (most of a second) instead of
the lock and the tally: the worker is ready when the run's first call is due. Standard library
only, so that starting it costs the run a fork and nothing else.

A process started here has been sent nothing: it waits for its configuration on its stdin
(`calls.callers.spawn_call_worker` sends it), and calls nothing before the run sends it
requests. Whoever does not hand it to a run ends it (`EarlyWorker.abandon`); the run's death
ends it too (it dies with its parent, and a closed stdin ends it at its first read).
"""

import contextlib
import logging
import os
import subprocess
import sys
from types import TracebackType

logger = logging.getLogger(__name__)


def start_worker_process() -> "subprocess.Popen[bytes]":
    """`python -m routera_archive.calls.worker <this pid>`, its stdin and stdout piped to us."""
    return subprocess.Popen(
        [sys.executable, "-m", "routera_archive.calls.worker", str(os.getpid())],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )


def end_worker_process(process: "subprocess.Popen[bytes]") -> None:
    """End a worker that was sent no request: it has called nothing and holds no answer."""
    with contextlib.suppress(OSError):
        process.kill()
    process.wait()
    for pipe in (process.stdin, process.stdout):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


class EarlyWorker:
    """A worker process started ahead of its run, until the run takes it (`take`)."""

    def __init__(self, process: "subprocess.Popen[bytes] | None") -> None:
        self._process = process

    @classmethod
    def start(cls, *, wanted: bool = True) -> "EarlyWorker":
        """Start one (none unless `wanted`: a dry run makes its calls itself); when no process
        can be started, the run starts its own, and says why if it cannot either."""
        if not wanted:
            return cls(None)
        try:
            return cls(start_worker_process())
        except OSError as exc:
            logger.debug("could not start the call worker early: %s", exc)
            return cls(None)

    def __enter__(self) -> "EarlyWorker":
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.abandon()

    def take(self) -> "subprocess.Popen[bytes] | None":
        """The process, once: from then it is the taker's to end."""
        process, self._process = self._process, None
        return process

    def abandon(self) -> None:
        """End it if nobody took it."""
        process = self.take()
        if process is not None:
            end_worker_process(process)
