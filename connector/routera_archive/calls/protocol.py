"""The messages between a run and its call worker: one line each, `<kind>\\t<payload>`.

Payloads are JSON (pydantic's own for requests and outcomes, so a line round-trips exactly like
a journal line does). JSON escapes tabs and line breaks inside strings, so neither separator can
appear inside a payload, whatever a hostile id or an API body holds.
"""

from typing import Final

# Run -> worker.
CONFIG: Final = "config"  # first line: the client's settings and where to journal
ARCHIVE: Final = "archive"  # one ArchiveRequest to archive
LIST: Final = "list"  # `<call id>\t{object_type, archived, limit, offset}`: one GET /{type}
END: Final = "end"  # no more requests: finish the ones given, then say done
STOP: Final = "stop"  # finish the calls in progress only, then say done (may follow END)

# Worker -> run.
OUTCOME: Final = "outcome"  # `<requests sent so far>\t<ArchiveOutcome>`, already journaled
ANSWER: Final = "answer"  # `<call id>\t{answer} | {error}` for a LIST
LOG: Final = "log"  # {level, name, message}: a log record for the run's own handlers
ERROR: Final = "error"  # {kind, message}: the worker stopped archiving on this error
DONE: Final = "done"  # `<requests sent>`: the last line the worker writes

# Error kinds of ERROR and of a failed ANSWER.
AUTHENTICATION: Final = "authentication"
CONFIGURATION: Final = "configuration"
RETRIES_EXHAUSTED: Final = "retries_exhausted"
LOCAL_STORAGE: Final = "local_storage"
INTERNAL: Final = "internal"

# asyncio's default line limit is 64 KiB; one outcome carries a whole API body, which has no
# published bound. This is a ceiling, not an allocation.
MAX_LINE_BYTES: Final = 1 << 30


def encode(kind: str, *parts: str) -> bytes:
    return ("\t".join((kind, *parts)) + "\n").encode()


def decode(line: bytes, parts: int = 1) -> tuple[str, list[str]]:
    """Split a line into its kind and up to `parts` payload fields (the last keeps any tabs)."""
    kind, _, rest = line.decode().rstrip("\n").partition("\t")
    return kind, rest.split("\t", parts - 1) if rest else []
