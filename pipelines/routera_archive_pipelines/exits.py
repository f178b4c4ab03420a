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
