"""One writer per dataset: a run holds an exclusive OS lock on a file for its whole life.

An OS lock (flock) dies with its process, so a lock left by a killed run is never stale: the
next run simply gets it. The file's content names the holder, so a refused run can say which
run is in the way.
"""

import fcntl
import hashlib
import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from routera_archive.errors import RunLockedError


class RunLock:
    def __init__(self, path: Path, run_id: str) -> None:
        self.path = path
        self.run_id = run_id
        self._handle: IO[str] | None = None

    def holder(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.path.read_text(encoding="utf-8") or "{}"))
        except (OSError, ValueError):
            return {}

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            other = self.holder()
            raise RunLockedError(
                "another run holds this dataset: run "
                f"{other.get('run_id', '?')} (pid {other.get('pid', '?')} on "
                f"{other.get('host', '?')}, started {other.get('started_at', '?')}); "
                "wait for it to finish"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(
            json.dumps(
                {
                    "run_id": self.run_id,
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                }
            )
        )
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.seek(0)
            self._handle.truncate()
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class WarehouseLock:
    """One writer per dataset (and shard) across machines, where the destination can tell.

    On PostgreSQL a session-level advisory lock, held on a connection kept open for the run: it
    dies with the connection, so a killed worker never leaves it behind. An unsharded run takes
    the dataset's lock exclusively; shard workers take it shared, plus their own shard's lock
    exclusively, so a full run and shard workers never overlap, and two workers of one shard
    never run at once. Other destinations rely on the local lock and on the scheduler.
    """

    def __init__(self, pipeline: Any, run_id: str, shard_label: str | None) -> None:
        self.pipeline = pipeline
        self.run_id = run_id
        self.shard_label = shard_label
        self._context: Any = None
        self._client: Any = None

    @staticmethod
    def key(*parts: str) -> int:
        """A stable signed 63-bit key for pg_advisory_lock."""
        digest = hashlib.sha1(":".join(("routera-archive", *parts)).encode()).hexdigest()
        return int(digest[:15], 16)

    def acquire(self) -> None:
        if self.pipeline.destination.destination_name != "postgres":
            return
        dataset = self.pipeline.dataset_name
        self._context = self.pipeline.sql_client()
        self._client = self._context.__enter__()
        client = self._client
        client.execute_sql(
            "SELECT set_config('application_name', %s, false)",
            f"routera-archive {self.run_id} ({self.shard_label or 'all shards'})"[:63],
        )
        dataset_key = self.key(dataset)
        if self.shard_label is None:
            taken = client.execute_sql("SELECT pg_try_advisory_lock(%s)", dataset_key)[0][0]
            holder_key = dataset_key
        else:
            shard_key = self.key(dataset, self.shard_label)
            taken = (
                client.execute_sql("SELECT pg_try_advisory_lock_shared(%s)", dataset_key)[0][0]
                and client.execute_sql("SELECT pg_try_advisory_lock(%s)", shard_key)[0][0]
            )
            holder_key = shard_key
        if not taken:
            others = self._holders(holder_key) or self._holders(dataset_key)
            self.release()
            raise RunLockedError(
                f"another run holds dataset `{dataset}`"
                + (f" shard {self.shard_label}" if self.shard_label else "")
                + f" in PostgreSQL: {others or 'a session that did not name itself'}; "
                "wait for it to finish"
            )

    def _holders(self, key: int) -> str:
        rows = self._client.execute_sql(
            "SELECT DISTINCT a.application_name, a.client_addr, a.backend_start "
            "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND a.pid <> pg_backend_pid() "
            "AND l.classid = %s AND l.objid = %s",
            (key >> 32) & 0xFFFFFFFF,
            key & 0xFFFFFFFF,
        )
        return "; ".join(
            f"{name or 'unnamed'} from {addr or 'local socket'} since {started:%Y-%m-%d %H:%M}"
            for name, addr, started in rows or ()
        )

    def release(self) -> None:
        if self._context is not None:
            try:
                self._client.execute_sql("SELECT pg_advisory_unlock_all()")
            finally:
                self._context.__exit__(None, None, None)
                self._context = self._client = None
