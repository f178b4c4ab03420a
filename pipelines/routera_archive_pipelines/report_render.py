"""The audit report in four shapes: rich tables, JSON, CSV and one self-contained HTML file.

Every value in a report may come from outside (a custom field's name, a reason typed into a
dbt model, an error body quoted from the API), so each shape neutralises what would be code in
its medium: HTML escapes everything and forbids scripts with a Content-Security-Policy, the
terminal shows control characters as `\\xNN` and never reads values as rich markup. CSV and
JSON carry values exactly (they are data for tools; see README "Audit queries").
"""

import csv
import html
import io
import json
import math
import re
from datetime import date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from routera_archive.audit.report import (
    ARCHIVES_PER_DAY,
    ARCHIVES_PER_DAY_BY_TYPE,
    BACKLOG,
    FAILURES,
    HASH_CHAIN,
    LAST_VERIFICATION,
    OUTCOMES,
    REDACTIONS,
    SECTION_KEYS,
    AuditReport,
    Section,
)


class ReportFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"
    HTML = "html"


# C0 and C1 control characters (ESC starts terminal escape sequences), but not tab or newline.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _visible_controls(text: str) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _iso(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def display(value: Any) -> str:
    """A value as a person reads it (terminal and HTML)."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S") + "Z"
    if isinstance(value, date):
        return value.isoformat()
    return _visible_controls(str(value))


# -- JSON -------------------------------------------------------------------------------------


def report_dict(report: AuditReport) -> dict[str, Any]:
    """The report as JSON-ready values: a `report` object, then one key per section.

    Sections are lists of row objects, except `backlog`, which is one object. Timestamps are
    ISO 8601 in UTC; missing values are null.
    """
    meta = {
        "generated_at": _iso(report.generated_at),
        "dataset": report.dataset,
        "destination": report.destination,
        "filters": {k: _iso(v) for k, v in report.filters.as_dict().items()},
        "notes": {s.key: s.note for s in report.sections.values() if s.note},
    }
    result: dict[str, Any] = {"report": meta}
    for key in SECTION_KEYS:
        rows = [{k: _iso(v) for k, v in row.items()} for row in report.sections[key].rows]
        if key == BACKLOG:
            section = report.sections[key]
            result[key] = rows[0] if rows else dict.fromkeys(section.columns)
        else:
            result[key] = rows
    return result


def render_json(report: AuditReport) -> str:
    return json.dumps(report_dict(report), indent=2, ensure_ascii=False) + "\n"


# -- CSV --------------------------------------------------------------------------------------

META_COLUMNS = ("generated_at", "dataset", "destination", "since", "before", "statuses")


def csv_columns(report: AuditReport) -> list[str]:
    """`section`, then every section's columns in order of first appearance (shared names,
    like `archives` or `contact_id`, share one column)."""
    columns = ["section", *META_COLUMNS]
    for key in SECTION_KEYS:
        for column in report.sections[key].columns:
            if column not in columns:
                columns.append(column)
    return columns


def render_csv(report: AuditReport) -> str:
    """One CSV: the first column names the section (`report` for the header row); each row
    fills only its own section's columns, the rest are empty. Split it on `section`."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=csv_columns(report), lineterminator="\n")
    writer.writeheader()
    filters = report.filters.as_dict()
    writer.writerow(
        {
            "section": "report",
            "generated_at": _iso(report.generated_at),
            "dataset": report.dataset,
            "destination": report.destination,
            "since": _iso(filters["since"]) or "",
            "before": _iso(filters["before"]) or "",
            "statuses": " ".join(filters["statuses"]),
        }
    )
    for key in SECTION_KEYS:
        for row in report.sections[key].rows:
            cells: dict[str, Any] = {"section": key}
            for column, value in row.items():
                if isinstance(value, bool):
                    value = "true" if value else "false"
                cells[column] = "" if value is None else _iso(value)
            writer.writerow(cells)
    return buffer.getvalue()


_NUMERIC = {"archives", "requests", "pending", "attempts", "failed_rows", "http_status",
            "exit_code", "pending_at_start", "oldest_age_hours"}  # fmt: skip


# -- terminal ---------------------------------------------------------------------------------


def _cell(value: Any) -> Text:
    # Text, not str: a value like "[red]x" must show as typed, not as rich markup.
    return Text(display(value), style="dim" if value is None else "")


def print_report(console: Console, report: AuditReport) -> None:
    filters = report.filters
    window = []
    if filters.since:
        window.append(f"since {display(filters.since)}")
    if filters.before:
        window.append(f"before {display(filters.before)}")
    if filters.statuses:
        window.append(f"status {', '.join(filters.statuses)}")
    if filters.run_id:
        window.append(f"run {filters.run_id}")
    console.print(
        Text(
            f"audit report of {report.destination} dataset {report.dataset}, "
            f"{display(report.generated_at)}" + (f" ({'; '.join(window)})" if window else ""),
            style="bold",
        )
    )
    for key in SECTION_KEYS:
        section = report.sections[key]
        table = Table(title=section.title, show_edge=False, title_justify="left")
        for column in section.columns:
            # fold, never "…": an id cut short is of no use to an auditor.
            table.add_column(
                heading(column), justify="right" if column in _NUMERIC else "left", overflow="fold"
            )
        if key == ARCHIVES_PER_DAY:
            table.add_column("")
            peak = max((int(row["archives"]) for row in section.rows), default=0)
        for row in section.rows:
            cells = [_cell(row[column]) for column in section.columns]
            if key == ARCHIVES_PER_DAY:
                width = round(30 * int(row["archives"]) / peak) if peak else 0
                cells.append(Text("█" * max(width, 1), style="cyan"))
            table.add_row(*cells)
        console.print()
        if section.rows:
            console.print(table)
        else:
            console.print(Text(section.title, style="italic"))
            console.print(Text("  (none)", style="dim"))
        if section.note:
            console.print(Text(f"  {_visible_controls(section.note)}", style="yellow"))


# Column names as a person reads them (HTML and the terminal); JSON and CSV keep the names.
HEADINGS: dict[str, str] = {
    "object_type": "type",
    "object_id": "record id",
    "contact_id": "contact id",
    "request_id": "request",
    "run_id": "run",
    "archived_by": "archived by",
    "requested_by": "requested by",
    "requested_at": "requested at",
    "first_archived": "first archived",
    "last_archived": "last archived",
    "http_status": "HTTP status",
    "failed_rows": "failed attempts logged",
    "last_processed_at": "last processed",
    "started_at": "started",
    "finished_at": "finished",
    "exit_code": "exit code",
    "pending_at_start": "pending at start",
    "new_columns": "new columns",
    "failed_outcomes": "failed outcomes",
    "field_key": "field",
    "column_name": "column",
    "first_seen_at": "first seen",
    "first_seen_run_id": "first seen in run",
    "first_seen_object_id": "first seen on record",
    "oldest_requested_at": "oldest request",
    "oldest_age_hours": "oldest pending (hours)",
    "chain_seq": "link",
    "chain_sha256": "chain head",
    "linked_at": "linked at",
    "verified_at": "verified at",
    "verified_by": "verified by",
    "finding_count": "findings",
    "redaction_id": "redaction",
    "redacted_at": "redacted at",
    "redacted_by": "redacted by",
    "row_count": "rows",
}


def heading(column: str) -> str:
    return HEADINGS.get(column, column.replace("_", " "))


# -- HTML -------------------------------------------------------------------------------------


def esc(value: Any) -> str:
    return html.escape(display(value), quote=True)


def _nice_step(peak: int, ticks: int = 5) -> int:
    """A step of 1, 2 or 5 times a power of ten: at most `ticks` intervals up to `peak`."""
    if peak <= ticks:
        return 1
    raw = peak / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if factor * magnitude >= raw:
            return int(factor * magnitude)
    return int(10 * magnitude)  # pragma: no cover - the loop always returns


def daily_series(section: Section) -> list[tuple[date, int]]:
    """One (day, archives) per calendar day from the first to the last, gaps as zero."""
    counts = {row["day"]: int(row["archives"]) for row in section.rows if row["day"] is not None}
    if not counts:
        return []
    first, last = min(counts), max(counts)
    return [
        (first + timedelta(days=i), counts.get(first + timedelta(days=i), 0))
        for i in range((last - first).days + 1)
    ]


def types_per_day(section: Section) -> dict[date, str]:
    """Each day's archives by type, as words for a bar's tooltip: `contacts 3, companies 2`."""
    words: dict[date, list[str]] = {}
    for row in section.rows:
        if row["day"] is not None:
            words.setdefault(row["day"], []).append(f"{row['object_type']} {row['archives']}")
    return {day: ", ".join(parts) for day, parts in words.items()}


def archives_chart_svg(section: Section, by_type: Section | None = None) -> str:
    """An inline SVG bar chart of archives per day: one `<g class="bar">` per calendar day,
    carrying `data-day`, `data-count`, a `<title>` tooltip and the day's archives by type (from
    `by_type`) as its `<desc>`; dates on the x axis, counts on the y axis. No external reference, no
    script."""
    kinds = types_per_day(by_type) if by_type is not None else {}
    series = daily_series(section)
    if not series:
        return '<p class="empty">No archives in this window: nothing to chart.</p>'
    width, height = 1000, 340
    left, right, top, bottom = 64, 20, 24, 86
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(count for _, count in series)
    step = _nice_step(peak)
    y_max = max(step, math.ceil(peak / step) * step)
    slot = plot_w / len(series)
    bar_w = min(max(slot * 0.75, 1.0), 64.0)
    label_every = max(1, math.ceil(len(series) / 24))

    def y_of(count: float) -> float:
        return top + plot_h - plot_h * count / y_max

    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" '
        f'width="100%" preserveAspectRatio="xMidYMid meet" '
        f'aria-label="Archives per day, {esc(series[0][0])} to {esc(series[-1][0])}">',
        "<title>Archives per day (UTC)</title>",
    ]
    # y axis: gridlines and counts
    for tick in range(0, y_max + 1, step):
        y = y_of(tick)
        parts.append(
            f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}"/>'
            f'<text class="ytick" x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{tick}</text>'
        )
    parts.append(
        f'<text class="axis-label" transform="translate(16 {top + plot_h / 2:.1f}) rotate(-90)" '
        f'text-anchor="middle">archives</text>'
    )
    # bars
    for index, (day, count) in enumerate(series):
        x = left + index * slot + (slot - bar_w) / 2
        y = y_of(count)
        label = f"{day.isoformat()}: {count} archive{'s' if count != 1 else ''}"
        # By type in the bar's <desc> (shown with its title by most viewers), so the title
        # stays the date and the count that scripts read.
        desc = f"<desc>{esc(kinds[day])}</desc>" if day in kinds else ""
        parts.append(
            f'<g class="bar" data-day="{day.isoformat()}" data-count="{count}">'
            f"<title>{esc(label)}</title>{desc}"
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
            f'height="{top + plot_h - y:.1f}"/>'
        )
        if len(series) <= 62:
            parts.append(
                f'<text class="value" x="{x + bar_w / 2:.1f}" y="{y - 5:.1f}" '
                f'text-anchor="middle">{count}</text>'
            )
        parts.append("</g>")
        if index % label_every == 0:
            cx = left + index * slot + slot / 2
            cy = top + plot_h + 14
            parts.append(
                f'<text class="xtick" x="{cx:.1f}" y="{cy:.1f}" text-anchor="end" '
                f'transform="rotate(-40 {cx:.1f} {cy:.1f})">{day.isoformat()}</text>'
            )
    # axes
    parts.append(
        f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}"/>'
        f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{width - right}" '
        f'y2="{top + plot_h}"/>'
        f'<text class="axis-label" x="{left + plot_w / 2:.1f}" y="{height - 6}" '
        f'text-anchor="middle">day (UTC)</text>'
    )
    parts.append("</svg>")
    return "\n".join(parts)


PAGE_CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2937;
       margin: 2rem auto; max-width: 1100px; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .25rem; }
h2 { font-size: 1.1rem; margin: 2rem 0 .5rem; border-bottom: 1px solid #e5e7eb;
     padding-bottom: .25rem; }
.meta { color: #4b5563; margin: 0 0 1rem; }
.meta dt { font-weight: 600; display: inline; }
.meta dd { display: inline; margin: 0 1.25rem 0 .25rem; }
.tiles { display: flex; gap: 1rem; flex-wrap: wrap; margin: 1rem 0; }
.tile { border: 1px solid #e5e7eb; border-radius: 8px; padding: .6rem 1rem; min-width: 9rem; }
.tile b { display: block; font-size: 1.5rem; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #eef0f3;
         vertical-align: top; overflow-wrap: break-word; }
th { background: #f9fafb; font-weight: 600; white-space: nowrap; }
.scroll { overflow-x: auto; }
td.long { min-width: 16rem; }
td.ts { white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.null { color: #9ca3af; }
.note { color: #92400e; background: #fffbeb; padding: .3rem .6rem; border-radius: 4px; }
.empty { color: #6b7280; font-style: italic; }
svg.chart { max-width: 100%; height: auto; font-size: 12px; }
svg.chart .bar rect { fill: #2563eb; }
svg.chart .bar:hover rect { fill: #1d4ed8; }
svg.chart .grid { stroke: #e5e7eb; }
svg.chart .axis { stroke: #374151; }
svg.chart text { fill: #374151; }
svg.chart .value { font-size: 11px; fill: #1e3a8a; }
svg.chart .axis-label { font-weight: 600; }
@media print { .tile { break-inside: avoid; } h2 { break-after: avoid; } }
"""


# Free text that would otherwise be squeezed into a narrow column.
_LONG = {"error", "outcome"}


def _html_table(section: Section) -> str:
    if not section.rows:
        return '<p class="empty">None.</p>'
    head = "".join(
        f'<th{" class=num" if c in _NUMERIC else ""} scope="col">{esc(heading(c))}</th>'
        for c in section.columns
    )
    body = []
    for row in section.rows:
        cells = []
        for column in section.columns:
            value = row[column]
            if value is None:
                css = "null"
            elif column in _NUMERIC:
                css = "num"
            elif isinstance(value, datetime):
                css = "ts"
            else:
                css = "long" if column in _LONG else ""
            cells.append(
                f'<td class="{css}">{esc(value)}</td>' if css else f"<td>{esc(value)}</td>"
            )
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _verdict(verified: list[dict[str, Any]], head: list[dict[str, Any]]) -> str | None:
    """The last verdict, and whether the chain has grown since it was given."""
    if not verified:
        return None
    last = verified[0]
    said = "intact" if last["intact"] else "NOT intact"
    if head and last.get("head") != head[0]["chain_sha256"]:
        said += f" at link {last.get('links')} (now {head[0]['chain_seq']})"
    return said


def render_html(report: AuditReport) -> str:
    """One self-contained HTML page: inline CSS, an inline SVG chart, every section a table.
    It references nothing outside itself and its Content-Security-Policy forbids scripts."""
    filters = report.filters
    per_day = report.sections[ARCHIVES_PER_DAY]
    total_archives = sum(int(row["archives"]) for row in per_day.rows)
    failed = sum(
        int(row["requests"]) for row in report.sections[OUTCOMES].rows if row["status"] == "failed"
    )
    backlog = report.backlog
    meta = [
        ("dataset", report.dataset),
        ("destination", report.destination),
        ("generated", report.generated_at),
        ("since", filters.since),
        ("before", filters.before),
        ("statuses", ", ".join(filters.statuses) or "all"),
        ("run", filters.run_id or "all"),
    ]
    head = report.sections[HASH_CHAIN].rows
    verified = report.sections[LAST_VERIFICATION].rows
    redacted = sum(int(row["row_count"] or 0) for row in report.sections[REDACTIONS].rows)
    tiles = [
        ("archives in window", total_archives),
        ("failed requests", failed if report.sections[FAILURES].note is None else "—"),
        ("pending now", backlog.get("pending")),
        ("oldest pending (hours)", backlog.get("oldest_age_hours")),
        # The whole head is in its section, to be copied; the tile shows its start.
        ("chain head", f"{str(head[0]['chain_sha256'])[:12]}…" if head else None),
        ("last verify", _verdict(verified, head)),
        ("rows redacted in window", redacted),
    ]
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Routera archive audit report: {esc(report.dataset)}</title>",
        f"<style>{PAGE_CSS}</style>",
        "</head>",
        "<body>",
        "<h1>Routera archive audit report</h1>",
        '<dl class="meta">'
        + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in meta)
        + "</dl>",
        '<div class="tiles">'
        + "".join(f'<div class="tile">{esc(k)}<b>{esc(v)}</b></div>' for k, v in tiles)
        + "</div>",
    ]
    for key in SECTION_KEYS:
        section = report.sections[key]
        out.append(f'<h2 id="{esc(key)}">{esc(section.title)}</h2>')
        if section.note:
            out.append(f'<p class="note">{esc(section.note)}</p>')
        if key == ARCHIVES_PER_DAY:
            out.append(archives_chart_svg(per_day, report.sections[ARCHIVES_PER_DAY_BY_TYPE]))
        out.append(_html_table(section))
    out += ["</body>", "</html>", ""]
    return "\n".join(out)


def render(report: AuditReport, output_format: ReportFormat) -> str:
    """The report as text in a file format (not `table`, which prints to a console)."""
    if output_format is ReportFormat.JSON:
        return render_json(report)
    if output_format is ReportFormat.CSV:
        return render_csv(report)
    if output_format is ReportFormat.HTML:
        return render_html(report)
    raise ValueError(f"{output_format} is printed, not rendered to text")


def write_atomically(output: Path, text: str) -> None:
    """Write next to the target and rename: a reader never sees half a report. mkstemp's
    owner-only mode stays: the report names contacts and people."""
    import os
    import tempfile

    from routera_archive.errors import RetriableError

    partial: str | None = None
    try:
        handle, partial = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.")
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as file:
            file.write(text)
        os.replace(partial, output)
        partial = None
    except OSError as exc:
        raise RetriableError(f"cannot write {output}: {exc}") from None
    finally:
        if partial is not None and os.path.exists(partial):
            os.unlink(partial)
