"""Nothing lost, nothing archived twice: `routera-archive run` killed with SIGKILL, again and again.

A queue of contacts (some requested twice, some unknown to the API, one archived beforehand, and
requests that can never be valid) is drained by runs that are SIGKILLed at seeded random moments
(startup, recovery, calls, extract, normalize, load), then by a last run that finishes. See
`crash_harness.py` for the machinery and `verify` for every promise that is checked.
"""

import fcntl
import json
import random
import time
from pathlib import Path

import pytest

from sandbox import FaultConfig, SandboxConfig, SandboxServer
from tests.e2e.crash_harness import (
    PROCESS_TIMEOUT_S,
    START_LINE,
    CrashHarness,
    KillPlan,
    draw_kill_plans,
    verify,
)

pytestmark = pytest.mark.e2e

# A few ms per answer so calls take time and a kill can catch requests in flight.
LATENCY_MS = 4.0
CHUNK_SIZE = 100


def crash_and_recover(tmp_path: Path, *, seed: int, contacts: int, kills: int) -> None:
    rng = random.Random(seed)
    config = SandboxConfig(
        port=0, contacts=contacts + 40, seed=seed, faults=FaultConfig(latency_ms=LATENCY_MS)
    )
    began = time.monotonic()
    with SandboxServer(config) as server:
        harness = CrashHarness(tmp_path, server, chunk_size=CHUNK_SIZE)
        try:
            queue = harness.build_queue(rng, contacts=contacts)
            for number, plan in enumerate(draw_kill_plans(rng, kills), start=1):
                harness.kill_once(number, plan)
            final = harness.final_run()
        finally:
            harness.close()
        problems, figures = verify(harness, queue, final)
    report = harness.report(final, figures)
    print(f"\nseed {seed}, {contacts} contacts, {time.monotonic() - began:.1f}s\n{report}")

    assert final.exit_code == 0, f"{final.error()}\npackages {harness.packages()}\n{report}"
    assert not problems, "\n".join([*problems, report])
    killed = [a for a in harness.attempts if a.killed]
    # A run can finish before its planned moment on a fast machine; that kill then tests
    # nothing, but too many such misses would leave the crash paths untested.
    assert len(killed) >= kills - 2, f"most planned kills came after the run ended\n{report}"
    stages = harness.stages()
    assert stages["before first load"] and stages["after loads started"], (
        f"the kills must land both before the first load and after loads started\n{report}"
    )
    assert figures["lost_answers_recovered"] > 0, (
        f"no kill lost an answer, so recovery was not exercised\n{report}"
    )
    copies = figures["reloaded_copies"]
    assert not copies["contact_archives"] and not copies["archive_log"], f"{copies}\n{report}"


def test_sigkilled_runs_lose_nothing_and_archive_nothing_twice(tmp_path: Path) -> None:
    crash_and_recover(tmp_path, seed=20261128, contacts=1500, kills=5)


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("seed", [7, 4242])
def test_many_sigkills_on_a_long_queue(tmp_path: Path, seed: int) -> None:
    crash_and_recover(tmp_path, seed=seed, contacts=5000, kills=20)


def test_a_sigkilled_run_leaves_its_lock_behind_harmlessly(tmp_path: Path) -> None:
    config = SandboxConfig(port=0, contacts=200, seed=3, faults=FaultConfig(latency_ms=LATENCY_MS))
    with SandboxServer(config) as server:
        harness = CrashHarness(tmp_path, server, chunk_size=50)
        lock = harness.pipeline_dir / "run.lock"

        def lock_is_held(process: object) -> None:
            with lock.open("a+", encoding="utf-8") as handle, pytest.raises(BlockingIOError):
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

        try:
            harness.build_queue(random.Random(3), contacts=150, duplicated=0, unknown=0)
            # Killed as soon as it holds the lock and starts its calls, before any load.
            killed = harness.kill_once(1, KillPlan("calls", 0.0), before_kill=lock_is_held)
            assert killed.killed, harness.report()

            # The file stays, naming the dead run; the flock died with the process.
            holder = json.loads(lock.read_text("utf-8"))
            assert (holder["run_id"], holder["pid"]) == (killed.run_id, killed.pid)
            with lock.open("a+", encoding="utf-8") as handle:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # no BlockingIOError
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

            # The next run is not killed (its moment is the process timeout): it runs to its end.
            after = harness.kill_once(2, KillPlan("start", PROCESS_TIMEOUT_S))
        finally:
            harness.close()

    output = (tmp_path / "attempt-2.out").read_text("utf-8") + "\n".join(after.lines)
    assert not after.killed and after.exit_code == 0, output
    assert "another run holds" not in output and "locked" not in output, output
    started = [
        t for t, line in zip(after.times, after.lines, strict=True) if START_LINE.search(line)
    ]
    assert started and started[0] < 15, f"it started calling after {started}s\n{output}"
    assert "pending at start: 0" not in output, "the killed run cannot have finished"
    assert lock.read_text("utf-8") == "", "a run that ends releases and clears the lock"


@pytest.mark.parametrize("table", ["contact_archives", "archive_log"])
def test_a_crash_right_after_a_staging_insert_commits_adds_no_second_row(
    tmp_path: Path, table: str
) -> None:
    """Deterministic: the run SIGKILLs itself right after the first insert job for `table`
    committed (a `sitecustomize` hook in the child, see `CrashHarness.crash_at`)."""
    config = SandboxConfig(port=0, contacts=160, seed=9, faults=FaultConfig(latency_ms=LATENCY_MS))
    with SandboxServer(config) as server:
        harness = CrashHarness(tmp_path, server, chunk_size=50)
        try:
            queue = harness.build_queue(random.Random(9), contacts=120)
            marker = harness.crash_at(f"insert:{table}")
            crashed = harness.kill_once(1, KillPlan("start", PROCESS_TIMEOUT_S))
            harness.no_crash_hook()
            final = harness.final_run()
        finally:
            harness.close()
        problems, figures = verify(harness, queue, final)
    report = harness.report(final, figures)
    print(f"\n{report}")
    assert marker.exists() and crashed.killed, f"the hook did not crash the run\n{report}"
    assert not problems, "\n".join([*problems, report])
    copies = figures["reloaded_copies"]
    assert not copies["contact_archives"] and not copies["archive_log"], f"{copies}\n{report}"


def test_a_crash_inside_the_normalize_commit_does_not_block_every_later_run(
    tmp_path: Path,
) -> None:
    """Deterministic: the run SIGKILLs itself between the rename of its first normalized
    package and the deletion of the extracted copy; two runs follow."""
    config = SandboxConfig(port=0, contacts=160, seed=9, faults=FaultConfig(latency_ms=LATENCY_MS))
    with SandboxServer(config) as server:
        harness = CrashHarness(tmp_path, server, chunk_size=50)
        try:
            queue = harness.build_queue(random.Random(9), contacts=120)
            marker = harness.crash_at("normalize-commit")
            crashed = harness.kill_once(1, KillPlan("start", PROCESS_TIMEOUT_S))
            harness.no_crash_hook()
            left = harness.packages()
            first = harness.final_run("after-1")
            final = harness.final_run("after-2")
        finally:
            harness.close()
        assert marker.exists() and crashed.killed, f"the hook did not crash the run\n{left}"
        assert first.exit_code == 0 and final.exit_code == 0, (
            f"package {marker.read_text()} left as {left}; the next two runs exited "
            f"{first.exit_code} and {final.exit_code}: {final.error()}"
        )
        problems, figures = verify(harness, queue, final)
    report = harness.report(final, figures)
    assert not problems, "\n".join([*problems, report])
