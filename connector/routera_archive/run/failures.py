"""How an error ends a run: as one of our typed errors, whatever raised it, with the words the
run's account uses for it. The CLI maps the same types to exit codes and next steps."""

from routera_archive.dataset.destination import destination_error
from routera_archive.errors import (
    AuthenticationError,
    CallWorkerError,
    ConfigurationError,
    DestinationUnavailable,
    LocalStorageError,
    LockLostError,
    QueueError,
    RetriesExhausted,
    RouteraArchiveError,
    RunLockedError,
    one_line,
)

# What `archive_runs.outcome` says of a run an error ended (the first type that matches).
STOPPED_BY: tuple[tuple[type[RouteraArchiveError], str], ...] = (
    (RunLockedError, "locked"),
    (LockLostError, "stopped: the lock was lost"),
    (LocalStorageError, "stopped: the run's folder cannot be written"),
    (ConfigurationError, "stopped: configuration"),
    (AuthenticationError, "stopped: authentication"),
    (QueueError, "stopped: queue"),
    (RetriesExhausted, "stopped: the API is unavailable"),
    (DestinationUnavailable, "stopped: the destination is unavailable"),
    (CallWorkerError, "stopped: the call worker ended"),
)


def stopped_by(error: RouteraArchiveError) -> str:
    return next((words for kind, words in STOPPED_BY if isinstance(error, kind)), "stopped: error")


def typed_error(error: Exception) -> RouteraArchiveError:
    """`error` as one of ours: itself, what a destination's error means, or an unexpected one
    (a plain RouteraArchiveError naming its type: exit 1)."""
    if isinstance(error, RouteraArchiveError):
        return error
    known = destination_error(error)
    if known is not None:
        return known
    return RouteraArchiveError(f"unexpected error: {type(error).__name__}: {one_line(str(error))}")


def is_unexpected(error: RouteraArchiveError) -> bool:
    """True for the error `typed_error` made of an exception nobody raised on purpose."""
    return type(error) is RouteraArchiveError
