"""A full disk under the run's folder (its journal, dlt's load packages) ends the run, says why,
and loses nothing: the real CLI, its pipeline folder on a small tmpfs filled mid-run.

Found by an outside test: with the journal's disk full, 4 of 6 runs never ended (the call worker
waited in its shutdown on a full result queue, then its journal's last flush raised before it
said `done`, and the run waited for that line for ever); a SIGTERM did not help.
"""

import errno
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from routera_archive_sandbox import SandboxServer
from tests.e2e.cli_support import Target, start_cli
from tests.e2e.test_signals import (
    archived_in_sandbox,
    audit_ids,
    enqueue_all,
    run_env,
    slow_server,
    wait_for_deletes,
)

pytestmark = pytest.mark.e2e

__all__ = ["slow_server"]  # the fixture, shared with test_signals.py

DISK_BYTES = 8 << 20  # room for dlt's pipeline state and a few chunks, not for the filler


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs (mounting needs root, as in CI's container); skipped where not allowed."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.strip()}): needs root")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(disk: Path) -> Path:
    """Write to `disk` until it is full; the file to remove to free it again."""
    filler = disk / "filler"
    block = b"\0" * (64 << 10)
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(block)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        try:  # what a 64 KiB block left over
            while True:
                out.write(b"\0" * 512)
        except OSError:
            pass
    return filler


@pytest.mark.parametrize("target", ["duckdb"], indirect=True)
# The SIGTERM case in the default suite (the one that hung for good before); alone: `--run-slow`.
@pytest.mark.parametrize(
    "then_sigterm",
    [
        pytest.param(False, id="alone", marks=pytest.mark.slow),
        pytest.param(True, id="then-SIGTERM"),
    ],
)
def test_a_full_disk_ends_the_run_saying_why_and_the_next_run_loses_nothing(
    slow_server: SandboxServer, target: Target, small_disk: Path, then_sigterm: bool
) -> None:
    ids = enqueue_all(slow_server, target)
    env = run_env(slow_server, target) | {"DLT_DATA_DIR": str(small_disk / "dlt_data")}
    run = start_cli(target.workdir, env, *target.command("run", "--force"))
    try:
        wait_for_deletes(slow_server, 60)
        filler = fill(small_disk)
        if then_sigterm:
            run.send_signal(signal.SIGTERM)
        started = time.monotonic()
        stdout, stderr = run.communicate(timeout=120)
        took = time.monotonic() - started
    finally:
        if run.poll() is None:
            run.kill()
    output = " ".join((stdout + stderr).split())

    assert run.returncode == 1, output
    assert "Traceback" not in output, output
    assert "No space left on device" in output, output
    assert "free space, then run again" in output, output
    assert took < 90, f"the run took {took:.0f} s to end on a full disk"

    # Space freed, the next run from the same folder loses nothing and archives nothing twice.
    filler.unlink()
    again = start_cli(target.workdir, env, *target.command("run", "--force"))
    stdout, stderr = again.communicate(timeout=180)
    assert again.returncode == 0, stdout + stderr
    assert sorted(audit_ids(target)) == sorted(ids)
    assert archived_in_sandbox(slow_server) == set(ids)
    assert set(slow_server.state.stats()["deletes_succeeded"].values()) == {1}
