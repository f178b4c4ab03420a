"""One writer per dataset, for as long as a run may send DELETEs, wherever its writers run.

Two locks guard a run, and a run takes both before it reads the queue:

- the **pipeline folder's** (`RunLock`): dlt's packages and the journals there have one owner;
- the **dataset's** (`dataset_lock`), where every writer of the dataset sees it: a file next to
  a DuckDB database (two users or containers with pipeline folders of their own share the
  database file, not the folder), a session-level advisory lock in PostgreSQL (another machine
  shares only the server). Other destinations have no shared place a lock could live; there
  the scheduler must keep to one run per dataset (README, "Schedulers").

OS locks (flock) and advisory locks die with their process or session, so a killed run never
leaves a stale one behind. Both can also be lost while the run lives: a lock file deleted (an
ephemeral folder cleaned up), a PostgreSQL session terminated (a failover, an idle-session
killer). `HeldLock.check` says so; `run.lock_watch` asks it several times a second and stops
the run's DELETEs at once. Releasing never raises: a lock already gone is simply gone.
"""

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import select
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

from routera_archive.errors import RunLockedError, one_line

logger = logging.getLogger(__name__)


class HeldLock(Protocol):
    """A lock a run holds, as `run.lock_watch` sees it."""

    def acquire(self) -> None:
        """Take the lock, or raise RunLockedError naming who holds it."""

    def check(self) -> str | None:
        """None while the lock is still held; otherwise why it is not."""

    def regain(self) -> bool:
        """Take the lock again after it was lost; False when another run has it now."""

    def wait_handle(self) -> int | None:
        """A file descriptor that becomes readable when the lock may have been lost (a
        PostgreSQL session's socket), so the watch wakes at once; None to poll only."""

    def release(self) -> None: ...


class FileLock:
    """An exclusive (or shared) flock on a file whose content names the holder."""

    def __init__(self, path: Path, run_id: str, *, shared: bool = False, what: str) -> None:
        self.path = path
        self.run_id = run_id
        self.shared = shared
        self.what = what
        self._handle: IO[str] | None = None
        self._identity: tuple[int, int] | None = None

    def holder(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.path.read_text(encoding="utf-8") or "{}"))
        except (OSError, ValueError):
            return {}

    def acquire(self) -> None:
        if not self._take():
            other = self.holder()
            raise RunLockedError(
                f"another run holds {self.what}: run "
                f"{other.get('run_id', '?')} (pid {other.get('pid', '?')} on "
                f"{other.get('host', '?')}, started {other.get('started_at', '?')}); "
                "wait for it to finish"
            )

    def _take(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+", encoding="utf-8")
        try:
            mode = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
            fcntl.flock(handle.fileno(), mode | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        if not self.shared:  # shared holders leave the exclusive holder's name alone
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
        stat = os.fstat(handle.fileno())
        self._handle, self._identity = handle, (stat.st_dev, stat.st_ino)
        return True

    def check(self) -> str | None:
        """A flock cannot be taken from a living process, but its file can be deleted or
        replaced, and the next run then locks a new file: the lock is lost."""
        if self._handle is None:
            return None
        try:
            stat = os.stat(self.path)
        except OSError:
            return f"the lock file {self.path} was removed"
        if (stat.st_dev, stat.st_ino) != self._identity:
            return f"the lock file {self.path} was replaced"
        return None

    def regain(self) -> bool:
        self._close()
        return self._take()

    def wait_handle(self) -> int | None:
        return None

    def release(self) -> None:
        if self._handle is None:
            return
        try:
            if not self.shared and self.check() is None:
                self._handle.seek(0)
                self._handle.truncate()
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
        except OSError as exc:  # a full disk, a removed file: the lock goes with the handle
            logger.debug("releasing %s: %s", self.path, exc)
        self._close()

    def _close(self) -> None:
        if self._handle is not None:
            try:
                self._handle.close()
            except OSError as exc:
                logger.debug("closing %s: %s", self.path, exc)
            self._handle = self._identity = None


class RunLock(FileLock):
    """The pipeline folder's lock: one run at a time uses dlt's packages and the journals."""

    def __init__(self, path: Path, run_id: str) -> None:
        super().__init__(path, run_id, what="this dataset's pipeline folder")


def lock_folder(database: Path) -> Path:
    """Where the locks of a DuckDB database's datasets live: beside the file."""
    return database.with_name(f"{database.name}.routera-locks")


class FileDatasetLock:
    """A dataset's lock in files next to its DuckDB database: every writer of that database
    sees them, whatever its pipeline folder. An unsharded run holds the dataset's file
    exclusively; a shard worker holds it shared and its shard's file exclusively."""

    def __init__(self, database: Path, dataset: str, run_id: str, shard_label: str | None):
        folder = lock_folder(database)
        what = f"dataset `{dataset}` of {database.name}"
        sharded = shard_label is not None
        self.locks = [FileLock(folder / f"{dataset}.lock", run_id, shared=sharded, what=what)]
        if shard_label is not None:
            path = folder / f"{dataset}.shard-{shard_label.replace('/', '-of-')}.lock"
            self.locks.append(FileLock(path, run_id, what=f"{what} shard {shard_label}"))

    def acquire(self) -> None:
        taken: list[FileLock] = []
        try:
            for lock in self.locks:
                lock.acquire()
                taken.append(lock)
        except BaseException:
            for lock in taken:
                lock.release()
            raise

    def check(self) -> str | None:
        return next((reason for lock in self.locks if (reason := lock.check())), None)

    def regain(self) -> bool:
        return all(lock.regain() for lock in self.locks)

    def wait_handle(self) -> int | None:
        return None

    def release(self) -> None:
        for lock in reversed(self.locks):
            lock.release()


class NoDatasetLock:
    """Where no shared place for a lock exists (see the module's docstring)."""

    def acquire(self) -> None:
        return None

    def check(self) -> str | None:
        return None

    def regain(self) -> bool:
        return True

    def wait_handle(self) -> int | None:
        return None

    def release(self) -> None:
        return None


class WarehouseLock:
    """One writer per dataset (and shard) across machines, in PostgreSQL.

    A session-level advisory lock, held on a connection kept open for the run: it dies with the
    connection, so a killed worker never leaves it behind. An unsharded run takes the dataset's
    lock exclusively; shard workers take it shared, plus their own shard's lock exclusively, so
    a full run and shard workers never overlap, and two workers of one shard never run at once.
    The session can end while the run lives (`check` asks the server whether it still holds
    the lock; `wait_handle` wakes the watch as soon as the server closes the session).
    """

    def __init__(self, pipeline: Any, run_id: str, shard_label: str | None) -> None:
        self.pipeline = pipeline
        self.run_id = run_id
        self.shard_label = shard_label
        self.dataset = str(pipeline.dataset_name)
        self._context: Any = None
        self._client: Any = None
        self._keys: list[tuple[int, bool]] = []  # (key, shared)

    @staticmethod
    def key(*parts: str) -> int:
        """A stable signed 63-bit key for pg_advisory_lock."""
        digest = hashlib.sha1(":".join(("routera-archive", *parts)).encode()).hexdigest()
        return int(digest[:15], 16)

    def acquire(self) -> None:
        dataset_key = self.key(self.dataset)
        if self.shard_label is None:
            self._keys = [(dataset_key, False)]
        else:
            self._keys = [(dataset_key, True), (self.key(self.dataset, self.shard_label), False)]
        if self._take():
            return
        others = self._holders(self._keys[-1][0]) or self._holders(dataset_key)
        self.release()
        raise RunLockedError(
            f"another run holds dataset `{self.dataset}`"
            + (f" shard {self.shard_label}" if self.shard_label else "")
            + f" in PostgreSQL: {others or 'a session that did not name itself'}; "
            "wait for it to finish"
        )

    def _take(self) -> bool:
        """Open a session of our own and take every key on it; False when one is held."""
        self._context = self.pipeline.sql_client()
        self._client = self._context.__enter__()
        self._client.execute_sql(
            "SELECT set_config('application_name', %s, false)",
            f"routera-archive {self.run_id} ({self.shard_label or 'all shards'})"[:63],
        )
        for key, shared in self._keys:
            function = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
            if not self._client.execute_sql(f"SELECT {function}(%s)", key)[0][0]:
                return False
        return True

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

    def check(self) -> str | None:
        if self._client is None:
            return "the PostgreSQL session holding the lock is closed"
        try:
            held = self._client.execute_sql(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND pid = pg_backend_pid()"
            )[0][0]
        except Exception as exc:  # the session is gone: any error of the driver says so
            return f"the PostgreSQL session holding the lock ended ({one_line(str(exc), 160)})"
        if held < len(self._keys):
            return "the PostgreSQL session no longer holds the advisory lock"
        return None

    def regain(self) -> bool:
        self._close()
        try:
            if self._take():
                return True
        except Exception as exc:
            logger.warning("could not take the dataset's lock again: %s", one_line(str(exc)))
        self._close()
        return False

    def wait_handle(self) -> int | None:
        try:
            return int(self._client.native_connection.fileno())
        except Exception:  # closed, or a driver without one: the watch polls
            return None

    def release(self) -> None:
        if self._client is not None:
            try:
                self._client.execute_sql("SELECT pg_advisory_unlock_all()")
            except Exception as exc:  # the session is gone, and its locks with it
                logger.debug("releasing the advisory lock: %s", exc)
        self._close()

    def _close(self) -> None:
        context, self._context, self._client = self._context, None, None
        if context is not None:
            try:
                context.__exit__(None, None, None)
            except Exception as exc:
                logger.debug("closing the lock's session: %s", exc)


def dataset_lock(pipeline: Any, run_id: str, shard_label: str | None) -> HeldLock:
    """The dataset's lock where every writer of `pipeline`'s dataset sees it."""
    name = pipeline.destination.destination_name
    if name == "postgres":
        return WarehouseLock(pipeline, run_id, shard_label)
    if name == "duckdb":
        database = str(pipeline.sql_client().credentials.database)
        if database != ":memory:":
            dataset = str(pipeline.dataset_name)
            return FileDatasetLock(Path(database).resolve(), dataset, run_id, shard_label)
    return NoDatasetLock()


def wait_for_any(handles: list[int], timeout: float) -> None:
    """Sleep up to `timeout` seconds, waking when one of `handles` becomes readable."""
    # A handle closed under us raises: the next check says why.
    with contextlib.suppress(OSError, ValueError):
        select.select(handles, [], [], timeout)


# How long a run waits for another run (a shard) to finish linking its own run into the chain.
CHAIN_LOCK_WAIT_S = 120.0


@contextmanager
def chain_lock(pipeline: Any, run_id: str, *, wait: float = CHAIN_LOCK_WAIT_S) -> Iterator[None]:
    """Held while a run links itself into the dataset's hash chain (`dataset.chain`): shard
    workers run side by side but must link one after the other, each on the head the last
    one left. Waits for the lock (a link is short: it reads back one run's rows); a wait
    past `wait` raises RunLockedError. Where the dataset has no shared lock
    (`NoDatasetLock`), one writer per dataset is the scheduler's to keep, as for the run
    itself."""
    name = pipeline.destination.destination_name
    deadline = time.monotonic() + wait
    if name == "postgres":
        key = WarehouseLock.key(str(pipeline.dataset_name), "chain")
        with pipeline.sql_client() as client:
            while not client.execute_sql("SELECT pg_try_advisory_lock(%s)", key)[0][0]:
                _wait_or_give_up(deadline, "the dataset's hash chain (in PostgreSQL)")
            try:
                yield
            finally:
                with contextlib.suppress(Exception):  # the session ends, and the lock with it
                    client.execute_sql("SELECT pg_advisory_unlock(%s)", key)
        return
    lock: FileLock | None = None
    if name == "duckdb":
        database = str(pipeline.sql_client().credentials.database)
        if database != ":memory:":
            path = Path(database).resolve()
            lock = FileLock(
                lock_folder(path) / f"{pipeline.dataset_name}.chain.lock",
                run_id,
                what=f"the hash chain of dataset `{pipeline.dataset_name}` of {path.name}",
            )
            while not lock._take():
                _wait_or_give_up(deadline, lock.what)
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def _wait_or_give_up(deadline: float, what: str) -> None:
    if time.monotonic() > deadline:
        raise RunLockedError(f"another run held {what} for too long; the next run links this one")
    time.sleep(0.05)
