"""A full disk under the run's folder is a LocalStorageError wherever dlt raises it, and a log
record's traceback is one line without `--debug` (dlt logs one when it cannot save a trace)."""

import errno
import logging
import os
import sys

import pytest

from routera_archive.dataset.destination import destination_error
from routera_archive.errors import ExitCode, LocalStorageError
from routera_archive.run.failures import stopped_by, typed_error
from routera_archive_pipelines.console import TracebackToOneLine


def wrapped_like_dlt(error: OSError) -> Exception:
    """dlt raises a step's error from the OSError (PipelineStepFailed wraps it the same way)."""
    try:
        try:
            raise error
        except OSError as exc:
            raise RuntimeError("Pipeline execution failed at `step=sync`") from exc
    except RuntimeError as outer:
        return outer


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EROFS])
def test_an_unwritable_folder_inside_a_dlt_error_is_a_local_storage_error(code: int) -> None:
    error = wrapped_like_dlt(OSError(code, os.strerror(code), "/data/pipelines/state.json"))

    typed = typed_error(error)

    assert isinstance(typed, LocalStorageError)
    assert typed.exit_code == ExitCode.FAILED  # a scheduler may retry once space is freed
    assert stopped_by(typed) == "stopped: the run's folder cannot be written"
    assert os.strerror(code) in str(typed) and "/data/pipelines/state.json" in str(typed)
    assert "free space, then run again" in str(typed)


def test_another_os_error_is_not_taken_for_a_full_disk() -> None:
    error = wrapped_like_dlt(OSError(errno.ECONNREFUSED, "Connection refused"))
    assert not isinstance(destination_error(error), LocalStorageError)


def test_a_traceback_becomes_the_exception_s_own_line() -> None:
    try:
        raise OSError(errno.ENOSPC, "No space left on device")
    except OSError:
        record = logging.LogRecord(
            "dlt", logging.WARNING, "x.py", 1, "Failed to create %s", ("a trace",), True
        )
        record.exc_info = sys.exc_info()

    assert TracebackToOneLine().filter(record)

    line = logging.Formatter("%(message)s").format(record)
    assert line == "Failed to create a trace (OSError: [Errno 28] No space left on device)"
