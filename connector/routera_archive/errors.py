"""Typed errors. Each message says what to check; none ever contains a token or a secret."""


class RouteraArchiveError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigurationError(RouteraArchiveError):
    """The configuration cannot work (missing credentials, a base URL that is not a URL, ...)."""


class AuthenticationError(RouteraArchiveError):
    """Routera refused our credentials; retrying with the same ones cannot help."""


class InvalidContactId(RouteraArchiveError, ValueError):
    """An id that can never be a Routera contact id; no request is ever sent for it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RetriesExhausted(RouteraArchiveError):
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


class RunLockedError(RouteraArchiveError):
    """Another run holds the dataset's lock."""


class QueueError(RouteraArchiveError):
    """The queue table cannot be read as a queue."""


class CallWorkerError(RouteraArchiveError):
    """The process making the run's calls ended without finishing; its journal keeps its answers."""
