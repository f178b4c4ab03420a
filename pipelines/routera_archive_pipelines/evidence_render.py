"""The evidence document (`audit.evidence`) as JSON, as one self-contained HTML page, and on
the terminal. Everything in it may come from outside (a reason, an answer's fields), so the
page escapes every value and forbids scripts, as the report does (`report_render`)."""

import json
from datetime import date, datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from routera_archive.audit.evidence import (
    OUTCOME_COLUMNS,
    REDACTION_COLUMNS,
    REQUEST_COLUMNS,
    RUN_COLUMNS,
    Evidence,
)
from routera_archive_pipelines.report_render import PAGE_CSS, display, esc

RECORD_SHOWN = (
    "object_type",
    "id",
    "archived",
    "archived_by",
    "request_id",
    "run_id",
    "record_source",
    "record_sha256",
    "record_hash_matches",
    "snapshot_sha256",
    "redacted",
    "verifies",
)
HEADINGS = {
    "object_type": "type",
    "object_id": "record id",
    "request_id": "request",
    "requested_by": "requested by",
    "requested_at": "requested at",
    "http_status": "HTTP status",
    "processed_at": "processed at",
    "run_id": "run",
    "record_source": "record from",
    "duplicate_of": "duplicate of",
    "outcome_id": "outcome id",
    "archived_by": "archived by",
    "record_sha256": "record SHA-256",
    "snapshot_sha256": "snapshot SHA-256",
    "record_hash_matches": "record hash matches its answer",
    "verifies": "row verifies in the chain",
    "redaction_id": "redaction",
    "redacted_at": "redacted at",
    "redacted_by": "redacted by",
    "started_at": "started",
    "finished_at": "finished",
    "exit_code": "exit code",
    "connector_version": "connector version",
    "chain_seq": "link",
    "chain_sha256": "chain head after this run",
}


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def render_json(evidence: Evidence) -> str:
    return json.dumps(evidence.as_dict(), indent=2, ensure_ascii=False, default=_default) + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=_default)
    return display(value)


def _table(rows: list[dict[str, Any]], columns: tuple[str, ...], empty: str) -> str:
    if not rows:
        return f'<p class="empty">{esc(empty)}</p>'
    head = "".join(f"<th>{esc(HEADINGS.get(c, c.replace('_', ' ')))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(_cell(row.get(c)))}</td>" for c in columns) + "</tr>"
        for row in rows
    )
    return f'<div class="scroll"><table><tr>{head}</tr>{body}</table></div>'


def render_html(evidence: Evidence) -> str:
    """One page that answers an erasure audit for one subject, referencing nothing outside."""
    subject = ", ".join(f"{k} {v}" for k, v in evidence.subject.items())
    chain = evidence.chain
    verdict = (
        "intact" if chain.get("intact") else f"NOT intact ({chain.get('finding_count')} findings)"
    )
    meta = [
        ("subject", subject),
        ("dataset", evidence.dataset),
        ("destination", evidence.destination),
        ("generated", evidence.generated_at),
        ("chain", f"{chain.get('links')} links, {verdict}"),
        ("chain head now", chain.get("head")),
    ]
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Routera archive evidence: {esc(subject)}</title>",
        f"<style>{PAGE_CSS} pre {{ white-space: pre-wrap; overflow-wrap: anywhere; }}</style>",
        "</head>",
        "<body>",
        "<h1>Evidence of archiving</h1>",
        '<dl class="meta">'
        + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in meta)
        + "</dl>",
    ]
    out += [f'<p class="note">{esc(note)}</p>' for note in evidence.notes]
    out += [
        "<h2>Requests</h2>",
        _table(evidence.requests, REQUEST_COLUMNS, "no request"),
        "<h2>Outcomes</h2>",
        _table(evidence.outcomes, OUTCOME_COLUMNS, "no outcome"),
        "<h2>Records the API returned</h2>",
    ]
    if not evidence.records:
        out.append('<p class="empty">no record: nothing was archived</p>')
    for record in evidence.records:
        out.append(f"<h3>{esc(record['object_type'])} {esc(record['id'])}</h3>")
        # One record's facts down the page: hashes whole, nothing hidden in a scroll.
        out.append(
            "<table>"
            + "".join(
                f"<tr><th>{esc(HEADINGS.get(c, c.replace('_', ' ')))}</th>"
                f"<td>{esc(_cell(record.get(c)))}</td></tr>"
                for c in RECORD_SHOWN
            )
            + "</table>"
        )
        if record.get("redacted"):
            out.append(
                '<p class="note">Redacted since it was loaded (see Redactions): the stored answer '
                "is no longer the one its record SHA-256 was made of, so that hash is not "
                "compared; the row verifies against the digest the redaction chained.</p>"
            )
        out.append("<h4>The answer as stored</h4>")
        answer = json.dumps(record.get("answer"), indent=2, ensure_ascii=False)
        out.append(f"<pre>{esc(answer)}</pre>")
        for finding in record.get("findings") or []:
            out.append(f'<p class="note">{esc(finding["check"])}: {esc(finding["detail"])}</p>')
    out += [
        "<h2>Runs</h2>",
        _table(evidence.runs, RUN_COLUMNS, "no run"),
        "<h2>Redactions applied since</h2>",
        _table(evidence.redactions, (*REDACTION_COLUMNS, "rows"), "none"),
        "</body>",
        "</html>",
        "",
    ]
    return "\n".join(out)


def print_evidence(console: Console, evidence: Evidence) -> None:
    """The same parts as tables on the terminal; nothing read as markup."""
    subject = ", ".join(f"{k} {v}" for k, v in evidence.subject.items())
    console.print(Text(display(f"evidence for {subject}")), style="bold")
    chain = evidence.chain
    state = "intact" if chain.get("intact") else f"NOT intact ({chain.get('finding_count')})"
    console.print(
        Text(f"chain: {chain.get('links')} links, {state}, head {chain.get('head')}"),
        soft_wrap=True,
    )
    for note in evidence.notes:
        console.print(Text(display(f"  note: {note}"), style="yellow"))
    parts = (
        ("requests", evidence.requests, REQUEST_COLUMNS),
        ("outcomes", evidence.outcomes, OUTCOME_COLUMNS[:-1]),
        ("records", evidence.records, RECORD_SHOWN),
        ("runs", evidence.runs, RUN_COLUMNS),
        ("redactions", evidence.redactions, (*REDACTION_COLUMNS, "rows")),
    )
    for title, rows, columns in parts:
        table = Table(title=title, show_edge=False)
        for column in columns:
            table.add_column(HEADINGS.get(column, column.replace("_", " ")), overflow="fold")
        for row in rows:
            table.add_row(*(Text(_cell(row.get(c))) for c in columns))
        console.print(table if rows else Text(f"{title}: none"))
