"""The one definition of where a request stands: settled or pending, and its latest outcome.

A request is *settled* once `archive_log` holds a terminal row for it (any status but
`failed`); until then it is *pending* and the next run takes it again. Its *latest outcome* is
therefore its newest terminal row when it has one, else its newest row: a `failed` row can
never outrank a terminal one, whatever its `processed_at` (clocks of two machines, a journal
replayed later), so "latest" and "pending" cannot disagree. Ties on `processed_at` are broken
by `outcome_id`, so every reader picks the same row.

The queue's pending SQL, `status`, `report` and the shipped audit queries
(`routera_archive/audit/sql/`) all take these snippets from here; a test checks that the
shipped files hold them word for word.
"""

from routera_archive.models import TERMINAL_STATUSES, Status


def is_terminal(alias: str = "l") -> str:
    """SQL that is true for a terminal `archive_log` row (`alias` is the log's alias)."""
    statuses = ", ".join(f"'{status}'" for status in TERMINAL_STATUSES)
    return f"{alias}.status IN ({statuses})"


def latest_first(alias: str = "l") -> str:
    """The order that ranks a request's log rows with its latest outcome first."""
    return (
        f"CASE WHEN {is_terminal(alias)} THEN 0 ELSE 1 END, "
        f"{alias}.processed_at DESC, {alias}.outcome_id DESC"
    )


def per_request(alias: str = "l") -> str:
    """A window per request: its id and its contact (a request id used again for another
    contact is another request)."""
    return f"PARTITION BY {alias}.request_id, {alias}.contact_id"


def newest_rank(alias: str = "l") -> str:
    """A window column that is 1 on each request's latest outcome."""
    return f"ROW_NUMBER() OVER ({per_request(alias)} ORDER BY {latest_first(alias)})"


def failed_rows(alias: str = "l") -> str:
    """A window column: how many `failed` rows the request has."""
    return (
        f"SUM(CASE WHEN {alias}.status = '{Status.FAILED.value}' THEN 1 ELSE 0 END) "
        f"OVER ({per_request(alias)})"
    )


def ranked_outcomes(log_table: str, where: str = "") -> str:
    """Every row of `log_table` (qualified) with `newest` (1: the request's latest outcome) and
    `failed_rows`; `where` (e.g. a time window) applies before the ranking."""
    return (
        f"SELECT l.*, {newest_rank()} AS newest, {failed_rows()} AS failed_rows "
        f"FROM {log_table} l {where}"
    )
