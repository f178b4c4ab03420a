"""Whether the run still holds its locks, asked several times a second while it may send DELETEs.

A lock lost mid-run (a PostgreSQL session terminated, a lock file deleted) lets a second run
start on the same dataset; both would then send DELETEs for the same pending requests. So the
watch stops the run's DELETEs as soon as it notices (`may_send`), and tries at once to take the
lock again: when nobody else took it in between, the run may still load what it archived
(`may_load`); when another run has it now, the run loads nothing more (the two would write the
same records at once) and leaves its outcomes in the journal for the next run here.

A check that does not come back (a network partition hangs the lock's session) counts as lost
once it is `stale_after` seconds old, so a hung check never lets DELETEs go on unguarded.
"""

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Final

from routera_archive.dataset.lock import HeldLock, wait_for_any

logger = logging.getLogger(__name__)

CHECK_EVERY_S: Final = 0.1
STALE_AFTER_S: Final = 5.0


class LockWatch:
    def __init__(
        self,
        locks: Sequence[HeldLock],
        *,
        check_every: float = CHECK_EVERY_S,
        stale_after: float = STALE_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.locks = list(locks)
        self.check_every = check_every
        self.stale_after = stale_after
        self.clock = clock
        self.lost: str | None = None
        self.regained = False
        # Clear from the moment a loss is noticed until the watch knows whether it took the
        # lock again: a load must not be refused in that moment and then called done.
        self._settled = threading.Event()
        self._settled.set()
        self._confirmed_at = clock()
        self._ended = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="routera-lock-watch", daemon=True)

    def start(self) -> "LockWatch":
        self._confirmed_at = self.clock()
        self._thread.start()
        return self

    def stop(self) -> None:
        """End the watch (before the locks are released: their sessions are not shared)."""
        self._ended.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.stale_after + 1)

    def may_send(self) -> bool:
        """Whether a DELETE may start now: every lock held, and known to be so just now."""
        if self.lost is None and self.clock() - self._confirmed_at > self.stale_after:
            self.lost = f"the lock could not be confirmed for {self.stale_after:.0f} s"
            logger.error("%s; no more DELETEs are sent", self.lost)
        return self.lost is None

    def may_load(self, wait: float = 0.0) -> bool:
        """Whether the run may still write its outcomes to the dataset; a lock just lost is
        waited for, up to `wait` seconds, while the watch tries to take it again."""
        if self.may_send():
            return True
        self._settled.wait(wait)
        return self.regained

    def _watch(self) -> None:
        while not self._ended.is_set() and self.lost is None:
            handles = [h for lock in self.locks if (h := lock.wait_handle()) is not None]
            wait_for_any(handles, self.check_every)
            if self._ended.is_set():
                return
            reason = next((r for lock in self.locks if (r := lock.check()) is not None), None)
            if reason is None:
                self._confirmed_at = self.clock()
                continue
            self._settled.clear()
            self.lost = reason
            logger.error("the run lost its lock: %s; no more DELETEs are sent", reason)
            self.regained = all(lock.check() is None or lock.regain() for lock in self.locks)
            self._settled.set()
            if self.regained:
                logger.warning("the lock was taken again: what was archived is loaded")
            else:
                logger.error("another run holds the dataset now: nothing more is loaded")
