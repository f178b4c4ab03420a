"""Every error this package raises on purpose, and the exit code each one means.

The type says what happens next, so a scheduler (and a person) can act on the exit code alone:

    RouteraArchiveError             exit 1 unless a branch says otherwise
    ├── FatalError                  exit 2: retrying with the same setup cannot help; fix it
    │   ├── ConfigurationError      a setting, a destination or its credentials cannot work
    │   │   └── ApiMismatch         base_url answers, but not as Routera's API does
    │   ├── AuthenticationError     Routera refused the credentials
    │   └── QueueError              no usable queue table
    ├── RetriableError              exit 1: nothing is wrong with the setup; retry later
    │   ├── RetriesExhausted        the API stayed unreachable or failing (5xx, 429, timeouts)
    │   ├── DestinationUnavailable  the destination did not answer, or its file is in use
    │   ├── RunLockedError          another run holds the dataset
    │   ├── LockLostError           the run's lock was lost mid-run: it stopped sending DELETEs
    │   ├── LocalStorageError       the run's folder (journal, dlt's packages) cannot be written
    │   ├── CallWorkerError         the process making the calls ended (its journal keeps them)
│   └── RecoveryPendingError    a crashed run left answers to load: a run must load them first
    ├── GuardrailRefused            exit 3: a person must look at the queue before anything runs
    └── InvalidObjectId             never leaves a run: the request is settled as `invalid`

`ExitCode` is the one list of exit codes; the CLI maps errors to them in one place
(`routera_archive_pipelines.exits`). No message ever contains a token or a secret.
"""

import os
from enum import IntEnum
from typing import ClassVar, Final

from routera_archive.redaction import scrub


class ExitCode(IntEnum):
    """What a command's exit status means (the README's table)."""

    OK = 0
    """Every request handled is settled."""
    FAILED = 1
    """Some requests failed, or the API or the destination was unavailable: retry later."""
    CONFIGURATION = 2
    """Configuration, credentials or the queue table: fix the setup."""
    GUARDRAIL = 3
    """A guardrail refused the run: a person must look."""
    INTERRUPTED = 130
    """Stopped by a signal after finishing the calls in flight."""


NEXT_STEPS: Final[dict[int, str]] = {
    ExitCode.FAILED: "retry later",
    ExitCode.CONFIGURATION: "fix this, then run again",
    ExitCode.GUARDRAIL: "check the queue; if it is intended, raise the limit or pass --force",
    ExitCode.INTERRUPTED: "run again to finish",
}
"""What the person reading an error should do, by exit code (the CLI appends it)."""


class RouteraArchiveError(Exception):
    """Base class of every error this package raises on purpose."""

    exit_code: ClassVar[ExitCode] = ExitCode.FAILED


class FatalError(RouteraArchiveError):
    """Retrying with the same setup cannot help."""

    exit_code = ExitCode.CONFIGURATION


class ConfigurationError(FatalError):
    """The configuration cannot work (missing credentials, a base URL that is not a URL, a
    destination that does not exist or whose credentials are incomplete, ...)."""


class ApiMismatch(ConfigurationError):
    """`base_url` answers, but not as Routera's API does (a wrong path, another service)."""


class AuthenticationError(FatalError):
    """Routera refused our credentials; retrying with the same ones cannot help."""


class QueueError(FatalError):
    """The queue table cannot be read as a queue."""


class RetriableError(RouteraArchiveError):
    """Nothing is wrong with the setup: the same command may well succeed later."""

    exit_code = ExitCode.FAILED


class RetriesExhausted(RetriableError):
    """A retryable failure (429, 5xx, timeout, connection error) outlived the retry budget.

    `maybe_reached_server` is true when any attempt may have been processed by Routera (it was
    sent and no answer that proves otherwise came back), so a later 404 can be our own archive.
    """

    def __init__(
        self,
        reason: str,
        *,
        attempts: int,
        maybe_reached_server: bool,
        last_status: int | None = None,
        last_body: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts
        self.maybe_reached_server = maybe_reached_server
        self.last_status = last_status
        self.last_body = last_body


class DestinationUnavailable(RetriableError):
    """The destination did not answer (down, unreachable) or is in use by another process."""


class RunLockedError(RetriableError):
    """Another run holds the dataset's lock."""


class LockLostError(RetriableError):
    """The run's lock on its dataset was lost while it ran (a PostgreSQL session ended, a lock
    file was removed): it stopped sending DELETEs at once, and its journal keeps its answers."""


class LocalStorageError(RetriableError):
    """The run's own folder cannot be written (a full disk, a read-only or removed folder): the
    journal cannot keep answers, so no more DELETEs are sent. What was archived and could not
    be journaled is still in Routera: the next run finds it with a GET."""

    @classmethod
    def of(
        cls, error: OSError, path: "os.PathLike[str] | str | None" = None
    ) -> "LocalStorageError":
        """The one message for it, naming the file (`path`, or the one `error` names: dlt
        raises the OSError inside its step's error, which names neither file nor remedy)."""
        where = path if path is not None else error.filename
        return cls(
            f"the run's folder cannot be written ({error.strerror or error}"
            f"{'' if where is None else f': {where}'}): no more DELETEs were sent; what was "
            "archived and not kept is still in Routera, and the next run finds it with a GET; "
            "free space, then run again"
        )


class CallWorkerError(RetriableError):
    """The process making the run's calls ended without finishing; its journal keeps its answers."""


class RecoveryPendingError(RetriableError):
    """A crashed run left answers not loaded yet (a journal, dlt's packages): a redaction waits
    for the next run to load them, or it would leave their personal data behind."""


class GuardrailRefused(RouteraArchiveError):
    """A guardrail refused the run before any call: a person must look at the queue."""

    exit_code = ExitCode.GUARDRAIL


class InvalidObjectId(RouteraArchiveError, ValueError):
    """An id that can never be a Routera record's id (a contact's, a company's, ...); no
    request is ever sent for it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def one_line(text: str, limit: int = 400) -> str:
    """The first non-blank line of a message (dlt's and the drivers' run over many), and the
    next one while a line ends with ':' (it announces what follows), cut short, so an error
    stays one line on a terminal and in a scheduler's log; every known secret masked."""
    lines = [line.strip() for line in scrub(text).splitlines() if line.strip()]
    kept = lines[:1]
    while kept and kept[-1].endswith(":") and len(kept) < len(lines):
        kept.append(lines[len(kept)])
    first = " ".join(kept)
    return first if len(first) <= limit else f"{first[: limit - 1]}…"
