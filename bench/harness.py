"""The harness: processes measured from the outside, and the machine they share.

Every figure is taken the way a scheduler sees a process: wall time from start to exit, CPU time
and peak memory from the kernel (`wait4`'s `rusage`, which counts the call worker too: the run
reaps it), and the resident memory of the whole process tree sampled while it runs, since the
call worker's memory is not in the run's `ru_maxrss`. The machine is shared, so each process
also records how many cores other processes kept busy meanwhile: a configuration can wait for a
quiet machine first (`wait_until_quiet`) and be measured again when it was disturbed
(`quietest`), keeping the quieter attempt.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol, TypeVar

BENCH_DIR = Path(__file__).resolve().parent
PYTHON = sys.executable
CLI = str(Path(sys.executable).with_name("routera-archive"))
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROCESS_TIMEOUT_S = 3600.0
RSS_SAMPLE_S = 0.5

# Progress lines for whoever runs the benchmark (the entry point prints them).
Say = Callable[[str], None]


# --------------------------------------------------------------------------------- the machine
@dataclass
class CpuSnapshot:
    """Busy and total jiffies of the whole machine (first line of /proc/stat)."""

    busy: int
    total: int

    @classmethod
    def take(cls) -> CpuSnapshot:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        return cls(busy=sum(values) - idle, total=sum(values))


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def busy_cores(seconds: float = 3.0) -> float:
    """Cores the machine keeps busy over `seconds` (while this process sleeps)."""
    before = CpuSnapshot.take()
    time.sleep(seconds)
    after = CpuSnapshot.take()
    return (after.busy - before.busy) / CLOCK_TICKS / seconds


def wait_until_quiet(max_busy: float, timeout: float) -> float:
    """Wait (at most `timeout` s) until other work keeps at most `max_busy` cores busy, so a
    configuration does not start in the middle of someone else's test run. Returns the last
    reading; the configuration then measures its own disturbance anyway."""
    deadline = time.monotonic() + timeout
    busy = busy_cores()
    while busy > max_busy and time.monotonic() < deadline:
        time.sleep(5)
        busy = busy_cores()
    return busy


def load_average() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return (round(one, 2), round(five, 2), round(fifteen, 2))


def machine_info() -> dict[str, Any]:
    """What the figures depend on: cores, CPU model, memory, and the versions that matter."""
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kb = int(line.split()[1])
    versions = {"python": platform.python_version()}
    for package in ("dlt", "duckdb", "httpx", "httpcore", "anyio", "uvicorn", "routera-archive"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(memory_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "versions": versions,
    }


# ----------------------------------------------------------------------------- the processes
def clean_env(**extra: str) -> dict[str, str]:
    """This environment minus any routera/dlt settings a developer may have exported."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SOURCES__", "DESTINATION__", "DLT_", "RUNTIME__", "BENCH_"))
    }
    env.update(extra)
    return env


def bench_script(name: str, *args: str) -> list[str]:
    """The command line of one of the bench's own scripts, run by this interpreter."""
    return [PYTHON, str(BENCH_DIR / name), *args]


def last_json_line(stdout: str) -> dict[str, Any]:
    """The one JSON line a bench script prints last."""
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return result


def script_result(process: ProcessRun, what: str) -> dict[str, Any]:
    """A bench script's JSON line; a script that failed stops the benchmark."""
    if process.exit_code != 0:
        raise RuntimeError(f"{what} failed: {process.stderr[-2000:]}")
    return last_json_line(process.stdout)


class CpuMeter(Protocol):
    """A process beside the measured one (the sandbox) whose CPU time is counted apart."""

    def cpu_seconds(self) -> float: ...


@dataclass
class ProcessRun:
    """One process, measured from the outside."""

    label: str
    command: list[str]
    exit_code: int
    wall_s: float
    started_at: float
    ended_at: float
    peak_rss_mb: float
    cpu_s: float
    sandbox_cpu_s: float
    # Cores other processes kept busy meanwhile, on average (machine busy time minus ours).
    other_cores: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    stdout: str
    stderr: str
    # (seconds since start, RSS MB) every RSS_SAMPLE_S: shows whether memory grows with the run.
    rss_series: list[tuple[float, float]] = field(default_factory=list)

    def rss_at(self, share: float) -> float:
        """RSS (MB) when `share` of the wall time had passed (0 without samples)."""
        moment = share * self.wall_s
        earlier = [rss for t, rss in self.rss_series if t <= moment]
        return earlier[-1] if earlier else 0.0


def _status_kb(pid: int, field_name: str) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    value = next((line.split()[1] for line in text.splitlines() if line[:6] == field_name), None)
    return None if value is None else int(value)  # None: a zombie, exited, not yet reaped


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return found
    for child in map(int, children):
        found.append(child)
        found.extend(_descendants(child))
    return found


def _sample_rss(
    pid: int,
    started: float,
    series: list[tuple[float, float]],
    descendants_peak_kb: dict[int, int],
    done: threading.Event,
) -> None:
    """Append the VmRSS of `pid` plus its descendants (the call worker) every RSS_SAMPLE_S
    until the process is gone, and keep each descendant's own peak (VmHWM)."""
    while not done.is_set():
        rss = _status_kb(pid, "VmRSS:")
        if rss is None:
            return
        for child in _descendants(pid):
            child_rss = _status_kb(child, "VmRSS:") or 0
            rss += child_rss
            peak = _status_kb(child, "VmHWM:") or 0
            descendants_peak_kb[child] = max(descendants_peak_kb.get(child, 0), peak)
        series.append((round(time.perf_counter() - started, 2), round(rss / 1024, 1)))
        done.wait(RSS_SAMPLE_S)


def _kill_group_when(
    pid: int, kill_when: Callable[[], bool], poll_s: float, reaped: threading.Event
) -> None:
    """SIGKILL the process group `pid` leads once `kill_when()` is true, unless it ended."""
    while not reaped.is_set():
        if kill_when():
            if not reaped.is_set():  # the group's id is not reused before its leader is reaped
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
            return
        reaped.wait(poll_s)


def run_process(
    label: str,
    command: list[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    sandbox: CpuMeter | None,
    timeout: float = PROCESS_TIMEOUT_S,
    kill_when: Callable[[], bool] | None = None,
    kill_poll_s: float = 0.02,
) -> ProcessRun:
    """Run `command` to its end; wall time, peak RSS and CPU come from the kernel (`wait4`).

    With `kill_when`, the command runs in a process group of its own, and the whole group (its
    call worker too) is SIGKILLed the first time `kill_when()` is true (asked every
    `kill_poll_s`): a crash, measured like any other end (its exit code is -9)."""
    cwd.mkdir(parents=True, exist_ok=True)
    out_path, err_path = cwd / f"{label}.stdout", cwd / f"{label}.stderr"
    load_before = load_average()
    sandbox_cpu = sandbox.cpu_seconds() if sandbox else 0.0
    machine = CpuSnapshot.take()
    with out_path.open("w") as out, err_path.open("w") as err:
        started_at, started = time.time(), time.perf_counter()
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=err,
            start_new_session=kill_when is not None,
        )
        watchdog = threading.Timer(timeout, process.kill)
        watchdog.start()
        rss_series: list[tuple[float, float]] = []
        descendants_peak_kb: dict[int, int] = {}
        reaped = threading.Event()
        if kill_when is not None:
            threading.Thread(
                target=_kill_group_when,
                args=(process.pid, kill_when, kill_poll_s, reaped),
                daemon=True,
            ).start()
        sampler = threading.Thread(
            target=_sample_rss,
            args=(process.pid, started, rss_series, descendants_peak_kb, reaped),
            daemon=True,
        )
        sampler.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            reaped.set()  # before the pid can be reused by another process
            watchdog.cancel()
        wall = time.perf_counter() - started
        ended_at = time.time()
    sampler.join(timeout=5)
    process.returncode = os.waitstatus_to_exitcode(status)
    machine_after = CpuSnapshot.take()
    sandbox_cpu = (sandbox.cpu_seconds() - sandbox_cpu) if sandbox else 0.0
    cpu = usage.ru_utime + usage.ru_stime
    busy_s = (machine_after.busy - machine.busy) / CLOCK_TICKS
    return ProcessRun(
        label=label,
        command=command,
        exit_code=process.returncode,
        wall_s=wall,
        started_at=started_at,
        ended_at=ended_at,
        # The process's own peak (the kernel's) plus each descendant's own peak: an upper
        # bound of the tree's peak (the two peaks need not coincide), never an underestimate.
        peak_rss_mb=max(
            (usage.ru_maxrss + sum(descendants_peak_kb.values())) / 1024,
            max((rss for _, rss in rss_series), default=0.0),
        ),
        cpu_s=cpu,
        sandbox_cpu_s=sandbox_cpu,
        other_cores=max(0.0, (busy_s - cpu - sandbox_cpu) / wall) if wall else 0.0,
        load_before=load_before,
        load_after=load_average(),
        stdout=out_path.read_text(errors="replace"),
        stderr=err_path.read_text(errors="replace"),
        rss_series=rss_series,
    )


# -------------------------------------------------------------------------- measuring again
class Disturbable(Protocol):
    """A measurement that knows how many cores other processes kept busy while it ran."""

    @property
    def other_cores(self) -> float: ...

    def note_attempts(self, other_cores: list[float]) -> None:
        """Keep the other cores of every attempt, where the results have room for them."""


D = TypeVar("D", bound=Disturbable)


def quietest(measure: Callable[[], D], max_other: float, retries: int, say: Say) -> D:
    """Measure; while other processes kept more than `max_other` cores busy, measure again
    (after a pause) and keep the least disturbed attempt. The machine is shared."""
    best = measure()
    attempts = [best.other_cores]
    for _ in range(retries):
        if best.other_cores <= max_other:
            break
        say(f"  other processes kept {best.other_cores:.2f} cores busy: measuring again")
        wait_until_quiet(max_other / 2, 120.0)
        again = measure()
        attempts.append(again.other_cores)
        if again.other_cores < best.other_cores:
            best = again
    best.note_attempts(attempts)
    return best
