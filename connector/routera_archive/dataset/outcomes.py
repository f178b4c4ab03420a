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


def logged_type(alias: str = "l", *, typed: bool = True) -> str:
    """A log row's object type. A row the previous release wrote has none (nor the column,
    until this release first loads the log: `typed=False`): it is a contact's."""
    return f"COALESCE({alias}.object_type, 'contacts')" if typed else "'contacts'"


def logged_id(alias: str = "l", *, typed: bool = True) -> str:
    """A log row's record id: `object_id`, or `contact_id` in a row of the previous release."""
    return f"COALESCE({alias}.object_id, {alias}.contact_id)" if typed else f"{alias}.contact_id"


def per_request(alias: str = "l", *, typed: bool = True) -> str:
    """A window per request: its id, its type and its record's id (a request id used again
    for another record, or another type, is another request)."""
    return (
        f"PARTITION BY {alias}.request_id, {logged_type(alias, typed=typed)}, "
        f"{logged_id(alias, typed=typed)}"
    )


def newest_rank(alias: str = "l", *, typed: bool = True) -> str:
    """A window column that is 1 on each request's latest outcome."""
    window = per_request(alias, typed=typed)
    return f"ROW_NUMBER() OVER ({window} ORDER BY {latest_first(alias)})"


def failed_rows(alias: str = "l", *, typed: bool = True) -> str:
    """A window column: how many `failed` rows the request has."""
    return (
        f"SUM(CASE WHEN {alias}.status = '{Status.FAILED.value}' THEN 1 ELSE 0 END) "
        f"OVER ({per_request(alias, typed=typed)})"
    )


def ranked_outcomes(log_table: str, where: str = "", *, typed: bool = True) -> str:
    """Every row of `log_table` (qualified) with `newest` (1: the request's latest outcome),
    `failed_rows`, and its type and record id as `logged_type`/`logged_id` read them
    (`kind`, `record_id`); `where` (e.g. a time window) applies before the ranking. `typed`:
    whether the log has `object_type` yet (see `logged_type`)."""
    return (
        f"SELECT l.*, {newest_rank(typed=typed)} AS newest, "
        f"{failed_rows(typed=typed)} AS failed_rows, "
        f"{logged_type(typed=typed)} AS kind, {logged_id(typed=typed)} AS record_id "
        f"FROM {log_table} l {where}"
    )
