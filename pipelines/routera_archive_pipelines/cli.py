"""`routera-archive`: the command line. It owns the terminal; the library only logs.

It starts at once: this module imports typer and the standard library only, and each command
imports what it needs when it runs, so `--help`, `--version`, every command's `--help` and shell
completion never import dlt, duckdb or httpx (bench/RESULTS.md has the times). Every error
leaves through `exits.one_way_out`: one line, and the exit code of `routera_archive.errors`.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from routera_archive import timeline
from routera_archive.names import DATASET_NAME as DEFAULT_DATASET
from routera_archive.names import DEFAULT_DESTINATION

# Set by a command whose work is all durable once it returns (`run`): the process may then end
# without the interpreter's teardown (`exits.leave_now`).
_leave_fast = False

app = typer.Typer(
    name="routera-archive",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain help (click's), without rich: instant, and flags without a `<bool>` placeholder.
    rich_markup_mode=None,
    add_completion=True,
    context_settings={"max_content_width": 100},
)


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"routera-archive {version('routera-archive')}")
        raise typer.Exit(0)


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Archive Routera contacts listed in a queue table and keep every archived record.

    Settings come from .dlt/config.toml ([sources.routera]), .dlt/secrets.toml and
    SOURCES__ROUTERA__* environment variables; options below win over both.
    """


DestinationOpt = Annotated[
    str,
    typer.Option("--destination", metavar="NAME", help="dlt destination (duckdb, postgres, ...)."),
]
DatasetOpt = Annotated[
    str, typer.Option("--dataset", metavar="NAME", help="Dataset (schema) in the destination.")
]
QueueOpt = Annotated[
    str | None,
    typer.Option("--queue-table", metavar="TABLE", help="The queue table (queue_table)."),
]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Log everything, with tracebacks.")]


@contextmanager
def _command(debug: bool, *, dlt_used: bool = True) -> Iterator[None]:
    """What every command's body runs in: logging to the terminal, dlt's defaults, and the one
    way out for errors (`exits.one_way_out`)."""
    from routera_archive_pipelines.console import setup_logging
    from routera_archive_pipelines.exits import one_way_out

    setup_logging(debug)
    if dlt_used:
        from routera_archive_pipelines.dlt_defaults import apply_dlt_defaults

        apply_dlt_defaults()
    with one_way_out(debug):
        yield


def _chosen_format(given: str, *allowed: str) -> str:
    """`--format`'s value, one of `allowed` in any case, or a ConfigurationError (exit 2)."""
    from routera_archive.errors import ConfigurationError

    chosen = given.strip().lower()
    if chosen not in allowed:
        names = ", ".join(allowed[:-1]) + f" or {allowed[-1]}"
        raise ConfigurationError(f"--format {given!r}: use {names}")
    return chosen


def _queue_table(option: str | None) -> str:
    """`--queue-table`, else the `queue_table` setting (no credentials needed)."""
    from routera_archive.config import resolve_dataset_config

    return resolve_dataset_config(queue_table=option).queue_table


@app.command(epilog="Example: routera-archive run --dry-run; then routera-archive run")
def run(
    base_url: Annotated[
        str | None, typer.Option(metavar="URL", help="Routera API base URL (base_url).")
    ] = None,
    destination: DestinationOpt = DEFAULT_DESTINATION,
    dataset: DatasetOpt = DEFAULT_DATASET,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the plan; call nothing.")
    ] = False,
    limit: Annotated[
        int | None, typer.Option(min=1, metavar="N", help="Handle at most N requests.")
    ] = None,
    max_archives: Annotated[
        int | None,
        typer.Option(min=0, metavar="N", help="Refuse a run with more requests (max_archives)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Run past the guardrails.")] = False,
    concurrency: Annotated[
        int | None,
        typer.Option(metavar="N", help="Requests in flight, 1 to 256 (concurrency)."),
    ] = None,
    rps: Annotated[
        float | None,
        typer.Option(min=0, metavar="RATE", help="Requests per second, 0: no limit (rps)."),
    ] = None,
    queue_table: QueueOpt = None,
    shard: Annotated[
        str | None,
        typer.Option(
            metavar="I/N",
            help="Only the requests whose contact id hashes to worker I of N (0-based).",
        ),
    ] = None,
    properties: Annotated[
        str | None,
        typer.Option(
            metavar="A,B",
            help="Contact custom fields to read before each DELETE, comma-separated (properties;"
            " other types' are set in [sources.routera.properties]).",
        ),
    ] = None,
    output_format: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="FORMAT",
            help="text, or json: the run's archive_runs row as one JSON object on stdout.",
        ),
    ] = "text",
    debug: DebugOpt = False,
) -> None:
    """Archive every pending request in the queue and load the records into the audit trail."""
    from routera_archive.calls.process import EarlyWorker

    # The call worker's start overlaps dlt's import; a worker no run took is ended on the way out.
    with EarlyWorker.start(wanted=not dry_run) as early, _command(debug):
        timeline.mark("setup")
        from routera_archive.config import resolve_source_config, with_contact_properties
        from routera_archive.dataset.queue import Shard
        from routera_archive.errors import ConfigurationError
        from routera_archive.run.result import stored_run_row
        from routera_archive.run.runner import ArchiveRun, RunOptions
        from routera_archive_pipelines.console import (
            ProgressObserver,
            print_json,
            print_report,
            stderr,
            stdout,
        )
        from routera_archive_pipelines.factory import make_pipeline
        from routera_archive_pipelines.stopping import GracefulStop

        timeline.mark("imports")
        chosen = _chosen_format(output_format, "text", "json")
        try:
            worker = None if shard is None else Shard.parse(shard)
        except ValueError as exc:
            raise ConfigurationError(f"--shard: {exc}") from None
        config = resolve_source_config(
            base_url=base_url,
            max_archives=max_archives,
            concurrency=concurrency,
            rps=rps,
            queue_table=queue_table,
        )
        if properties is not None:
            # The contacts' names, the other types' as configured: `--properties` must not
            # silently drop `[sources.routera.properties] companies`. Each name as typed: the
            # setting's own check refuses a blank or padded one.
            config.properties = with_contact_properties(config, properties.split(","))
            config.validate()
        pipeline = make_pipeline(destination, dataset, shard=worker)
        timeline.mark("pipeline")
        options = RunOptions(dry_run=dry_run, limit=limit, force=force, shard=worker)
        # JSON on stdout alone: the progress and the summary go to stderr then.
        console = stdout() if chosen == "text" else stderr()
        observer = ProgressObserver(console)
        with GracefulStop() as stop:
            try:
                report = ArchiveRun(
                    pipeline, config, options, observer=observer, stop=stop, early_worker=early
                ).execute()
            finally:
                observer.close()
        timeline.mark("executed")
        print_report(console, report)
        if chosen == "json":
            print_json(stored_run_row(report))
        if report.error:
            from routera_archive.errors import NEXT_STEPS
            from routera_archive_pipelines.exits import error_line

            error_line(report.error, NEXT_STEPS.get(report.exit_code))
        timeline.mark("printed")
    global _leave_fast
    _leave_fast = True
    raise typer.Exit(report.exit_code)


@app.command(
    epilog='Example: routera-archive enqueue ids.txt --requested-by jane@acme.com --reason "GDPR"'
)
def enqueue(
    file: Annotated[
        str, typer.Argument(metavar="FILE", help="Ids one a line, or a CSV; - for stdin.")
    ] = "-",
    requested_by: Annotated[str | None, typer.Option(metavar="WHO", help="Who asks.")] = None,
    reason: Annotated[str | None, typer.Option(metavar="WHY", help="Why.")] = None,
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Drop ids that can never be valid.")
    ] = False,
    object_type: Annotated[
        str,
        typer.Option(
            metavar="TYPE",
            help="contacts, companies, deals or tickets: the type of every id whose row names "
            "none (a CSV may carry an object_type column).",
        ),
    ] = "contacts",
    destination: DestinationOpt = DEFAULT_DESTINATION,
    dataset: DatasetOpt = DEFAULT_DATASET,
    queue_table: QueueOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Add record ids (contacts unless said otherwise) to the queue table."""
    import sys

    with _command(debug):
        from routera_archive.dataset.enqueue import enqueue as enqueue_rows
        from routera_archive.dataset.enqueue import parse_ids
        from routera_archive.errors import ConfigurationError
        from routera_archive.objects import NotAnObjectType, parse_object_type
        from routera_archive_pipelines.console import stdout
        from routera_archive_pipelines.factory import enqueue_pipeline_name_for, make_pipeline

        kind = parse_object_type(object_type)
        if isinstance(kind, NotAnObjectType):
            raise ConfigurationError(f"--object-type: {kind.reason}")
        try:
            text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"cannot read {file}: {exc}") from None
        parsed = parse_ids(text)
        table = _queue_table(queue_table)
        pipeline = make_pipeline(
            destination, dataset, pipeline_name=enqueue_pipeline_name_for(destination, dataset)
        )
        count = enqueue_rows(
            pipeline,
            parsed.rows,
            requested_by=requested_by,
            reason=reason,
            queue_table=table,
            skip_invalid=skip_invalid,
            object_type=kind,
        )
        skipped = f" ({parsed.skipped_blank} blank lines skipped)" if parsed.skipped_blank else ""
        stdout().print(f"enqueued {count} requests into {dataset}.{table}{skipped}", markup=False)


@app.command(epilog="Example: routera-archive status --destination postgres")
def status(
    destination: DestinationOpt = DEFAULT_DESTINATION,
    dataset: DatasetOpt = DEFAULT_DATASET,
    queue_table: QueueOpt = None,
    output_format: Annotated[
        str, typer.Option("--format", metavar="FORMAT", help="text or json.")
    ] = "text",
    debug: DebugOpt = False,
) -> None:
    """Pending and settled counts (by each request's latest outcome), and the last runs."""
    with _command(debug):
        from routera_archive.audit.status import dataset_status, status_dict
        from routera_archive_pipelines.console import print_json, print_status, stdout
        from routera_archive_pipelines.factory import make_pipeline

        chosen = _chosen_format(output_format, "text", "json")
        table = _queue_table(queue_table)
        summary = dataset_status(make_pipeline(destination, dataset), queue_table=table)
        if chosen == "json":
            print_json(status_dict(summary))
        else:
            print_status(stdout(), summary)


@app.command(epilog="Example: routera-archive doctor --destination postgres; echo $?")
def doctor(
    base_url: Annotated[
        str | None, typer.Option(metavar="URL", help="Routera API base URL (base_url).")
    ] = None,
    destination: DestinationOpt = DEFAULT_DESTINATION,
    dataset: DatasetOpt = DEFAULT_DATASET,
    queue_table: QueueOpt = None,
    output_format: Annotated[
        str, typer.Option("--format", metavar="FORMAT", help="text or json.")
    ] = "text",
    debug: DebugOpt = False,
) -> None:
    """Check a setup without archiving anything: settings and credentials (a token is
    obtained), the API (one GET per type with properties), the destination and the queue
    table, the locks, the pipeline folder, and what a crash left. Exit codes as `run`."""
    with _command(debug):
        from routera_archive.run.doctor import diagnose
        from routera_archive_pipelines.console import print_diagnosis, print_json, stdout
        from routera_archive_pipelines.factory import make_pipeline

        chosen = _chosen_format(output_format, "text", "json")
        found = diagnose(
            lambda: make_pipeline(destination, dataset), queue_table=queue_table, base_url=base_url
        )
        if chosen == "json":
            print_json(found.as_dict())
        else:
            print_diagnosis(stdout(), found)
    raise typer.Exit(found.exit_code)


@app.command(epilog="Example: routera-archive verify --expect-head 3f2a...; echo $?")
def verify(
    destination: DestinationOpt = DEFAULT_DESTINATION,
    dataset: DatasetOpt = DEFAULT_DATASET,
    expect_head: Annotated[
        str | None,
        typer.Option(
            metavar="HASH",
            help="Also check that the chain passes through this head (one you kept elsewhere).",
        ),
    ] = None,
    output_format: Annotated[
        str, typer.Option("--format", metavar="FORMAT", help="text or json.")
    ] = "text",
    record: Annotated[
        bool,
        typer.Option(
            "--record/--no-record",
            help="Keep the verdict in the dataset's `verifications` table (for the report); "
            "--no-record for read-only credentials.",
        ),
    ] = True,
    debug: DebugOpt = False,
) -> None:
    """Recompute every hash of the audit trail and its chain: `intact` (exit 0) or what differs
    (exit 1): the table, the row's key and the check that failed.

    A rewrite of the tables with every hash recomputed is caught only by --expect-head with a
    head kept outside the dataset (each run prints its head).
    """
    with _command(debug):
        from routera_archive.audit.verify import verify_dataset
        from routera_archive.errors import ExitCode
        from routera_archive_pipelines.console import print_json, print_verification, stdout
        from routera_archive_pipelines.factory import make_pipeline

        chosen = _chosen_format(output_format, "text", "json")
        pipeline = make_pipeline(destination, dataset)
        result = verify_dataset(pipeline, expect_head=expect_head)
        if record:
            _record_verdict(pipeline, result.as_dict())
        if chosen == "json":
            print_json(result.as_dict())
        else:
            print_verification(stdout(), result)
    raise typer.Exit(ExitCode.OK if result.intact else ExitCode.FAILED)


@app.command(
    epilog="Example: routera-archive evidence --contact-id 0b7e... --format html -o e.html"
)
def evidence(
    destination: DestinationOpt = DEFAULT_DESTINATION,
    dataset: DatasetOpt = DEFAULT_DATASET,
    contact_id: Annotated[
        str | None, typer.Option("--contact-id", metavar="ID", help="A contact.")
    ] = None,
    object_id: Annotated[
        str | None,
        typer.Option("--object-id", metavar="ID", help="A record of --object-type."),
    ] = None,
    object_type: Annotated[
        str,
        typer.Option(
            "--object-type", metavar="TYPE", help="contacts, companies, deals or tickets."
        ),
    ] = "contacts",
    request_id: Annotated[
        str | None, typer.Option("--request-id", metavar="ID", help="A request.")
    ] = None,
    output_format: Annotated[
        str, typer.Option("--format", metavar="FORMAT", help="text, json or html.")
    ] = "text",
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="FILE", help="The file to write (html: needed)."),
    ] = None,
    debug: DebugOpt = False,
) -> None:
    """One subject's whole story, for an erasure audit: every request (who, why, when), every
    outcome, the record the API returned with its hashes and whether they verify, the runs
    (connector version, chain head) and every redaction since."""
    with _command(debug):
        from routera_archive.audit.evidence import build_evidence
        from routera_archive.errors import ConfigurationError
        from routera_archive.objects import NotAnObjectType, parse_object_type
        from routera_archive_pipelines.console import stdout
        from routera_archive_pipelines.evidence_render import (
            print_evidence,
            render_html,
            render_json,
        )
        from routera_archive_pipelines.factory import make_pipeline
        from routera_archive_pipelines.report_render import write_atomically

        chosen = _chosen_format(output_format, "text", "json", "html")
        if chosen == "html" and output is None:
            raise ConfigurationError("--format html needs --output FILE")
        if contact_id is not None and object_id is not None:
            raise ConfigurationError("give --contact-id or --object-id, not both")
        record = contact_id if contact_id is not None else object_id
        kind = parse_object_type("contacts" if contact_id is not None else object_type)
        if isinstance(kind, NotAnObjectType):
            raise ConfigurationError(f"--object-type: {kind.reason}")
        found = build_evidence(
            make_pipeline(destination, dataset),
            object_id=None if record is None else record.strip(),
            object_type=kind,
            request_id=None if request_id is None else request_id.strip(),
        )
        if chosen == "text":
            print_evidence(stdout(), found)
            return
        text = render_html(found) if chosen == "html" else render_json(found)
        if output is None:
            import sys

            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            write_atomically(output, text)
            stdout().print(f"wrote {output}", markup=False)


@app.command(
    epilog="Example: routera-archive redact --contact-id 0b7e... --reason 'GDPR art. 17' --dry-run"
)
def redact(
    destination: DestinationOpt = DEFAULT_DESTINATION,
    dataset: DatasetOpt = DEFAULT_DATASET,
    contact_id: Annotated[
        list[str] | None,
        typer.Option("--contact-id", metavar="ID", help="A contact's records (repeatable)."),
    ] = None,
    request_id: Annotated[
        list[str] | None,
        typer.Option("--request-id", metavar="ID", help="A request's records (repeatable)."),
    ] = None,
    older_than: Annotated[
        int | None,
        typer.Option(
            "--older-than", metavar="DAYS", min=1, help="Records archived more than DAYS ago."
        ),
    ] = None,
    reason: Annotated[
        str | None, typer.Option(metavar="TEXT", help="Why, as the redactions table keeps it.")
    ] = None,
    by: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="Who asks (default: this system user)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show which rows and columns; change nothing.")
    ] = False,
    output_format: Annotated[
        str, typer.Option("--format", metavar="FORMAT", help="text or json.")
    ] = "text",
    debug: DebugOpt = False,
) -> None:
    """Remove personal data (personal_fields) from archived records, on the record.

    The fields are set to NULL in the audit tables and replaced by "[redacted]" inside the
    stored answers; the redaction is a row of `redactions` and a link of the hash chain, so
    `verify` stays intact. No copy is left: staging tables, dlt's packages and trace, and the
    DuckDB file (rewritten) or PostgreSQL's dead tuples (VACUUM FULL). A redaction that was
    killed is finished by the next one.
    """
    with _command(debug):
        from routera_archive.config import resolve_dataset_config
        from routera_archive.dataset.redact import RedactionRequest
        from routera_archive.errors import ConfigurationError
        from routera_archive.run.retention import redact_dataset
        from routera_archive_pipelines.console import print_json, print_redactions, stdout
        from routera_archive_pipelines.factory import dataset_folders, make_pipeline

        chosen = _chosen_format(output_format, "text", "json")
        ids = [value.strip() for value in contact_id or [] if value.strip()]
        requests = [value.strip() for value in request_id or [] if value.strip()]
        config = resolve_dataset_config()
        pipeline = make_pipeline(destination, dataset)
        request = RedactionRequest(
            contact_ids=tuple(ids),
            request_ids=tuple(requests),
            older_than_days=older_than,
            redacted_by=by or _system_user(),
            reason=reason,
        )
        done = redact_dataset(
            pipeline,
            request,
            personal_fields=config.redacted_fields,
            dry_run=dry_run,
            folders=dataset_folders(pipeline, destination, dataset),
        )
        if request.empty and not done:
            raise ConfigurationError(
                "say what to redact: --contact-id, --request-id or --older-than"
            )
        if chosen == "json":
            print_json({"redactions": [item.summary() for item in done]})
        else:
            print_redactions(stdout(), done)


def _record_verdict(pipeline: Any, verdict: dict[str, Any]) -> None:
    """Keep a verdict for the report; one that cannot be kept is said, and changes no exit."""
    import logging
    from datetime import UTC, datetime

    from routera_archive.dataset.verifications import record_verification
    from routera_archive.errors import one_line

    try:
        record_verification(
            pipeline, verdict, verified_at=datetime.now(UTC), verified_by=_system_user()
        )
    except Exception as exc:  # read-only credentials, a busy file: the verdict stands
        logging.getLogger("routera_archive").warning(
            "the verdict was not recorded in `verifications` (%s); --no-record skips this",
            one_line(str(exc)),
        )


def _system_user() -> str:
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@app.command(epilog="Example: routera-archive report --since 2026-06-01 --format html -o june.html")
def report(
    destination: DestinationOpt = DEFAULT_DESTINATION,
    dataset: DatasetOpt = DEFAULT_DATASET,
    queue_table: QueueOpt = None,
    since: Annotated[
        str | None,
        typer.Option(
            metavar="WHEN", help="From this date or ISO timestamp (UTC unless it has an offset)."
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(metavar="WHEN", help="Up to this date (the whole day) or ISO timestamp."),
    ] = None,
    statuses: Annotated[
        list[str] | None,
        typer.Option(
            "--status", metavar="STATUS", help="Only requests whose latest status is this."
        ),
    ] = None,
    output_format: Annotated[
        str, typer.Option("--format", metavar="FORMAT", help="table, json, csv or html.")
    ] = "table",
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="FILE", help="Write here (required for html)."),
    ] = None,
    last_runs: Annotated[
        int, typer.Option("--runs", min=1, metavar="N", help="How many runs to list.")
    ] = 20,
    max_failures: Annotated[
        int, typer.Option("--max-failures", min=1, metavar="N", help="Most failures to list.")
    ] = 500,
    max_records: Annotated[
        int,
        typer.Option("--max-records", min=1, metavar="N", help="Most archived records to list."),
    ] = 500,
    run_id: Annotated[
        str | None,
        typer.Option("--run-id", metavar="ID", help="One run's archives, outcomes and details."),
    ] = None,
    debug: DebugOpt = False,
) -> None:
    """Audit report: archives per day and per person, outcomes, failures, backlog, fields, runs.

    --since/--until filter archives by `archived` and outcomes and failures by `processed_at`;
    the backlog, the custom fields and the runs are shown as they are now.
    """
    with _command(debug):
        from routera_archive.audit.report import ReportFilters, ReportOptionError, build_report
        from routera_archive.errors import ConfigurationError
        from routera_archive_pipelines.console import stderr, stdout
        from routera_archive_pipelines.factory import make_pipeline
        from routera_archive_pipelines.report_render import (
            ReportFormat,
            print_report,
            render,
            write_atomically,
        )

        try:
            chosen = ReportFormat(output_format.strip().lower())
        except ValueError:
            raise ConfigurationError(
                f"--format {output_format!r}: use table, json, csv or html"
            ) from None
        try:
            filters = ReportFilters.from_options(since, until, statuses, run_id)
        except ReportOptionError as exc:
            raise ConfigurationError(str(exc)) from None
        if chosen is ReportFormat.HTML and output is None:
            raise ConfigurationError("--format html needs --output FILE")
        if chosen is ReportFormat.TABLE and output is not None:
            raise ConfigurationError("--output needs --format json, csv or html")
        if output is not None and not output.parent.resolve().is_dir():
            raise ConfigurationError(f"--output {output}: no directory {output.parent}")
        table = _queue_table(queue_table)
        audit = build_report(
            make_pipeline(destination, dataset),
            filters,
            queue_table=table,
            last_runs=last_runs,
            max_failures=max_failures,
            max_records=max_records,
        )
        if chosen is ReportFormat.TABLE:
            print_report(stdout(), audit)
            return
        text = render(audit, chosen)
        if output is None:
            import sys

            sys.stdout.write(text)
            sys.stdout.flush()
            return
        write_atomically(output, text)
        stderr().print(f"wrote the {chosen.value} report to {output}", markup=False)


class AnswerFieldsOption(StrEnum):
    """`sandbox --answer-fields` (the sandbox's own `AnswerFields`, kept out of this module's
    imports so that `--help` stays fast)."""

    ALL = "all"
    DEFAULT = "default"


@app.command(epilog="Example: routera-archive sandbox --port 8765 --latency-ms 50")
def sandbox(
    host: Annotated[str, typer.Option(metavar="ADDRESS", help="Address to listen on.")] = (
        "127.0.0.1"
    ),
    port: Annotated[
        int, typer.Option(min=0, max=65535, metavar="PORT", help="Port (0: any free one).")
    ] = 8765,
    contacts: Annotated[int, typer.Option(min=0, metavar="N", help="Contacts to seed.")] = 200,
    companies: Annotated[int, typer.Option(min=0, metavar="N", help="Companies to seed.")] = 50,
    deals: Annotated[int, typer.Option(min=0, metavar="N", help="Deals to seed.")] = 50,
    tickets: Annotated[int, typer.Option(min=0, metavar="N", help="Tickets to seed.")] = 50,
    seed: Annotated[int, typer.Option(metavar="N", help="Seed of the data and the faults.")] = 0,
    client_id: Annotated[
        str, typer.Option(metavar="ID", help="OAuth client id it accepts.")
    ] = "sandbox-client",
    client_secret: Annotated[
        str, typer.Option(metavar="SECRET", help="OAuth client secret it accepts.")
    ] = "sandbox-secret",
    static_token: Annotated[
        list[str] | None,
        typer.Option(metavar="TOKEN", help="A bearer token accepted as is (repeatable)."),
    ] = None,
    token_ttl: Annotated[
        float, typer.Option(min=0.001, metavar="SECONDS", help="How long a token lives.")
    ] = 3600.0,
    answer_fields: Annotated[
        AnswerFieldsOption,
        typer.Option(
            help="What an answer holds: every field, or Routera's default properties only "
            "(plus those asked for with ?properties= on reads), as its reference reads."
        ),
    ] = AnswerFieldsOption.ALL,
    latency_ms: Annotated[
        float, typer.Option(min=0, metavar="MS", help="Latency added to each answer.")
    ] = 0.0,
    jitter_ms: Annotated[
        float, typer.Option(min=0, metavar="MS", help="Random extra latency, up to.")
    ] = 0.0,
    error_rate: Annotated[
        float, typer.Option(min=0, max=1, metavar="SHARE", help="Share of 500/502/503.")
    ] = 0.0,
    throttle_rate: Annotated[
        float, typer.Option(min=0, max=1, metavar="SHARE", help="Share of 429 + Retry-After.")
    ] = 0.0,
    rate_limit: Annotated[
        float, typer.Option(min=0, metavar="RATE", help="Requests/s before 429 (0: off).")
    ] = 0.0,
    hang_rate: Annotated[
        float, typer.Option(min=0, max=1, metavar="SHARE", help="Share never answered.")
    ] = 0.0,
    malformed_rate: Annotated[
        float, typer.Option(min=0, max=1, metavar="SHARE", help="Share with a broken body.")
    ] = 0.0,
) -> None:
    """Serve a local Routera-compatible API (contacts, companies, deals, tickets) until stopped
    (Ctrl-C or SIGTERM)."""
    with _command(False, dlt_used=False):
        import sys

        from routera_archive.errors import ConfigurationError, RetriableError
        from routera_archive_pipelines.console import stdout
        from routera_archive_sandbox import FaultConfig, SandboxConfig
        from routera_archive_sandbox.server import serve_forever

        try:
            config = SandboxConfig(
                host=host,
                port=port,
                contacts=contacts,
                companies=companies,
                deals=deals,
                tickets=tickets,
                seed=seed,
                client_id=client_id,
                client_secret=client_secret,
                static_tokens=tuple(static_token or ()),
                token_ttl=token_ttl,
                answer_fields=answer_fields.value,
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
            raise ConfigurationError(str(exc)) from None

        def ready(url: str) -> None:
            stdout().print(f"sandbox listening on {url}", markup=False, soft_wrap=True)
            sys.stdout.flush()

        try:
            serve_forever(config, on_ready=ready)
        except OSError as exc:
            raise RetriableError(f"cannot serve on {host}:{port}: {exc}") from None


@app.command(epilog="Example: routera-archive demo --archive 25")
def demo(
    contacts: Annotated[
        int, typer.Option(min=10, metavar="N", help="Contacts the sandbox seeds.")
    ] = 200,
    archive: Annotated[
        int, typer.Option(min=1, metavar="N", help="How many of them to archive.")
    ] = 25,
    workdir: Annotated[
        Path, typer.Option(metavar="DIR", help="Where the demo's DuckDB file goes.")
    ] = Path("."),
    debug: DebugOpt = False,
) -> None:
    """Start the sandbox, queue some of its contacts, archive them, and show the audit trail."""
    with _command(debug):
        from routera_archive_pipelines.console import stdout
        from routera_archive_pipelines.demo import run_demo

        code = run_demo(stdout(), contacts=contacts, archive=archive, workdir=workdir)
    raise typer.Exit(code)


def main() -> None:
    """The console script: the app, with click's own errors (a bad option, a missing value)
    in the one-line form every other error has, exit 2."""
    import sys

    timeline.mark("cli")
    # typer (0.2x) vendors click; these are its classes, not an installed click's.
    from typer._click.exceptions import ClickException, NoArgsIsHelpError

    from routera_archive_pipelines.exits import error_line, leave_now

    try:
        code = app(standalone_mode=False)
    except NoArgsIsHelpError as exc:  # `routera-archive` alone: the help, as click shows it
        exc.show()
        sys.exit(exc.exit_code)
    except ClickException as exc:
        context = getattr(exc, "ctx", None)
        command = context.command_path if context is not None else "routera-archive"
        error_line(f"{exc.format_message()} (see {command} --help)")
        sys.exit(exc.exit_code)
    except typer.Abort:
        error_line("aborted")
        sys.exit(1)
    timeline.mark("exit")
    if _leave_fast:
        leave_now(code if isinstance(code, int) else 0)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
