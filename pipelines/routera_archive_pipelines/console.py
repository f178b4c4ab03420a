"""Everything the CLI shows a person: progress while a run works, and its summary after.

On a terminal a rich progress bar; elsewhere (cron, Airflow logs) plain log lines, one every few
seconds, so a scheduler's log reads as well as a screen.
"""

import json
import logging
import re
import sys
import time
from collections import Counter
from datetime import date, datetime
from functools import cache

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from routera_archive.audit.status import DatasetStatus
from routera_archive.audit.verify import Verification
from routera_archive.dataset.leftovers import Cleanup
from routera_archive.dataset.redact import Redaction
from routera_archive.errors import one_line
from routera_archive.models import ArchiveOutcome, Status
from routera_archive.objects import ObjectType
from routera_archive.redaction import RedactingFilter, scrub
from routera_archive.run.doctor import Diagnosis
from routera_archive.run.result import RunObserver, RunReport

logger = logging.getLogger("routera_archive_pipelines.cli")


@cache
def stdout() -> Console:
    """The console every command prints its result on (and the progress bar's)."""
    return Console()


@cache
def stderr() -> Console:
    return Console(stderr=True)


def setup_logging(debug: bool) -> None:
    """The library's and the CLI's log lines on stderr; dlt and httpx only from WARNING on.

    On a terminal through rich, on the progress bar's console, so that lines print above the
    bar instead of through it; elsewhere (cron, a scheduler's log) one plain line each.
    dlt logs through a handler of its own (it does not propagate, and sets its own format on
    it): it gets one built here, so that its lines are redacted and short too.
    """
    level = logging.DEBUG if debug else logging.INFO
    root = logging.getLogger()
    root.handlers[:] = [_log_handler(debug)]
    root.setLevel(logging.WARNING)
    logging.getLogger("dlt").handlers[:] = [_log_handler(debug)]
    for name in ("routera_archive", "routera_archive_pipelines", "routera_archive_sandbox"):
        logging.getLogger(name).setLevel(level)
    if not debug:
        # dlt and httpx are chatty at INFO; their warnings still show.
        logging.getLogger("dlt").setLevel(logging.WARNING)
        logging.getLogger("httpx").setLevel(logging.WARNING)


def _log_handler(debug: bool) -> logging.Handler:
    handler: logging.Handler
    if stdout().is_terminal:
        # The message as text, never as markup: it may quote an id, a body or a field name.
        handler = RichHandler(
            console=stdout(), show_path=False, rich_tracebacks=debug, markup=False
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    if not debug:
        handler.addFilter(TracebackToOneLine())
    handler.addFilter(RedactingFilter())  # every line, whoever logs it (dlt, httpx, ours)
    return handler


class TracebackToOneLine(logging.Filter):
    """Without `--debug`, a record's traceback (dlt logs one for a trace it could not save)
    becomes the exception's own line at the end of the message: a person reads one line, and
    `--debug` shows the rest."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            record.msg = f"{record.getMessage()} ({type(error).__name__}: {one_line(str(error))})"
            record.args = None
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


# C0 and C1 control characters but tab and newline: ESC starts a terminal's escape sequences.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _shown(text: str) -> str:
    """Untrusted text as it may reach a terminal: no known secret, control characters as
    backslash-x escapes (a reason or an API's words could move the cursor or retitle the
    window)."""
    return _CONTROL.sub(lambda found: f"\\x{ord(found.group()):02x}", scrub(text))


def _plain(*parts: str | tuple[str, str]) -> Text:
    """A line from plain strings and (text, style) pairs: nothing in it is read as markup,
    no known secret is shown (an API's words may echo one: `redaction`), and no control
    character reaches the terminal."""
    return Text.assemble(
        *(_shown(part) if isinstance(part, str) else (_shown(part[0]), part[1]) for part in parts)
    )


STATUS_STYLES = {
    Status.ARCHIVED.value: "green",
    Status.ALREADY_ARCHIVED.value: "cyan",
    Status.NOT_FOUND.value: "yellow",
    Status.INVALID.value: "magenta",
    Status.DUPLICATE.value: "blue",
    Status.FAILED.value: "red",
}
PLAIN_PROGRESS_EVERY_S = 5.0


class ProgressObserver(RunObserver):
    """Shows a run's progress on a terminal, or as periodic log lines elsewhere."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.counts: Counter[str] = Counter()
        self.total = 0
        self.progress: Progress | None = None
        self.task_id: int | None = None
        self._last_line = 0.0
        self._started = time.monotonic()

    def on_start(self, report: RunReport, to_handle: int) -> None:
        self.total = to_handle
        if self.console.is_terminal:
            self.progress = Progress(
                TextColumn("[bold]archiving"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self.progress.start()
            self.task_id = self.progress.add_task("archive", total=to_handle, detail="", rate="")
        else:
            logger.info("run %s: %d requests to handle", report.run_id, to_handle)
        self._started = time.monotonic()

    def on_outcome(self, outcome: ArchiveOutcome) -> None:
        self.counts[outcome.status.value] += 1
        done = sum(self.counts.values())
        if self.progress is not None and self.task_id is not None:
            detail = " ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))
            self.progress.update(
                self.task_id,  # type: ignore[arg-type]
                completed=done,
                detail=detail,
                rate=self._rate_text(done),
            )
        elif time.monotonic() - self._last_line >= PLAIN_PROGRESS_EVERY_S or done == self.total:
            self._last_line = time.monotonic()
            logger.info(
                "progress %d/%d %s %s",
                done,
                self.total,
                " ".join(f"{k}={v}" for k, v in sorted(self.counts.items())),
                self._rate_text(done),
            )

    def _rate_text(self, done: int) -> str:
        """Requests settled per second so far, and the time the rest would take at that rate."""
        elapsed = time.monotonic() - self._started
        if done < 2 or elapsed <= 0:
            return ""
        rate = done / elapsed
        left = max(self.total - done, 0) / rate
        return f"{rate:.0f}/s, ~{left:.0f} s left"

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def print_report(console: Console, report: RunReport) -> None:
    """The summary every run ends with: what it did, what it found new, what needs attention
    (the error that ended it, if any, goes to stderr: `exits.error_line`).

    Ids, errors (which quote API bodies) and field names are untrusted text: they are printed
    as text, never read as markup."""
    title = f"routera-archive {report.mode} {report.run_id}"
    console.print(_plain((title, "bold"), f": {report.outcome}"))
    console.print(
        _plain(
            f"  destination {report.destination}, dataset {report.dataset}, API {report.base_url}"
        )
    )
    if report.loaded_pending_packages:
        console.print("  loaded the packages an interrupted run had left")
    if report.replayed_from_journal:
        console.print(
            f"  loaded {report.replayed_from_journal} outcomes from an interrupted run's journal"
        )
    if report.pending_at_start is not None:
        console.print(f"  pending at start: {report.pending_at_start}")
    console.print(_plain(f"  guardrail: {report.guardrail}"))

    if report.mode == "dry-run":
        _print_plan(console, report)
    elif report.handled:
        table = Table(title="outcomes", show_edge=False)
        table.add_column("status")
        table.add_column("requests", justify="right")
        for status in Status:
            count = report.counts.get(status.value, 0)
            if count:
                style = STATUS_STYLES[status.value]
                table.add_row(f"[{style}]{status.value}[/{style}]", str(count))
        table.add_row("[bold]total[/bold]", str(report.handled))
        console.print(table)
        if sorted(report.counts_by_type) != [ObjectType.CONTACTS.value]:
            # The type names are ours, never the queue's text (`NO_TYPE` for a row that
            # named none), and printed as text all the same.
            for kind, counts in sorted(report.counts_by_type.items()):
                shown = ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))
                console.print(_plain(f"  {kind}: {shown}"))
        console.print(f"  HTTP requests sent: {report.requests_sent}")
    for table_name, columns in sorted(report.new_columns.items()):
        console.print(_plain(f"  new columns in {table_name}: {', '.join(columns)}"))
    if report.type_changes:
        console.print(
            _plain(
                ("  fields whose values changed type (kept in variant columns): ", "yellow"),
                ", ".join(report.type_changes),
            )
        )
    for key, column in sorted(report.renamed_fields.items()):
        console.print(
            _plain(
                (
                    f"  field {key!r} collides with another after normalisation: stored in "
                    f"column {column}",
                    "yellow",
                )
            )
        )
    if report.aborted_packages:
        console.print(
            _plain(
                (
                    f"  aborted {report.aborted_packages} load package(s) the destination "
                    "refused; their outcomes were loaded from the journal",
                    "yellow",
                )
            )
        )
    if report.held_back_records:
        console.print(
            _plain(
                (
                    f"  {len(report.held_back_records)} records loaded with their own fields "
                    "held back (every value is in raw_response): ",
                    "yellow",
                ),
                "; ".join(report.held_back_reasons),
            )
        )
    if report.held_back_fields:
        console.print(
            _plain(
                ("  held back by the schema contract (values kept in raw_response only): ", "red"),
                ", ".join(report.held_back_fields),
            )
        )
    if report.failures:
        console.print(_plain(("failed requests (they stay pending and are tried again):", "red")))
        for request_id, contact_id, error in report.failures[:20]:
            console.print(_plain(f"  {request_id} contact {contact_id!r}: {error}"))
        if report.counts.get(Status.FAILED.value, 0) > 20:
            console.print(f"  … and {report.counts[Status.FAILED.value] - 20} more (archive_log)")
    for note in report.notes:
        console.print(_plain(("  note: ", "yellow"), note))
    if report.chain is not None:
        link = report.chain
        adopted = (
            f", adopting the rows of {len(link.adopted_run_ids)} earlier run(s)"
            if link.adopted_run_ids
            else ""
        )
        console.print(
            _plain(
                f"  chain head {link.chain_sha256} (link {link.chain_seq}, "
                f"{link.digested_rows} rows{adopted})"
            ),
            soft_wrap=True,
        )
    elif report.chain_error:
        console.print(_plain(("  hash chain: this run is not linked: ", "red"), report.chain_error))
    for done in report.retention:
        if done["row_count"]:
            console.print(
                _plain(
                    f"  redact_after_days: redacted {done['row_count']} rows "
                    f"({done['reason']}), link {done['chain_head']}"
                ),
                soft_wrap=True,
            )
    if report.retention_error:
        console.print(
            _plain(("  redact_after_days: nothing redacted: ", "red"), report.retention_error)
        )
    if report.run_row_error:
        console.print(
            _plain(
                ("  archive_runs: this run's row could not be written: ", "red"),
                report.run_row_error,
            )
        )
    if report.pipeline_name:
        console.print(
            _plain(f"  dlt pipeline {report.pipeline_name} (folder {report.pipeline_folder})"),
            soft_wrap=True,
        )
    console.print(f"  exit code {report.exit_code}")


def _print_plan(console: Console, report: RunReport) -> None:
    counts = ", ".join(f"{k} {v}" for k, v in sorted(report.plan_counts.items())) or "nothing"
    console.print(f"  would handle: {counts}")
    if not report.plan:
        return
    table = Table(title="plan (nothing was archived)", show_edge=False)
    shown = report.plan[:50]
    # The type column once the plan holds anything but contacts (as the queue spelled it:
    # a row naming no type shows what it named, as text).
    typed = any(planned.request.object_type is not ObjectType.CONTACTS for planned in shown)
    table.add_column("request_id")
    if typed:
        table.add_column("object_type")
    table.add_column("object_id" if typed else "contact_id")
    table.add_column("action")
    table.add_column("note")
    for planned in shown:
        request = planned.request
        # A type is one of ours, shown as is; a queued text that names none, quoted.
        named = request.type_name if request.object_type else repr(request.queued_type)
        kind = [Text(named)] if typed else []
        table.add_row(
            Text(request.request_id),
            *kind,
            Text(repr(request.object_id)),
            Text(planned.action),
            Text(planned.note or ""),
        )
    console.print(table)
    if len(report.plan) > 50 or sum(report.plan_counts.values()) > 50:
        console.print(f"  … {sum(report.plan_counts.values()) - 50} more not shown")


def print_status(console: Console, summary: DatasetStatus) -> None:
    """`status`: the backlog, each request's latest status, the last runs."""
    if summary.pipeline_name:
        console.print(
            _plain(f"dlt pipeline {summary.pipeline_name} (folder {summary.pipeline_folder})"),
            soft_wrap=True,
        )
    if summary.queue_error:
        console.print(_plain(f"queue: {summary.queue_error}"))
    else:
        console.print(f"pending requests: {summary.pending}")
    table = Table(title="requests by latest status", show_edge=False)
    table.add_column("status")
    table.add_column("requests", justify="right")
    for name, count in sorted(summary.statuses.items()):
        table.add_row(Text(name), str(count))
    console.print(table)
    by_type = status_by_type_table(summary)
    if by_type.row_count:
        console.print(by_type)
    runs = Table(title="last runs", show_edge=False)
    for column in ("run_id", "mode", "started_at", "outcome", "exit_code"):
        runs.add_column(column)
    for row in summary.runs:
        runs.add_row(
            *(
                Text(str(row[key]))
                for key in ("run_id", "mode", "started_at", "outcome", "exit_code")
            )
        )
    console.print(runs)


def print_verification(console: Console, result: Verification) -> None:
    """`verify`: intact, or each finding (table, key, check, detail), all as text."""
    head = result.head or "none"
    # soft_wrap: a hash stays on one line, to be copied whole.
    console.print(_plain(f"chain: {result.links} links, head {head}"), soft_wrap=True)
    console.print(f"rows checked: {result.rows_checked}")
    for note in result.notes:
        console.print(_plain(("  note: ", "yellow"), note))
    if result.intact:
        console.print(_plain(("intact", "bold green")))
        return
    table = Table(title=f"{result.finding_count} findings", show_edge=False)
    for column in ("table", "key", "check", "detail"):
        table.add_column(column)
    for finding in result.findings:
        table.add_row(
            *(
                _plain(value)
                for value in (finding.table, finding.key, finding.check, finding.detail)
            )
        )
    console.print(table)
    if result.finding_count > len(result.findings):
        console.print(f"  … and {result.finding_count - len(result.findings)} more")
    console.print(_plain(("not intact", "bold red")))


def status_by_type_table(summary: DatasetStatus) -> Table:
    """`status` by object type: pending requests, then each latest status, one row a type.

    Never two columns alone (type, count): scripts read the status table's `name │ count` rows
    as the latest statuses. A type is shown as the queue or the log holds it, as text.
    """
    statuses = sorted({name for counts in summary.statuses_by_type.values() for name in counts})
    table = Table(title="by object type (pending, and requests by latest status)", show_edge=False)
    for column in ("type", "pending", "with an outcome", *statuses):
        table.add_column(column, justify="left" if column == "type" else "right")
    kinds = sorted({*summary.pending_by_type, *summary.statuses_by_type})
    for kind in kinds:
        counts = summary.statuses_by_type.get(kind, Counter())
        pending = summary.pending_by_type.get(kind, 0) if summary.queue_error is None else None
        table.add_row(
            # A queued type is anyone's text: control characters shown escaped (repr).
            Text(kind if kind.isprintable() else repr(kind)),
            "—" if pending is None else str(pending),
            str(sum(counts.values())),
            *(str(counts.get(name, 0)) for name in statuses),
        )
    return table


def print_redactions(console: Console, done: list[Redaction]) -> None:
    """`redact`: each redaction's rows and columns (never their values), its link, and the
    copies it removed."""
    if not done:
        console.print("nothing to redact")
        return
    for item in done:
        if item.cleanup_only:
            console.print("removed the copies a stopped redaction had left")
            _print_cleanup(console, item.cleanup)
            continue
        if item.row_count == 0:
            console.print(
                _plain(
                    f"nothing to redact: the {item.matched} rows selected hold no personal data "
                    "any more"
                    if item.matched
                    else "nothing to redact: no row matches (no such record or request in "
                    "the audit trail)"
                )
            )
            continue
        verb = "would redact" if item.dry_run else "redacted"
        resumed = (
            f" (redaction {item.redaction_id}, killed before its link)"
            if item.finished_late
            else ""
        )
        console.print(
            _plain(f"{verb} {item.row_count} rows{resumed}: ", (item.request.why(), "bold"))
        )
        for table_name, keys in item.unverified.items():
            console.print(
                _plain(
                    (
                        f"  {table_name}: {len(keys)} rows did not verify before the redaction ",
                        "red",
                    ),
                    "(edited since they were chained): redacted, not chained again; "
                    f"verify still reports them: {', '.join(keys[:20])}",
                )
            )
        for table_name, columns in item.columns.items():
            rows = item.rows.get(table_name, [])
            console.print(_plain(f"  {table_name}: {len(rows)} rows; columns {', '.join(columns)}"))
        if item.dry_run:
            for table_name, keys in item.rows.items():
                shown = ", ".join(keys[:20]) + (
                    f", … {len(keys) - 20} more" if len(keys) > 20 else ""
                )
                console.print(_plain(f"  {table_name} ids: {shown}"))
            continue
        if item.link is not None:
            console.print(
                _plain(f"chain head {item.link.chain_sha256} (link {item.link.chain_seq})"),
                soft_wrap=True,
            )
        _print_cleanup(console, item.cleanup)


def _print_cleanup(console: Console, cleanup: Cleanup | None) -> None:
    if cleanup is None:
        return
    parts = [
        f"{len(cleanup.staging_tables_emptied)} staging tables emptied",
        f"{cleanup.package_files_removed} load package files removed",
    ]
    if cleanup.duckdb_bytes_after is not None:
        parts.append(
            f"DuckDB file rewritten in {cleanup.compact_seconds:.1f} s "
            f"({(cleanup.duckdb_bytes_before or 0) / 1e6:.1f} MB → "
            f"{cleanup.duckdb_bytes_after / 1e6:.1f} MB)"
        )
    if cleanup.vacuumed_tables:
        parts.append(f"{len(cleanup.vacuumed_tables)} tables vacuumed (VACUUM FULL)")
    console.print(_plain("no copy left: " + "; ".join(parts)))


def _json_value(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def print_json(payload: object) -> None:
    """One JSON object on stdout, for a scheduler: timestamps ISO 8601, nothing else printed."""
    sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False, default=_json_value) + "\n")
    sys.stdout.flush()


DIAGNOSIS_MARKS = {"ok": ("✓", "green"), "failed": ("✗", "red"), "warning": ("!", "yellow")}


def print_diagnosis(console: Console, found: Diagnosis) -> None:
    """`doctor`: one line per check, its state and what it found or how to fix it."""
    for check in found.checks:
        mark, style = DIAGNOSIS_MARKS.get(check.state, ("-", "dim"))
        console.print(_plain((f"{mark} {check.name}: ", style), check.detail), soft_wrap=True)
    failed = [check.name for check in found.checks if check.state == "failed"]
    verdict = "ready to run" if not failed else f"not ready: {', '.join(failed)}"
    console.print(_plain((verdict, "bold")), f" (exit code {found.exit_code})")
