"""The lock watch: DELETEs stop as soon as a lock is lost or cannot be confirmed; loads go on
only when the lock was taken again (run.lock_watch)."""

import threading
import time
from pathlib import Path

from routera_archive.dataset.lock import FileLock
from routera_archive.run.lock_watch import LockWatch


class FakeLock:
    def __init__(self, *, regains: bool = True) -> None:
        self.reason: str | None = None
        self.regains = regains
        self.regained = 0
        self.checked = threading.Event()
        self.hang = threading.Event()

    def acquire(self) -> None:
        return None

    def check(self) -> str | None:
        self.checked.set()
        if self.hang.is_set():
            time.sleep(2)
        return self.reason

    def regain(self) -> bool:
        self.regained += 1
        return self.regains

    def wait_handle(self) -> int | None:
        return None

    def release(self) -> None:
        return None


def wait_until(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.005)


def test_a_lost_lock_stops_the_sends_and_one_taken_again_lets_the_loads_go_on() -> None:
    lock = FakeLock(regains=True)
    watch = LockWatch([lock], check_every=0.01).start()
    try:
        wait_until(lock.checked.is_set)
        assert watch.may_send() and watch.may_load()
        lock.reason = "gone"
        wait_until(lambda: watch.lost is not None)
        wait_until(lambda: lock.regained == 1)
        assert not watch.may_send()
        wait_until(watch.may_load)
        assert watch.lost == "gone"
    finally:
        watch.stop()


def test_a_lock_another_run_took_stops_the_loads_too() -> None:
    lock = FakeLock(regains=False)
    watch = LockWatch([lock], check_every=0.01).start()
    try:
        lock.reason = "gone"
        wait_until(lambda: lock.regained == 1)
        time.sleep(0.05)
        assert not watch.may_send() and not watch.may_load()
    finally:
        watch.stop()


def test_a_check_that_hangs_counts_as_lost_once_stale() -> None:
    now = [0.0]
    lock = FakeLock()
    watch = LockWatch([lock], check_every=0.01, stale_after=5.0, clock=lambda: now[0]).start()
    try:
        wait_until(lock.checked.is_set)
        lock.hang.set()
        now[0] = 4.0
        assert watch.may_send()
        now[0] = 60.0
        assert not watch.may_send() and not watch.may_load()
        assert watch.lost is not None and "could not be confirmed" in watch.lost
    finally:
        watch.stop()


def test_a_lock_file_removed_or_replaced_is_lost_and_can_be_taken_again(tmp_path: Path) -> None:
    path = tmp_path / "locks" / "dataset.lock"
    lock = FileLock(path, "run-1", what="dataset")
    lock.acquire()
    try:
        assert lock.check() is None
        path.unlink()
        assert lock.check() == f"the lock file {path} was removed"
        path.write_text("someone else's", encoding="utf-8")
        assert lock.check() == f"the lock file {path} was replaced"
        path.unlink()
        assert lock.regain()
        assert lock.check() is None
        assert lock.holder()["run_id"] == "run-1"
        other = FileLock(path, "run-2", what="dataset")
        assert not other.regain()  # held: another run is refused
    finally:
        lock.release()
    lock.release()  # twice, or after a loss: never raises


class SlowRegainLock(FakeLock):
    """Taking the lock again takes a while (a PostgreSQL session to open on a loaded host)."""

    def __init__(self) -> None:
        super().__init__(regains=True)
        self.regaining = threading.Event()
        self.may_finish = threading.Event()

    def regain(self) -> bool:
        self.regaining.set()
        self.may_finish.wait(5)
        return super().regain()


def test_a_load_asked_for_while_the_lock_is_being_taken_again_waits_for_the_answer() -> None:
    """Once a load asked in that moment was refused and the run said it had loaded everything
    (seen under load: the trail held nothing of what the run archived)."""
    lock = SlowRegainLock()
    watch = LockWatch([lock], check_every=0.01).start()
    try:
        lock.reason = "gone"
        wait_until(lock.regaining.is_set)
        assert not watch.may_load()  # without waiting: not yet
        threading.Timer(0.2, lock.may_finish.set).start()
        assert watch.may_load(wait=5)
        assert watch.regained
    finally:
        lock.may_finish.set()
        watch.stop()
