"""Moments of a run, for the benchmark's breakdown of a run's fixed cost (issue 18).

`mark(name)` notes when a phase of a run ended (its imports, the locks, the recovery, the last
load, the chain's link ...). With `ROUTERA_ARCHIVE_TIMELINE` naming a file in the environment,
each mark is appended to it at once as one JSON line (process, pid, name, unix time), so a run
killed, or left through `os._exit`, keeps the marks it made; the call worker inherits the
variable and writes its own marks to the same file. Without it a mark does nothing: a debug
line after the run's own last words (the exit's mark) would bury them under `--debug`.

The benchmark (`bench/breakdown.py`) sets the variable and reads the file beside the sandbox's
stamps of the API answers. Standard library only: the CLI marks its own start with it before
typer is imported, and the call worker before anything else.
"""

import json
import logging
import os
import time
from typing import IO, Final

ENV: Final = "ROUTERA_ARCHIVE_TIMELINE"

logger = logging.getLogger(__name__)

_file: IO[str] | None = None
_process = "run"


def name_process(process: str) -> None:
    """What this process is called in the marks ("run", "worker")."""
    global _process
    _process = process


def mark(name: str) -> None:
    """Note that `name` happened now."""
    now = time.time()
    path = os.environ.get(ENV)
    if not path:
        return
    global _file
    try:
        if _file is None:
            _file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - one per process, kept
        line = {"process": _process, "pid": os.getpid(), "name": name, "t": now}
        _file.write(json.dumps(line) + "\n")
        _file.flush()
    except OSError as exc:  # a measurement must never stop a run
        logger.debug("could not write a timeline mark: %s", exc)
