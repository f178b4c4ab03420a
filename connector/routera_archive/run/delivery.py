"""Where a run's rows go when it does not load them itself.

A run loads its rows chunk by chunk (`run.chunks`) and links itself into the hash chain at its
end. A run inside a dlt user's own `pipeline.run(routera_archive())` cannot: the pipeline is in
its extract step, and loads once, after it. There the run hands each chunk's rows, and its own
run row, to the extract (`source.routera_archive`) through a `RowDelivery`; every outcome is in
the journal before it is handed over, and the journal stays until a later run finds its
outcomes in the destination.
"""

from collections.abc import Callable
from typing import Any, Protocol

from routera_archive.dataset.tables import AuditRows


class RowDelivery(Protocol):
    """Takes a run's rows in place of its loads."""

    def audit_rows(self, rows: AuditRows, hold_back: bool) -> None:
        """One chunk's rows (or a crashed run's, from its journal), in the order taken."""

    def run_row(self, row: dict[str, Any]) -> None:
        """The run's own row for `archive_runs`, last."""

    def keep_locks(self, release: Callable[[], None]) -> bool:
        """Whether the delivery holds the run's locks past its end and calls `release` once its
        rows are loaded (so that no other run finds their requests pending meanwhile); False:
        the run releases them now."""
