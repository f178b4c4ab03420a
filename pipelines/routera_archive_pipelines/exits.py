"""The one way out of the CLI: every error ends in one line on stderr, `error: <what>; <what
to do>`, and the exit code its type stands for (`routera_archive.errors.ExitCode`). A
traceback is shown with `--debug` only.

Nothing here imports dlt until an error needs explaining, so that `--help` stays instant.
"""

import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer


@contextmanager
def one_way_out(debug: bool) -> Iterator[None]:
    """Run a command's body; any error leaves through `fail`."""
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except KeyboardInterrupt:
        from routera_archive.errors import ExitCode

        error_line("interrupted")
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    except Exception as exc:
        if debug:
            traceback.print_exc(file=sys.stderr)
        fail(exc)


def fail(exc: Exception) -> NoReturn:
    """Print `exc` as one line and exit with its code."""
    from routera_archive.errors import NEXT_STEPS
    from routera_archive.run.failures import typed_error

    error = typed_error(exc)
    error_line(str(error), NEXT_STEPS.get(error.exit_code))
    raise typer.Exit(int(error.exit_code))


def error_line(message: str, next_step: str | None = None) -> None:
    """`error: ...` on stderr, the message as plain text (never markup: it may quote an id, an
    API body or a field name), on one line however long."""
    from rich.console import Console
    from rich.text import Text

    from routera_archive.errors import one_line

    line = Text("error:", style="bold red")
    line.append(f" {one_line(message, limit=2000)}" + (f"; {next_step}" if next_step else ""))
    Console(stderr=True).print(line, soft_wrap=True, highlight=False)


def leave_now(code: int) -> NoReturn:
    """Exit with `code` without the interpreter's teardown, once nothing is left to do.

    After a run everything it wrote is durable before its command returns (its loads
    committed, the chain linked, the DuckDB file closed and checkpointed, the journals closed,
    the call worker reaped, the locks released), and what the interpreter does next is undo
    a thousand modules and free dlt's and DuckDB's objects one by one: about 0.4 s a run
    (bench/RESULTS.md, issue 18), paid by every scheduled shard. So the exit handlers run
    (logging's flush among them), stdout and stderr are flushed, and the process ends. With a
    thread of the program's own still alive (a load, a watch) it exits the ordinary way, which
    waits for it.
    """
    import atexit
    import contextlib
    import os
    import threading

    main = threading.main_thread()
    if any(t is not main and not t.daemon and t.is_alive() for t in threading.enumerate()):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: what could be, was
            stream.flush()
    os._exit(code)
