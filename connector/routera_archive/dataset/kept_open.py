"""Keeping an embedded database open through a phase of many short queries and loads.

A run's start (recovery, the tally, the first page) and its end (the run row) each make a dozen
queries and a load or two, and dlt opens and closes the database for each one. For DuckDB
that is the costly part: the last connection to close checkpoints the file and drops the
database instance, so the next one opens and reads it again (~35 ms a time here, with the
checkpoints a run's start cost about half a second). One connection held open through the
phase keeps the instance alive, so every other open of the same file in this process is cheap
(~15 ms, most of it dlt resolving its configuration) and the file is checkpointed once.

It is held only through those phases, not while the calls run: DuckDB lets one process have a
file open at a time, and between the loads of the calls a `status`, a report or the DuckDB
CLI may read it, as they can today. A warehouse keeps its own server: nothing is held there.
"""

import logging
from typing import Any

logger = logging.getLogger(__name__)

# The destinations whose database lives in this process.
EMBEDDED = frozenset({"duckdb"})


class KeptOpen:
    """One connection to an embedded destination, opened by `hold` and closed by `release`
    (both idempotent); nothing at all for a warehouse."""

    def __init__(self, pipeline: Any) -> None:
        self._pipeline = pipeline
        self._client: Any = None

    @property
    def held(self) -> bool:
        return self._client is not None

    def hold(self) -> None:
        destination = self._pipeline.destination
        if (
            self._client is not None
            or destination is None
            or destination.destination_name not in EMBEDDED
        ):
            return
        client = self._pipeline.sql_client()
        try:
            client.__enter__()
        except Exception as exc:  # a busy or missing file: the phase's own queries say so
            logger.debug("could not keep the database open: %s", exc)
            return
        self._client = client

    def release(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.__exit__(None, None, None)
        except Exception as exc:  # its checkpoint: what was committed is in the WAL already
            logger.warning("closing the database after a run's phase: %s", exc)

    def __enter__(self) -> "KeptOpen":
        self.hold()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
