"""`routera-archive`: the command line. It owns the terminal; the library only logs.

Exit codes (DESIGN.md): 0 every handled request is terminal; 1 some `failed` (or a load, lock or
unexpected error); 2 configuration or authentication error; 3 a guardrail refused the run;
130 stopped by SIGINT/SIGTERM after finishing what was in flight.
"""

import logging
import os
import re
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import dlt
import typer
from rich.console import Console
from rich.logging import RichHandler

from routera_archive.audit.status import dataset_status
from routera_archive.config import resolve_dataset_config, resolve_source_config
from routera_archive.dataset.enqueue import enqueue as enqueue_rows
from routera_archive.dataset.enqueue import parse_ids
from routera_archive.dataset.queue import Shard
from routera_archive.dataset.tables import DATASET_NAME
from routera_archive.errors import ConfigurationError, RouteraArchiveError
from routera_archive.run.runner import (
    EXIT_CONFIG_OR_AUTH,
    EXIT_FAILED,
    ArchiveRun,
    RunOptions,
)
from routera_archive_pipelines.console import ProgressObserver, print_report
from routera_archive_pipelines.factory import (
    DEFAULT_DESTINATION,
    enqueue_pipeline_name_for,
    make_pipeline,
)

app = typer.Typer(
    name="routera-archive",
    help="Archive Routera contacts listed in a queue table and keep every archived record.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)


def _show_version(value: bool) -> None:
    if value:
        from routera_archive import __version__

        console.print(f"routera-archive {__version__}")
        raise typer.Exit(0)


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="print the version"),
    ] = False,
) -> None:
    """Archive Routera contacts listed in a queue table and keep every archived record."""
    telemetry_off_unless_configured()


def telemetry_off_unless_configured() -> None:
    """dlt sends anonymous usage telemetry by default. A tool that runs beside customer data,
    often where outbound traffic is closed, makes no call its user did not ask for; turning
    it on in dlt's own configuration (`[runtime] dlthub_telemetry = true` in
    `.dlt/config.toml`, or RUNTIME__DLTHUB_TELEMETRY=true) sends it anyway."""
    try:
        configured = dlt.config.get("runtime.dlthub_telemetry")
    except Exception:  # an unreadable .dlt file: the command itself reports it, with exit 2
        configured = None
    if configured is None:
        os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"


DestinationOpt = Annotated[
    str, typer.Option("--destination", help="dlt destination name (duckdb, postgres, ...)")
]
DatasetOpt = Annotated[str, typer.Option("--dataset", help="dataset (schema) in the destination")]
QueueOpt = Annotated[
    str | None, typer.Option("--queue-table", help="name of the queue table (queue_table)")
]
DebugOpt = Annotated[bool, typer.Option("--debug", help="log everything, with tracebacks")]


def _setup_logging(debug: bool) -> None:
    level = logging.DEBUG if debug else logging.INFO
    handler: logging.Handler
    if console.is_terminal:
        # The progress bar's own console, so log lines print above the bar instead of through it.
        handler = RichHandler(console=console, show_path=False, rich_tracebacks=debug)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for name in ("routera_archive", "routera_archive_pipelines", "routera_archive_sandbox"):
        logging.getLogger(name).setLevel(level if not debug else logging.DEBUG)
    if not debug:
        # dlt and httpx are chatty at INFO; their warnings still show.
        logging.getLogger("dlt").setLevel(logging.WARNING)
        logging.getLogger("httpx").setLevel(logging.WARNING)


DUCKDB_BUSY = re.compile(
    r'Could not set lock on file\s+"(?P<file>[^"]+)".*?\(PID (?P<pid>\d+)\)', re.S
)


def _explain(exc: BaseException) -> str:
    """dlt wraps database errors in long texts; say the one thing a person must know."""
    text = str(exc)
    if busy := DUCKDB_BUSY.search(text):
        return (
            f"the DuckDB file {busy['file'].replace(chr(10), '')} is open in another process "
            f"(PID {busy['pid']}, probably a run); DuckDB allows one process at a time: try "
            "again when it has finished, or use a warehouse destination for concurrent access"
        )
    return text


def _die(message: str, code: int, debug: bool = False) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


class _GracefulStop:
    """First SIGINT/SIGTERM: stop taking requests, finish what is in flight. Second: give up."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()
        err_console.print(
            f"[yellow]{signal.Signals(signum).name}: finishing the calls in flight and loading "
            "what is done (again to abort)[/yellow]"
        )

    def __enter__(self) -> threading.Event:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self.event

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)  # type: ignore[arg-type]


@app.command()
def run(
    base_url: Annotated[str | None, typer.Option(help="Routera API base URL")] = None,
    destination: DestinationOpt = DEFAULT_DESTINATION,
    dataset: DatasetOpt = DATASET_NAME,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show the plan; call nothing")] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="handle at most N requests")] = None,
    max_archives: Annotated[
        int | None, typer.Option(min=0, help="refuse a run with more pending requests")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="run past the guardrails")] = False,
    concurrency: Annotated[int | None, typer.Option(min=1, help="requests in flight")] = None,
    rps: Annotated[float | None, typer.Option(min=0, help="requests per second (0: off)")] = None,
    queue_table: QueueOpt = None,
    shard: Annotated[
        str | None,
        typer.Option(
            help="I/N: only the requests whose contact id hashes to worker I of N (0-based)"
        ),
    ] = None,
    debug: DebugOpt = False,
) -> None:
    """Archive every pending request in the queue and load the records into the audit trail."""
    _setup_logging(debug)
    try:
        worker = None if shard is None else Shard.parse(shard)
    except ValueError as exc:
        raise _die(str(exc), EXIT_CONFIG_OR_AUTH) from None
    try:
        config = resolve_source_config(
            base_url=base_url,
            max_archives=max_archives,
            concurrency=concurrency,
            rps=rps,
            queue_table=queue_table,
        )
        pipeline = make_pipeline(destination, dataset, shard=worker)
    except RouteraArchiveError as exc:
        raise _die(str(exc), EXIT_CONFIG_OR_AUTH) from None
    except Exception as exc:  # dlt's own configuration errors (a malformed .dlt/config.toml)
        raise _die(f"configuration error: {exc}", EXIT_CONFIG_OR_AUTH) from None
    options = RunOptions(dry_run=dry_run, limit=limit, force=force, shard=worker)
    observer = ProgressObserver(console)
    with _GracefulStop() as stop:
        try:
            report = ArchiveRun(pipeline, config, options, observer=observer, stop=stop).execute()
        finally:
            observer.close()
    print_report(console, report)
    raise typer.Exit(report.exit_code)


@app.command()
def enqueue(
    file: Annotated[str, typer.Argument(help="file of ids (one a line) or CSV; - for stdin")] = "-",
    requested_by: Annotated[str | None, typer.Option(help="who asks")] = None,
    reason: Annotated[str | None, typer.Option(help="why")] = None,
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="drop ids that can never be valid")
    ] = False,
    destination: DestinationOpt = DEFAULT_DESTINATION,
    dataset: DatasetOpt = DATASET_NAME,
    queue_table: QueueOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Add contact ids to the queue table."""
    _setup_logging(debug)
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _die(f"cannot read {file}: {exc}", EXIT_CONFIG_OR_AUTH) from None
    parsed = parse_ids(text)
    try:
        queue_table = resolve_dataset_config(queue_table=queue_table).queue_table
        pipeline = make_pipeline(
            destination, dataset, pipeline_name=enqueue_pipeline_name_for(destination, dataset)
        )
        count = enqueue_rows(
            pipeline,
            parsed.rows,
            requested_by=requested_by,
            reason=reason,
            queue_table=queue_table,
            skip_invalid=skip_invalid,
        )
    except RouteraArchiveError as exc:
        raise _die(str(exc), EXIT_CONFIG_OR_AUTH) from None
    except Exception as exc:
        raise _die(f"could not write the queue: {_explain(exc)}", EXIT_FAILED) from None
    skipped = f" ({parsed.skipped_blank} blank lines skipped)" if parsed.skipped_blank else ""
    console.print(f"enqueued {count} requests into {dataset}.{queue_table}{skipped}")


@app.command()
def status(
    destination: DestinationOpt = DEFAULT_DESTINATION,
    dataset: DatasetOpt = DATASET_NAME,
    queue_table: QueueOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Pending and terminal counts, and the last runs."""
    from rich.table import Table

    _setup_logging(debug)
    try:
        queue_table = resolve_dataset_config(queue_table=queue_table).queue_table
        pipeline = make_pipeline(destination, dataset)
        summary = dataset_status(pipeline, queue_table=queue_table)
    except RouteraArchiveError as exc:
        raise _die(str(exc), EXIT_CONFIG_OR_AUTH) from None
    except Exception as exc:
        raise _die(f"could not read the dataset: {_explain(exc)}", EXIT_FAILED) from None
    if summary.queue_error:
        console.print(f"queue: {summary.queue_error}")
    else:
        console.print(f"pending requests: {summary.pending}")
    table = Table(title="requests by latest status", show_edge=False)
    table.add_column("status")
    table.add_column("requests", justify="right")
    for name, count in sorted(summary.statuses.items()):
        table.add_row(name, str(count))
    console.print(table)
    runs = Table(title="last runs", show_edge=False)
    for column in ("run_id", "mode", "started_at", "outcome", "exit_code"):
        runs.add_column(column)
    for row in summary.runs:
        runs.add_row(
            str(row["run_id"]),
            str(row["mode"]),
            str(row["started_at"]),
            str(row["outcome"]),
            str(row["exit_code"]),
        )
    console.print(runs)


@app.command()
def report(
    destination: DestinationOpt = DEFAULT_DESTINATION,
    dataset: DatasetOpt = DATASET_NAME,
    queue_table: QueueOpt = None,
    since: Annotated[
        str | None,
        typer.Option(help="from this date or ISO timestamp (UTC unless it has an offset)"),
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="up to this date (the whole day) or ISO timestamp")
    ] = None,
    statuses: Annotated[
        list[str] | None,
        typer.Option("--status", help="only requests whose latest status is this (repeatable)"),
    ] = None,
    output_format: Annotated[
        str, typer.Option("--format", help="table, json, csv or html")
    ] = "table",
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="write to this file (required for html)"),
    ] = None,
    last_runs: Annotated[int, typer.Option("--runs", min=1, help="how many runs to list")] = 20,
    max_failures: Annotated[
        int, typer.Option("--max-failures", min=1, help="most failures to list")
    ] = 500,
    debug: DebugOpt = False,
) -> None:
    """Audit report: archives per day and per person, outcomes, failures, backlog, fields, runs.

    --since/--until filter archives by `archived` and outcomes and failures by `processed_at`;
    the backlog, the custom fields and the runs are shown as they are now.
    """
    import os
    import tempfile

    from routera_archive.audit.report import ReportFilters, ReportOptionError, build_report
    from routera_archive_pipelines.report_render import ReportFormat, render
    from routera_archive_pipelines.report_render import print_report as print_audit_report

    _setup_logging(debug)
    try:
        chosen = ReportFormat(output_format.strip().lower())
        filters = ReportFilters.from_options(since, until, statuses)
    except ValueError as exc:
        if not isinstance(exc, ReportOptionError):
            exc = ValueError(f"--format {output_format!r}: use table, json, csv or html")
        raise _die(str(exc), EXIT_CONFIG_OR_AUTH) from None
    if chosen is ReportFormat.HTML and output is None:
        raise _die("--format html needs --output FILE", EXIT_CONFIG_OR_AUTH)
    if chosen is ReportFormat.TABLE and output is not None:
        raise _die("--output needs --format json, csv or html", EXIT_CONFIG_OR_AUTH)
    if output is not None and not output.parent.resolve().is_dir():
        raise _die(f"--output {output}: no directory {output.parent}", EXIT_CONFIG_OR_AUTH)
    try:
        queue_table = resolve_dataset_config(queue_table=queue_table).queue_table
        pipeline = make_pipeline(destination, dataset)
        audit = build_report(
            pipeline,
            filters,
            queue_table=queue_table,
            last_runs=last_runs,
            max_failures=max_failures,
        )
    except RouteraArchiveError as exc:
        raise _die(str(exc), EXIT_CONFIG_OR_AUTH) from None
    except Exception as exc:
        raise _die(f"could not read the dataset: {_explain(exc)}", EXIT_FAILED) from None
    if chosen is ReportFormat.TABLE:
        print_audit_report(console, audit)
        return
    text = render(audit, chosen)
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    # Written next to the target and renamed: a reader never sees half a report. mkstemp's
    # owner-only mode stays: the report names contacts and people.
    partial: str | None = None
    try:
        handle, partial = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.")
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as file:
            file.write(text)
        os.replace(partial, output)
        partial = None
    except OSError as exc:
        raise _die(f"cannot write {output}: {exc}", EXIT_FAILED) from None
    finally:
        if partial is not None and os.path.exists(partial):
            os.unlink(partial)
    err_console.print(f"wrote the {chosen.value} report to {output}", highlight=False)


@app.command()
def sandbox(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="port (0: any free one)")] = 8765,
    contacts: Annotated[int, typer.Option(min=0, help="contacts to seed")] = 200,
    seed: Annotated[int, typer.Option(help="seed of the data and of the fault dice")] = 0,
    client_id: Annotated[str, typer.Option(help="OAuth client id it accepts")] = "sandbox-client",
    client_secret: Annotated[
        str, typer.Option(help="OAuth client secret it accepts")
    ] = "sandbox-secret",
    static_token: Annotated[
        list[str] | None, typer.Option(help="a bearer token accepted as-is (repeatable)")
    ] = None,
    token_ttl: Annotated[float, typer.Option(min=0.001, help="seconds a token lives")] = 3600.0,
    latency_ms: Annotated[float, typer.Option(min=0, help="latency added to each answer")] = 0.0,
    jitter_ms: Annotated[float, typer.Option(min=0, help="random extra latency, up to")] = 0.0,
    error_rate: Annotated[float, typer.Option(min=0, max=1, help="share of 500/502/503")] = 0.0,
    throttle_rate: Annotated[
        float, typer.Option(min=0, max=1, help="share of 429 with Retry-After")
    ] = 0.0,
    rate_limit: Annotated[float, typer.Option(min=0, help="requests/s before 429 (0: off)")] = 0.0,
    hang_rate: Annotated[
        float, typer.Option(min=0, max=1, help="share of requests never answered")
    ] = 0.0,
    malformed_rate: Annotated[
        float, typer.Option(min=0, max=1, help="share of answers with a broken body")
    ] = 0.0,
) -> None:
    """Serve a local Routera-compatible API until stopped (Ctrl-C or SIGTERM)."""
    from routera_archive_sandbox import FaultConfig, SandboxConfig
    from routera_archive_sandbox.server import serve_forever

    _setup_logging(False)
    try:
        config = SandboxConfig(
            host=host,
            port=port,
            contacts=contacts,
            seed=seed,
            client_id=client_id,
            client_secret=client_secret,
            static_tokens=tuple(static_token or ()),
            token_ttl=token_ttl,
            faults=FaultConfig(
                latency_ms=latency_ms,
                jitter_ms=jitter_ms,
                error_rate=error_rate,
                throttle_rate=throttle_rate,
                rate_limit=rate_limit,
                hang_rate=hang_rate,
                malformed_rate=malformed_rate,
            ),
        )
    except ValueError as exc:
        raise _die(str(exc), EXIT_CONFIG_OR_AUTH) from None

    def ready(url: str) -> None:
        console.print(f"sandbox listening on {url}", highlight=False, soft_wrap=True)
        sys.stdout.flush()

    try:
        serve_forever(config, on_ready=ready)
    except OSError as exc:
        raise _die(f"cannot serve on {host}:{port}: {exc}", EXIT_FAILED) from None


@app.command()
def demo(
    contacts: Annotated[int, typer.Option(min=10, help="contacts the sandbox seeds")] = 200,
    archive: Annotated[int, typer.Option(min=1, help="how many of them to archive")] = 25,
    workdir: Annotated[Path, typer.Option(help="where the demo's DuckDB file goes")] = Path("."),
    debug: DebugOpt = False,
) -> None:
    """Start the sandbox, queue some of its contacts, archive them, and show the audit trail."""
    from routera_archive_pipelines.demo import run_demo

    _setup_logging(debug)
    try:
        code = run_demo(console, contacts=contacts, archive=archive, workdir=workdir)
    except ConfigurationError as exc:
        raise _die(str(exc), EXIT_CONFIG_OR_AUTH) from None
    raise typer.Exit(code)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
