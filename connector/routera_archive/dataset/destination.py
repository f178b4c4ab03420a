"""What an error of dlt or of a database driver means for a run, as one of our typed errors.

dlt and the drivers raise long, multi-line texts (a configuration trace, a DSN, advice about
named destinations); a person needs one line saying what is wrong and whether retrying can
help. The exit code follows from the type: incomplete or refused credentials are a setup
problem (exit 2), a destination that does not answer or a DuckDB file held by another process
a passing one (exit 1).
"""

import errno
import re
from collections.abc import Iterator

from dlt.common.configuration.exceptions import (
    ConfigFieldMissingException,
    ConfigurationException,
    LookupTraces,
)
from dlt.destinations.exceptions import DatabaseTransientException, DestinationConnectionError
from dlt.load.exceptions import LoadClientJobFailed, LoadClientJobTerminalRetry
from dlt.pipeline.exceptions import PipelineStepFailed

from routera_archive.errors import (
    ConfigurationError,
    DestinationUnavailable,
    LocalStorageError,
    RouteraArchiveError,
    one_line,
)

DUCKDB_BUSY = re.compile(
    r'Could not set lock on file\s+"(?P<file>[^"]+)".*?\(PID (?P<pid>\d+)\)', re.S
)
NOT_A_DUCKDB_FILE = "is not a valid DuckDB database file"
NO_SUCH_FILE = "No such file or directory"
# Driver messages that mean the credentials or the database named in them are wrong.
REFUSED = (
    "password authentication failed",
    "no password supplied",
    "authentication failed",
    "does not exist",
    "permission denied",
    "invalid dsn",
    "invalid connection option",
    "invalid sslmode value",
    "invalid integer value",
)
# What an OSError says when no file can be written where dlt keeps the run's packages and state.
UNWRITABLE = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def destination_error(error: BaseException) -> RouteraArchiveError | None:
    """The typed error `error` stands for, or None when it is not a destination's error."""
    connection: DestinationConnectionError | None = None
    for cause in _causes(error):
        if isinstance(cause, OSError) and cause.errno in UNWRITABLE:
            return LocalStorageError.of(cause)
        if isinstance(cause, ConfigFieldMissingException):
            return ConfigurationError(_missing_fields(cause))
        if isinstance(cause, ConfigurationException):  # e.g. a credentials URL dlt cannot read
            return ConfigurationError(
                f"the destination's configuration cannot be used: {one_line(str(cause))}"
            )
        text = str(cause)
        if busy := DUCKDB_BUSY.search(text):
            return DestinationUnavailable(
                f"the DuckDB file {busy['file']} is open in another process (PID "
                f"{busy['pid']}, probably a run); DuckDB allows one process at a time (use a "
                "warehouse for concurrent access)"
            )
        if isinstance(cause, DestinationConnectionError):
            connection = connection or cause  # its `inner_exc`, next in line, says more
            continue
        if _is_duckdb(cause) and (NOT_A_DUCKDB_FILE in text or NO_SUCH_FILE in text):
            return ConfigurationError(
                f"{one_line(text)} (check DESTINATION__DUCKDB__CREDENTIALS, or the file's place)"
            )
        if _is_connection_error(cause):
            if any(sign in text.lower() for sign in REFUSED):
                return ConfigurationError(
                    f"the destination refused the connection: {one_line(text)}"
                )
            return DestinationUnavailable(f"the destination is unreachable: {one_line(text)}")
    if connection is not None:
        return DestinationUnavailable(
            f"the destination is unreachable: {one_line(str(connection.inner_exc))}"
        )
    return None


def is_data_failure(error: BaseException) -> bool:
    """Whether a load failed because of the rows themselves (a value the destination refused,
    a row dlt could not write), not because the destination was away or misconfigured: only
    then would loading the same rows again fail the same way for ever."""
    if isinstance(
        destination_error(error), ConfigurationError | DestinationUnavailable | LocalStorageError
    ):
        return False
    for cause in _causes(error):
        if isinstance(cause, LoadClientJobTerminalRetry | LoadClientJobFailed):
            return True
        if isinstance(cause, PipelineStepFailed) and cause.step in ("extract", "normalize"):
            return True
    return False


def refusal_reason(error: BaseException) -> str:
    """What the destination said when it refused rows, in one line: dlt keeps a failed job's
    error as text (a traceback ending in the driver's message), so that last message is read
    out of it."""
    messages = [str(cause) for cause in _causes(error) if str(cause).strip()]
    text = messages[-1] if messages else type(error).__name__
    said = re.findall(r"(?:Exception|Error): ([^\n]+)", text)
    return one_line(said[-1] if said else text)


def _causes(error: BaseException) -> Iterator[BaseException]:
    """`error` and what it wraps (dlt keeps the original as a cause or as `.exception`)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        current = todo.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        wrapped = getattr(current, "exception", None) or getattr(current, "inner_exc", None)
        todo.extend(
            [current.__cause__, current.__context__]
            + ([wrapped] if isinstance(wrapped, BaseException) else [])
        )


def _is_connection_error(error: BaseException) -> bool:
    """A driver's error about the connection itself (psycopg2's OperationalError and its kin,
    which dlt calls transient), told apart without importing any driver."""
    if isinstance(error, DatabaseTransientException):
        return True
    kind = type(error)
    return kind.__name__ == "OperationalError" and kind.__module__.split(".")[0] in (
        "psycopg2",
        "psycopg",
        "pg8000",
    )


def _is_duckdb(error: BaseException) -> bool:
    return type(error).__module__.split(".")[0] in ("duckdb", "_duckdb")


def _missing_fields(error: ConfigFieldMissingException) -> str:
    """`password` is missing: set DESTINATION__POSTGRES__CREDENTIALS__PASSWORD (or in the URL)."""
    missing: list[tuple[str, str | None]] = []
    for field, traces in error.traces.items():
        for trace in traces:
            if isinstance(trace, LookupTraces):
                for nested, nested_traces in trace.traces.items():
                    missing.append((nested, _key(nested_traces)))
                break
        else:
            missing.append((field, _key(traces)))
    names = ", ".join(f"`{name}`" for name, _ in missing)
    keys = " and ".join(key for _, key in missing if key)
    where = f": set {keys}" if keys else ""
    return (
        f"the destination's configuration is incomplete, {names} missing{where} (or put it in "
        "the credentials URL, e.g. DESTINATION__POSTGRES__CREDENTIALS=postgresql://user:"
        "password@host:5432/db)"
    )


def _key(traces: object) -> str | None:
    """The plainest environment key dlt looked for (`DESTINATION__...`), if any."""
    keys = [getattr(trace, "key", "") for trace in traces or ()]  # type: ignore[attr-defined]
    plain = [key for key in keys if key.startswith("DESTINATION__")]
    return plain[0] if plain else None
