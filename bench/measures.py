"""What a run leaves behind, read back as figures: the server's stamps, the DuckDB file, the log.

Throughput while archiving is counted on the server, from the time of every API answer between
the run's first and last DELETE; rate-limit windows are counted on the requests' arrival times,
as a server's limiter counts them (answer times are reported beside them). The DuckDB file gives
the audit rows, so each configuration also proves every contact was archived exactly once (and,
with `properties`, that each row holds the configured custom fields its contact has); the
run's own log gives a second, coarser archive time.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
SENT_LINE = re.compile(r"HTTP requests sent: (\d+)")

# (answer time, method, status, arrival time), as bench/timed_sandbox.py records them.
Stamp = tuple[float, str, int, float]


# ------------------------------------------------------------------------------- the server
@dataclass
class ApiWindow:
    """API answers the server sent while one process ran, judged from their times."""

    requests: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    first_delete: float | None = None
    last_delete: float | None = None
    # API answers per second between the first and the last DELETE: the archive phase.
    archive_rps: float = 0.0
    archive_s: float = 0.0
    # Most API answers in any [t, t + 1 s) window, and in any whole calendar second.
    max_in_1s_window: int = 0
    max_in_calendar_second: int = 0
    # The same for the requests' arrivals: what a server's rate limiter counts.
    max_arrivals_in_1s_window: int = 0
    max_arrivals_in_calendar_second: int = 0


def most_in_one_second(times: list[float]) -> tuple[int, int]:
    """(most of `times` in any [t, t + 1 s) window, most in one calendar second); sorted input."""
    most = low = 0
    for high, moment in enumerate(times):
        while times[low] <= moment - 1.0:
            low += 1
        most = max(most, high - low + 1)
    return most, max(Counter(int(t) for t in times).values(), default=0)


def api_window(stamps: list[Stamp], start: float, end: float) -> ApiWindow:
    chosen = [s for s in stamps if start <= s[0] <= end]
    window = ApiWindow(requests=len(chosen))
    window.by_status = dict(Counter(str(status) for _, _, status, _ in chosen))
    deletes = [t for t, method, _, _ in chosen if method == "DELETE"]
    if deletes:
        window.first_delete, window.last_delete = deletes[0], deletes[-1]
        during = [t for t, _, _, _ in chosen if deletes[0] <= t <= deletes[-1]]
        window.archive_s = deletes[-1] - deletes[0]
        if window.archive_s > 0:
            window.archive_rps = (len(during) - 1) / window.archive_s
    window.max_in_1s_window, window.max_in_calendar_second = most_in_one_second(
        [t for t, _, _, _ in chosen]
    )
    window.max_arrivals_in_1s_window, window.max_arrivals_in_calendar_second = most_in_one_second(
        sorted(arrived for _, _, _, arrived in chosen)
    )
    return window


# --------------------------------------------------------------------------- the DuckDB file
@dataclass
class AuditCounts:
    archives: int = 0
    distinct_archived_ids: int = 0
    log_by_status: dict[str, int] = field(default_factory=dict)
    queue: int = 0
    by_record_source: dict[str, int] = field(default_factory=dict)
    # Per property asked for: audit rows whose column of it is not null (None: no column).
    filled: dict[str, int | None] = field(default_factory=dict)


def archived_once_problems(
    contacts: int, deletes_succeeded: int, archived_twice: int, audit: AuditCounts
) -> list[str]:
    """What every figure of a run rests on: each of `contacts` archived once on the server
    and in the audit table once."""
    found = []
    if deletes_succeeded != contacts:
        found.append(f"{deletes_succeeded} contacts archived, expected {contacts}")
    if archived_twice:
        found.append(f"{archived_twice} contacts archived twice")
    if audit.archives != contacts or audit.distinct_archived_ids != contacts:
        found.append(f"{audit.archives} audit rows ({audit.distinct_archived_ids} ids)")
    return found


def audit_counts(database: Path, properties: Sequence[str] = ()) -> AuditCounts:
    """What the run left in DuckDB: audit rows, distinct ids, log rows by status, queue size,
    rows by record source and, per property in `properties`, the rows that hold a value of it
    (in the column the connector's `custom_fields` table gives it)."""
    import duckdb

    counts = AuditCounts()
    if not database.exists():
        return counts
    with duckdb.connect(str(database), read_only=True) as db:
        counts.archives, counts.distinct_archived_ids = db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT id) FROM routera_archive.contact_archives"
        ).fetchone() or (0, 0)
        counts.log_by_status = dict(
            db.execute(
                "SELECT status, COUNT(*) FROM routera_archive.archive_log GROUP BY status"
            ).fetchall()
        )
        row = db.execute("SELECT COUNT(*) FROM routera_archive.archive_queue").fetchone()
        counts.queue = int(row[0]) if row else 0
        counts.by_record_source = {
            str(source): int(n)
            for source, n in db.execute(
                "SELECT record_source, COUNT(*) FROM routera_archive.contact_archives "
                "GROUP BY record_source"
            ).fetchall()
        }
        columns = dict(
            db.execute(
                "SELECT field_key, column_name FROM routera_archive.custom_fields"
            ).fetchall()
            if properties
            else []
        )
        for name in properties:
            column = columns.get(name)
            if column is None:
                counts.filled[name] = None
                continue
            row = db.execute(
                f'SELECT COUNT("{column}") FROM routera_archive.contact_archives'
            ).fetchone()
            counts.filled[name] = int(row[0]) if row else 0
    return counts


# ---------------------------------------------------------------------------- the run's output
def _log_time(line: str) -> float | None:
    match = LOG_LINE.match(line)
    if not match:
        return None
    return datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def log_archive_seconds(stderr: str, contacts: int) -> float | None:
    """From "run X: N requests to handle" to "progress N/N" in the run's log."""
    start = end = None
    for line in stderr.splitlines():
        if start is None and "requests to handle" in line:
            start = _log_time(line)
        elif f"progress {contacts}/{contacts}" in line:
            end = _log_time(line)
    return end - start if start is not None and end is not None else None


def requests_sent(stdout: str) -> int | None:
    """The run's own count of HTTP requests, from its summary line."""
    sent = SENT_LINE.search(stdout)
    return int(sent[1]) if sent else None
