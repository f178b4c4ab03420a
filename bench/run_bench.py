"""Benchmark the connector against the ideal, the hand-written loop and a raw dlt load.

Issue 6 asks whether the API's latency and rate limit, not the connector, are the ceiling. Every
figure here is measured from the outside, the way a scheduler sees a run:

- the sandbox runs as its own process (`routera-archive sandbox`, through `timed_sandbox.py`,
  which only adds the time of each answer), so the server never shares the connector's GIL;
- the connector runs as its own process (`routera-archive run --force ...`) in a fresh working
  directory with a fresh `DLT_DATA_DIR`; its wall time is process start to exit, its CPU time
  from `wait4`'s `rusage` (the call worker's included: it is reaped by the run), its peak
  memory that of the process tree: the kernel's `ru_maxrss` plus the peak (VmHWM) of every
  descendant seen by the RSS sampler, an upper bound since the two peaks need not coincide;
- throughput while archiving is counted on the server: API answers between the first and the
  last DELETE of the run (the run's log timestamps give a second, coarser figure);
- the sandbox's `/_sandbox/stats` gives the request counts, and the DuckDB file the audit rows,
  so each configuration also proves every contact was archived exactly once.

Baselines (ideal time, the hand-written loop, the raw load) are measured in the same invocation,
on the same machine state. The machine is shared, so each configuration also records how many
cores other processes kept busy meanwhile; a configuration disturbed by more than
`--max-other-cores` is measured again and the quieter attempt kept.

Run `.venv/bin/python bench/run_bench.py` (25-30 minutes) or `--quick` (about a minute); the
tables go to `bench/results/last_run*.md` (and `.json`). `--profile` runs the headline
configuration under py-spy instead; `--only` picks configurations; `--connector-env` measures a
change of environment (e.g. one more package on PYTHONPATH) without touching the connector.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import httpx

BENCH_DIR = Path(__file__).resolve().parent
PYTHON = sys.executable
CLI = str(Path(sys.executable).with_name("routera-archive"))
CLIENT_ID = "sandbox-client"
CLIENT_SECRET = "sandbox-secret"
SEED = 0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
URL_LINE = re.compile(r"sandbox listening on (http://\S+)")
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
SENT_LINE = re.compile(r"HTTP requests sent: (\d+)")
SANDBOX_START_TIMEOUT_S = 300.0
# Extra environment for every connector run and bare httpx loop (`--connector-env`), e.g. a
# PYTHONPATH that makes one more package importable: what a change of environment alone gives.
CONNECTOR_ENV: dict[str, str] = {}
PROCESS_TIMEOUT_S = 3600.0

# (answer time, method, status, arrival time), as bench/timed_sandbox.py records them.
Stamp = tuple[float, str, int, float]
T = TypeVar("T")


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


# ----------------------------------------------------------------------------------- sandbox
def contact_ids(count: int, start: int = 0, seed: int = SEED) -> list[str]:
    """Ids of sandbox contacts `start .. start+count-1`: each contact's id comes from its own
    seeded RNG (sandbox/seed.py), so they are known without listing them through the API."""
    from routera_archive_sandbox.seed import contact_rng, random_uuid4

    return [random_uuid4(contact_rng(seed, index)) for index in range(start, start + count)]


@dataclass
class Sandbox:
    """A sandbox in its own process; `stop()` returns the time of every API answer."""

    process: subprocess.Popen[str]
    url: str
    contacts: int
    latency_ms: float
    rate_limit: float
    times_file: Path
    stderr_file: Path

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = httpx.get(f"{self.url}/_sandbox/stats", timeout=60).json()
        return result

    def reset_stats(self) -> None:
        httpx.post(f"{self.url}/_sandbox/reset-stats", timeout=60).raise_for_status()

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.process.pid)

    def stop(self) -> list[Stamp]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not self.times_file.exists():
            return []
        return [
            (float(t), str(m), int(s), float(a))
            for t, m, s, a in json.loads(self.times_file.read_text())
        ]


def start_sandbox(
    workdir: Path, contacts: int, latency_ms: float, rate_limit: float = 0.0
) -> Sandbox:
    """`routera-archive sandbox --port 0 ...` as a separate process; returns once it serves."""
    workdir.mkdir(parents=True, exist_ok=True)
    times_file = workdir / "sandbox_times.json"
    stderr_file = workdir / "sandbox.stderr"
    command = [
        PYTHON,
        str(BENCH_DIR / "timed_sandbox.py"),
        "sandbox",
        "--port",
        "0",
        "--contacts",
        str(contacts),
        "--seed",
        str(SEED),
        "--latency-ms",
        f"{latency_ms:g}",
        "--client-id",
        CLIENT_ID,
        "--client-secret",
        CLIENT_SECRET,
    ]
    if rate_limit:
        command += ["--rate-limit", f"{rate_limit:g}"]
    env = clean_env() | {"BENCH_SANDBOX_TIMES": str(times_file)}
    with stderr_file.open("w") as stderr:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, cwd=workdir
        )
    assert process.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()

    def drain() -> None:  # keeps the pipe from filling, whatever the sandbox prints later
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=drain, daemon=True).start()
    deadline = time.monotonic() + SANDBOX_START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        if line is None:
            break
        if match := URL_LINE.search(line):
            return Sandbox(
                process, match[1], contacts, latency_ms, rate_limit, times_file, stderr_file
            )
    process.kill()
    raise RuntimeError(f"the sandbox did not start: {stderr_file.read_text()[-2000:]}")


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


def connector_env(workdir: Path, sandbox: Sandbox, **extra: str) -> dict[str, str]:
    return clean_env(
        SOURCES__ROUTERA__BASE_URL=sandbox.url,
        SOURCES__ROUTERA__CLIENT_ID=CLIENT_ID,
        SOURCES__ROUTERA__CLIENT_SECRET=CLIENT_SECRET,
        DLT_DATA_DIR=str(workdir / "dlt_data"),
        **extra,
    )


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


RSS_SAMPLE_S = 0.5


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


def run_process(
    label: str,
    command: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    sandbox: Sandbox | None,
    timeout: float = PROCESS_TIMEOUT_S,
) -> ProcessRun:
    """Run `command` to its end; wall time, peak RSS and CPU come from the kernel (`wait4`)."""
    cwd.mkdir(parents=True, exist_ok=True)
    out_path, err_path = cwd / f"{label}.stdout", cwd / f"{label}.stderr"
    load_before = load_average()
    sandbox_cpu = sandbox.cpu_seconds() if sandbox else 0.0
    machine = CpuSnapshot.take()
    with out_path.open("w") as out, err_path.open("w") as err:
        started_at, started = time.time(), time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=err)
        watchdog = threading.Timer(timeout, process.kill)
        watchdog.start()
        rss_series: list[tuple[float, float]] = []
        descendants_peak_kb: dict[int, int] = {}
        reaped = threading.Event()
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


def enqueue(workdir: Path, sandbox: Sandbox, ids: list[str]) -> float:
    """Queue `ids` with `routera-archive enqueue`; returns its seconds (not part of any figure)."""
    run_dir = workdir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    ids_file = workdir / "ids.txt"
    ids_file.write_text("\n".join(ids) + "\n", encoding="utf-8")
    started = time.perf_counter()
    done = subprocess.run(
        [CLI, "enqueue", str(ids_file), "--requested-by", "bench", "--reason", "benchmark"],
        cwd=run_dir,
        env=connector_env(workdir, sandbox),
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT_S,
    )
    if done.returncode != 0 or f"enqueued {len(ids)} requests" not in done.stdout:
        raise RuntimeError(f"enqueue failed ({done.returncode}): {done.stdout}{done.stderr}")
    return time.perf_counter() - started


# ------------------------------------------------------------------------------ measurements
@dataclass
class ApiWindow:
    """API answers the server sent while one process ran, judged from their times."""

    requests: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    first_delete: float | None = None
    last_delete: float | None = None
    # API answers per second between the first and the last DELETE: the archive phase.
    archive_rps: float = 0.0
    archive_s: float = 0.0
    # Most API answers in any [t, t + 1 s) window, and in any whole calendar second.
    max_in_1s_window: int = 0
    max_in_calendar_second: int = 0
    # The same for the requests' arrivals: what a server's rate limiter counts.
    max_arrivals_in_1s_window: int = 0
    max_arrivals_in_calendar_second: int = 0


def most_in_one_second(times: list[float]) -> tuple[int, int]:
    """(most of `times` in any [t, t + 1 s) window, most in one calendar second); sorted input."""
    most = low = 0
    for high, moment in enumerate(times):
        while times[low] <= moment - 1.0:
            low += 1
        most = max(most, high - low + 1)
    return most, max(Counter(int(t) for t in times).values(), default=0)


def api_window(stamps: list[Stamp], start: float, end: float) -> ApiWindow:
    chosen = [s for s in stamps if start <= s[0] <= end]
    window = ApiWindow(requests=len(chosen))
    window.by_status = dict(Counter(str(status) for _, _, status, _ in chosen))
    deletes = [t for t, method, _, _ in chosen if method == "DELETE"]
    if deletes:
        window.first_delete, window.last_delete = deletes[0], deletes[-1]
        during = [t for t, _, _, _ in chosen if deletes[0] <= t <= deletes[-1]]
        window.archive_s = deletes[-1] - deletes[0]
        if window.archive_s > 0:
            window.archive_rps = (len(during) - 1) / window.archive_s
    window.max_in_1s_window, window.max_in_calendar_second = most_in_one_second(
        [t for t, _, _, _ in chosen]
    )
    window.max_arrivals_in_1s_window, window.max_arrivals_in_calendar_second = most_in_one_second(
        sorted(arrived for _, _, _, arrived in chosen)
    )
    return window


@dataclass
class AuditCounts:
    archives: int = 0
    distinct_archived_ids: int = 0
    log_by_status: dict[str, int] = field(default_factory=dict)
    queue: int = 0


def audit_counts(database: Path) -> AuditCounts:
    """What the run left in DuckDB: audit rows, distinct ids, log rows by status, queue size."""
    import duckdb

    counts = AuditCounts()
    if not database.exists():
        return counts
    with duckdb.connect(str(database), read_only=True) as db:
        counts.archives, counts.distinct_archived_ids = db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT id) FROM routera_archive.contact_archives"
        ).fetchone() or (0, 0)
        counts.log_by_status = dict(
            db.execute(
                "SELECT status, COUNT(*) FROM routera_archive.archive_log GROUP BY status"
            ).fetchall()
        )
        row = db.execute("SELECT COUNT(*) FROM routera_archive.archive_queue").fetchone()
        counts.queue = int(row[0]) if row else 0
    return counts


@dataclass
class ConnectorRun:
    """One `routera-archive run` against its own sandbox, with everything needed to judge it."""

    label: str
    contacts: int
    latency_ms: float
    concurrency: int
    rps: float
    sandbox_rate_limit: float
    chunk_size: int | None
    enqueue_s: float
    process: ProcessRun
    requests_sent: int | None
    # Archive phase from the run's own log: "N requests to handle" to "progress N/N".
    log_archive_s: float | None
    sandbox_totals: dict[str, Any]
    deletes_succeeded: int
    contacts_deleted_more_than_once: int
    audit: AuditCounts
    api: ApiWindow = field(default_factory=ApiWindow)
    attempts_other_cores: list[float] = field(default_factory=list)

    @property
    def ideal_rps(self) -> float:
        """Requests per second the API allows: concurrency / latency, or the binding limit."""
        limits = [self.rps, self.sandbox_rate_limit]
        by_latency = self.concurrency / (self.latency_ms / 1000) if self.latency_ms else 0.0
        candidates = [x for x in (*limits, by_latency) if x]
        return min(candidates) if candidates else 0.0

    @property
    def ideal_s(self) -> float:
        return self.contacts / self.ideal_rps if self.ideal_rps else 0.0

    @property
    def log_archive_rps(self) -> float | None:
        return self.contacts / self.log_archive_s if self.log_archive_s else None

    def problems(self) -> list[str]:
        """Why the counts are wrong, if they are: every contact archived once, and loaded once."""
        n = self.contacts
        found = []
        if self.process.exit_code != 0:
            found.append(f"exit code {self.process.exit_code}")
        deletes = self.sandbox_totals.get("by_method", {}).get("DELETE", 0)
        throttled = self.api.by_status.get("429", 0)
        if deletes - throttled != n:
            found.append(f"{deletes} DELETEs ({throttled} throttled) for {n} contacts")
        if self.deletes_succeeded != n:
            found.append(f"{self.deletes_succeeded} contacts archived, expected {n}")
        if self.contacts_deleted_more_than_once:
            found.append(f"{self.contacts_deleted_more_than_once} contacts archived twice")
        if self.audit.archives != n or self.audit.distinct_archived_ids != n:
            found.append(
                f"{self.audit.archives} audit rows ({self.audit.distinct_archived_ids} ids)"
            )
        if self.audit.log_by_status != {"archived": n}:
            found.append(f"archive_log {self.audit.log_by_status}")
        return found


def _log_time(line: str) -> float | None:
    match = LOG_LINE.match(line)
    if not match:
        return None
    return datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def log_archive_seconds(stderr: str, contacts: int) -> float | None:
    """From "run X: N requests to handle" to "progress N/N" in the run's log."""
    start = end = None
    for line in stderr.splitlines():
        if start is None and "requests to handle" in line:
            start = _log_time(line)
        elif f"progress {contacts}/{contacts}" in line:
            end = _log_time(line)
    return end - start if start is not None and end is not None else None


def run_connector(
    label: str,
    workdir: Path,
    sandbox: Sandbox,
    *,
    contacts: int,
    concurrency: int,
    rps: float,
    chunk_size: int | None = None,
    enqueue_s: float = 0.0,
    wrapper: tuple[str, ...] = (),
) -> ConnectorRun:
    """`routera-archive run --force --concurrency C --rps X` over a queue already filled.

    The sandbox's stats are reset first, so its counts are this run's alone. `wrapper` goes in
    front of the command (a profiler).
    """
    sandbox.reset_stats()
    extra = dict(CONNECTOR_ENV)
    if chunk_size:
        extra["SOURCES__ROUTERA__CHUNK_SIZE"] = str(chunk_size)
    command = [CLI, "run", "--force", "--concurrency", str(concurrency), "--rps", f"{rps:g}"]
    if wrapper:
        command = [*wrapper, PYTHON, *command]
    process = run_process(
        label,
        command,
        cwd=workdir / "run",
        env=connector_env(workdir, sandbox, **extra),
        sandbox=sandbox,
    )
    stats = sandbox.stats()
    sent = SENT_LINE.search(process.stdout)
    deleted = stats.get("deletes_succeeded", {})
    return ConnectorRun(
        label=label,
        contacts=contacts,
        latency_ms=sandbox.latency_ms,
        concurrency=concurrency,
        rps=rps,
        sandbox_rate_limit=sandbox.rate_limit,
        chunk_size=chunk_size,
        enqueue_s=enqueue_s,
        process=process,
        requests_sent=int(sent[1]) if sent else None,
        log_archive_s=log_archive_seconds(process.stderr, contacts),
        sandbox_totals=stats.get("totals", {}),
        deletes_succeeded=len(deleted),
        contacts_deleted_more_than_once=sum(1 for count in deleted.values() if count > 1),
        audit=audit_counts(workdir / "run" / "routera_audit.duckdb"),
    )


def connector_config(
    label: str,
    root: Path,
    *,
    contacts: int,
    latency_ms: float,
    concurrency: int,
    rps: float,
    rate_limit: float = 0.0,
    chunk_size: int | None = None,
    wrapper: tuple[str, ...] = (),
) -> ConnectorRun:
    """A fresh sandbox of `contacts`, all of them queued, one run, then the sandbox stopped."""
    workdir = root / label
    shutil.rmtree(workdir, ignore_errors=True)
    sandbox = start_sandbox(workdir, contacts, latency_ms, rate_limit)
    try:
        enqueue_s = enqueue(workdir, sandbox, contact_ids(contacts))
        run = run_connector(
            label,
            workdir,
            sandbox,
            contacts=contacts,
            concurrency=concurrency,
            rps=rps,
            chunk_size=chunk_size,
            enqueue_s=enqueue_s,
            wrapper=wrapper,
        )
    finally:
        stamps = sandbox.stop()
    run.api = api_window(stamps, run.process.started_at, run.process.ended_at)
    return run


@dataclass
class HandwrittenRun:
    contacts: int
    process: ProcessRun
    phases: dict[str, Any]
    api: ApiWindow = field(default_factory=ApiWindow)
    deletes_succeeded: int = 0


@dataclass
class Versus:
    """The connector and the hand-written loop on the same number of fresh contacts."""

    connector: ConnectorRun
    handwritten: HandwrittenRun


def versus_config(root: Path, *, contacts: int, latency_ms: float, concurrency: int) -> Versus:
    """One sandbox with 2N contacts: the connector archives the first N, the loop the next N."""
    workdir = root / "versus"
    shutil.rmtree(workdir, ignore_errors=True)
    sandbox = start_sandbox(workdir, 2 * contacts, latency_ms)
    try:
        ids = contact_ids(2 * contacts)
        enqueue_s = enqueue(workdir, sandbox, ids[:contacts])
        connector = run_connector(
            "versus-connector",
            workdir,
            sandbox,
            contacts=contacts,
            concurrency=concurrency,
            rps=0,
            enqueue_s=enqueue_s,
        )
        loop_dir = workdir / "handwritten"
        loop_dir.mkdir()
        (loop_dir / "ids.txt").write_text("\n".join(ids[contacts:]) + "\n", encoding="utf-8")
        sandbox.reset_stats()
        process = run_process(
            "handwritten",
            [
                PYTHON,
                str(BENCH_DIR / "handwritten.py"),
                sandbox.url,
                str(loop_dir / "ids.txt"),
                # Not handwritten.duckdb: DuckDB cannot hold a dataset named like its file.
                str(loop_dir / "loop.duckdb"),
            ],
            cwd=loop_dir,
            env=connector_env(loop_dir, sandbox),
            sandbox=sandbox,
        )
        loop_stats = sandbox.stats()
    finally:
        stamps = sandbox.stop()
    connector.api = api_window(stamps, connector.process.started_at, connector.process.ended_at)
    phases = json.loads(process.stdout.strip().splitlines()[-1]) if process.exit_code == 0 else {}
    handwritten = HandwrittenRun(
        contacts=contacts,
        process=process,
        phases=phases,
        api=api_window(stamps, process.started_at, process.ended_at),
        deletes_succeeded=len(loop_stats.get("deletes_succeeded", {})),
    )
    return Versus(connector, handwritten)


@dataclass
class RawLoad:
    records: int
    chunk: int | None
    process: ProcessRun
    load_s: float
    import_s: float


def raw_load_config(root: Path, records: int, chunk: int | None = None) -> RawLoad:
    """`bench/raw_load.py`: `pipeline.run()` of `records` records already in memory."""
    label = f"raw-load-{records}" + (f"-chunk{chunk}" if chunk else "")
    workdir = root / label
    shutil.rmtree(workdir, ignore_errors=True)
    command = [PYTHON, str(BENCH_DIR / "raw_load.py"), str(records), str(workdir / "raw.duckdb")]
    if chunk:
        command += ["--chunk", str(chunk)]
    env = clean_env(DLT_DATA_DIR=str(workdir / "dlt_data"))
    process = run_process(label, command, cwd=workdir, env=env, sandbox=None)
    if process.exit_code != 0:
        raise RuntimeError(f"raw load failed: {process.stderr[-2000:]}")
    result = json.loads(process.stdout.strip().splitlines()[-1])
    return RawLoad(records, chunk, process, float(result["load_s"]), float(result["import_s"]))


@dataclass
class Ceiling:
    """A bare httpx loop (no connector code): what the HTTP stack itself reaches here."""

    latency_ms: float
    workers: int
    pools: int
    requests: int
    rps: float
    cpu_ms_per_request: float
    server_rps: float
    other_cores: float


def ceiling_config(
    root: Path, *, contacts: int, latency_ms: float, workers: int, pools: tuple[int, ...]
) -> list[Ceiling]:
    """The bare loop once per pool count, each on its own fresh contacts of one sandbox."""
    workdir = root / f"http-ceiling-{latency_ms:g}ms"
    shutil.rmtree(workdir, ignore_errors=True)
    sandbox = start_sandbox(workdir, contacts * len(pools), latency_ms)
    runs: list[tuple[int, ProcessRun, dict[str, Any]]] = []
    try:
        ids = contact_ids(contacts * len(pools))
        for number, pool_count in enumerate(pools):
            ids_file = workdir / f"ids-{pool_count}.txt"
            chunk = ids[number * contacts : (number + 1) * contacts]
            ids_file.write_text("\n".join(chunk) + "\n", encoding="utf-8")
            command = [
                PYTHON,
                str(BENCH_DIR / "http_ceiling.py"),
                sandbox.url,
                str(ids_file),
                "--workers",
                str(workers),
                "--pools",
                str(pool_count),
            ]
            process = run_process(
                f"ceiling-{pool_count}",
                command,
                cwd=workdir,
                env=connector_env(workdir, sandbox, **CONNECTOR_ENV),
                sandbox=sandbox,
            )
            if process.exit_code != 0:
                raise RuntimeError(f"http ceiling failed: {process.stderr[-2000:]}")
            runs.append((pool_count, process, json.loads(process.stdout.strip().splitlines()[-1])))
    finally:
        stamps = sandbox.stop()
    results = []
    for pool_count, process, result in runs:
        window = api_window(stamps, process.started_at, process.ended_at)
        results.append(
            Ceiling(
                latency_ms=latency_ms,
                workers=workers,
                pools=pool_count,
                requests=int(result["requests"]),
                rps=float(result["rps"]),
                cpu_ms_per_request=float(result["cpu_ms_per_request"]),
                server_rps=window.archive_rps,
                other_cores=process.other_cores,
            )
        )
    return results


def quietest(
    measure: Callable[[], T], other_cores: Callable[[T], float], max_other: float, retries: int
) -> T:
    """Measure; while other processes kept more than `max_other` cores busy, measure again
    (after a pause) and keep the least disturbed attempt. The machine is shared."""
    best = measure()
    attempts = [other_cores(best)]
    for _ in range(retries):
        if other_cores(best) <= max_other:
            break
        print(f"  other processes kept {other_cores(best):.2f} cores busy: measuring again")
        wait_until_quiet(max_other / 2, 120.0)
        again = measure()
        attempts.append(other_cores(again))
        if other_cores(again) < other_cores(best):
            best = again
    if isinstance(best, ConnectorRun):
        best.attempts_other_cores = attempts
    elif isinstance(best, Versus):
        best.connector.attempts_other_cores = attempts
    return best


# ---------------------------------------------------------------------------------- profile
# Where a sampled stack's time is counted: the first category, in this order, that any of its
# frames (or its thread's name) matches. Imports first, so lazy imports inside a load count as
# imports; loads before HTTP, since a load's thread never runs request code.
PROFILE_CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("imports (start-up and lazy)", ("_find_and_load ",)),
    (
        "dlt chunk loads (extract, normalize, load; worker threads)",
        ("load_fresh ", "dlt-pool", "Pipeline.run ", "Pipeline.load ", "Pipeline.normalize "),
    ),
    ("reading the queue (SQL) and start-up", ("PendingQueue", "make_pipeline ")),
    ("httpcore pool bookkeeping (scan of all connections)", ("_assign_requests_to_connections",)),
    (
        "httpx/httpcore: send request, read response",
        (
            "AsyncClient.send ",
            "build_request ",
            "AsyncHTTPTransport.handle_async_request ",
            "Response.aread ",
            "Response.aclose ",
        ),
    ),
    ("journal (JSON line + flush per outcome)", ("OutcomeJournal.",)),
    ("response parsing, outcome and row models", ("parse_archived_contact", "BaseModel.")),
    ("progress observer and logging", ("ProgressObserver.", "logging/__init__")),
    ("retry wrapper (tenacity)", ("tenacity",)),
    ("request pacer", ("RatePacer.", "aiolimiter")),
    ("work queues, sink, archiver glue", ("archive_concurrently", "ChunkSink.", "archive_request")),
    ("dlt telemetry thread", ("anon_tracker",)),
)


def profile_breakdown(raw: str) -> tuple[int, list[tuple[str, int]]]:
    """Samples per category from py-spy's `--format raw` output (one `stack count` a line)."""
    totals: Counter[str] = Counter()
    samples = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        # `--subprocesses` starts each stack with its process's command line.
        where = (
            "call worker: " if "routera_archive.calls.worker" in stack.split(";", 1)[0] else "run: "
        )
        for name, needles in PROFILE_CATEGORIES:
            if any(needle in stack for needle in needles):
                totals[where + name] += count
                break
        else:
            totals[where + "event loop and everything else"] += count
    return samples, totals.most_common()


def profile_headline(plan: Plan, root: Path, rate: int = 100) -> str:
    """The headline configuration under `py-spy record --gil --subprocesses`: in each process
    (the run and its call worker) only the thread holding the GIL is sampled, so the samples
    show what each interpreter lock is spent on."""
    py_spy = shutil.which("py-spy") or str(Path(PYTHON).with_name("py-spy"))
    if not Path(py_spy).exists():
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    raw_file = root / "profile.txt"
    wrapper = (
        py_spy,
        "record",
        "--gil",
        "--threads",
        "--subprocesses",
        "-r",
        str(rate),
        "-f",
        "raw",
    )
    run = connector_config(
        "profile",
        root,
        contacts=plan.headline_contacts,
        latency_ms=plan.latency_ms,
        concurrency=plan.concurrency,
        rps=0,
        wrapper=(*wrapper, "-o", str(raw_file), "--"),
    )
    samples, categories = profile_breakdown(raw_file.read_text())
    seconds = samples / rate
    lines = [
        f"py-spy --gil at {rate} Hz on the headline configuration ({run.contacts} contacts, "
        f"{run.latency_ms:g} ms, concurrency {run.concurrency}; the profiler slows the run): "
        f"wall {run.process.wall_s:.1f} s, GILs held {seconds:.1f} s in all "
        f"({seconds / run.process.wall_s:.2f} x the wall time: two processes), "
        f"archive {run.api.archive_rps:.0f} req/s.",
        "",
        *_table(
            ["where the GIL time goes", "seconds", "share"],
            [[name, f"{count / rate:.1f}", f"{count / samples:.0%}"] for name, count in categories],
        ),
    ]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class Plan:
    """Sizes of every configuration; `QUICK` shrinks them to about a minute in all."""

    latency_ms: float = 50.0
    concurrency: int = 32
    headline_contacts: int = 10_000
    versus_contacts: int = 2_000
    rate_limit: float = 100.0
    rate_contacts: int = 3_000
    memory_small: int = 10_000
    memory_large: int = 100_000
    ceiling_contacts: int = 4_000
    ceiling_pools: tuple[int, ...] = (1, 4)
    ceiling_latencies: tuple[float, ...] = (50.0, 0.0)
    # Diagnostics: the headline configuration with other chunk sizes (no target of their own).
    chunk_sizes: tuple[int, ...] = (2_000, 10_000)
    raw_chunk: int | None = 500


FULL = Plan()
QUICK = Plan(
    headline_contacts=1_000,
    versus_contacts=100,
    rate_contacts=300,
    memory_small=1_000,
    memory_large=4_000,
    ceiling_contacts=600,
    ceiling_pools=(1,),
    ceiling_latencies=(50.0,),
    chunk_sizes=(),
    raw_chunk=None,
)


@dataclass
class Results:
    mode: str
    command: str
    started: str
    finished: str = ""
    machine: dict[str, Any] = field(default_factory=dict)
    plan: dict[str, Any] = field(default_factory=dict)
    connector_env: dict[str, str] = field(default_factory=dict)
    headline: ConnectorRun | None = None
    versus: Versus | None = None
    rate_limited: ConnectorRun | None = None
    memory_small: ConnectorRun | None = None
    memory_large: ConnectorRun | None = None
    raw_load: RawLoad | None = None
    raw_load_chunked: RawLoad | None = None
    chunk_runs: list[ConnectorRun] = field(default_factory=list)
    ceiling: list[Ceiling] = field(default_factory=list)


PARTS = ("headline", "versus", "rate", "memory", "raw", "chunks", "ceiling")


def run_all(
    plan: Plan,
    root: Path,
    *,
    max_other: float,
    retries: int,
    mode: str,
    parts: tuple[str, ...] = PARTS,
    quiet_timeout: float = 0.0,
) -> Results:
    """Every configuration in `parts` (all by default), each with its own sandbox."""
    results = Results(
        mode=mode,
        command=" ".join([".venv/bin/python", "bench/run_bench.py", *sys.argv[1:]]),
        started=datetime.now().astimezone().isoformat(timespec="seconds"),
        machine=machine_info(),
        plan=asdict(plan),
        connector_env=dict(CONNECTOR_ENV),
    )
    lat, conc = plan.latency_ms, plan.concurrency

    def connector_other(run: ConnectorRun) -> float:
        return run.process.other_cores

    def step(name: str) -> None:
        busy = wait_until_quiet(max_other / 2, quiet_timeout) if quiet_timeout else None
        idle = "" if busy is None else f", {busy:.2f} cores busy before"
        print(
            f"[{datetime.now():%H:%M:%S}] {name} (load average {load_average()[0]}{idle})",
            flush=True,
        )

    if "headline" in parts:
        step(f"headline: {plan.headline_contacts} contacts, {lat:g} ms, concurrency {conc}")
        results.headline = quietest(
            functools.partial(
                connector_config,
                "headline",
                root,
                contacts=plan.headline_contacts,
                latency_ms=lat,
                concurrency=conc,
                rps=0,
            ),
            connector_other,
            max_other,
            retries,
        )
    if "versus" in parts:
        step(f"versus the hand-written loop: {plan.versus_contacts} contacts each")
        results.versus = quietest(
            functools.partial(
                versus_config, root, contacts=plan.versus_contacts, latency_ms=lat, concurrency=conc
            ),
            lambda v: max(v.connector.process.other_cores, v.handwritten.process.other_cores),
            max_other,
            retries,
        )
    if "rate" in parts:
        step(f"rate limit {plan.rate_limit:g}/s: {plan.rate_contacts} contacts")
        results.rate_limited = quietest(
            functools.partial(
                connector_config,
                "rate-limited",
                root,
                contacts=plan.rate_contacts,
                latency_ms=lat,
                concurrency=conc,
                rps=plan.rate_limit,
                rate_limit=plan.rate_limit,
            ),
            connector_other,
            max_other,
            retries,
        )
    if "memory" in parts:
        memory_sizes = ((plan.memory_small, "memory_small"), (plan.memory_large, "memory_large"))
        for size, attribute in memory_sizes:
            step(f"latency 0 / memory: {size} contacts")
            run = quietest(
                functools.partial(
                    connector_config,
                    f"latency0-{size}",
                    root,
                    contacts=size,
                    latency_ms=0,
                    concurrency=conc,
                    rps=0,
                ),
                connector_other,
                max_other,
                retries,
            )
            setattr(results, attribute, run)
    if "raw" in parts:
        step(f"raw load: {plan.memory_small} records")
        results.raw_load = quietest(
            functools.partial(raw_load_config, root, plan.memory_small),
            lambda r: r.process.other_cores,
            max_other,
            retries,
        )
        if plan.raw_chunk:
            step(f"raw load in chunks of {plan.raw_chunk}")
            results.raw_load_chunked = raw_load_config(root, plan.memory_small, plan.raw_chunk)
    if "chunks" in parts:
        for chunk in plan.chunk_sizes:
            step(f"diagnostic: headline with chunk_size {chunk}")
            results.chunk_runs.append(
                connector_config(
                    f"headline-chunk{chunk}",
                    root,
                    contacts=plan.headline_contacts,
                    latency_ms=lat,
                    concurrency=conc,
                    rps=0,
                    chunk_size=chunk,
                )
            )
    if "ceiling" in parts:
        for latency in plan.ceiling_latencies:
            step(f"diagnostic: bare httpx loop at {latency:g} ms, pools {plan.ceiling_pools}")
            results.ceiling += ceiling_config(
                root,
                contacts=plan.ceiling_contacts,
                latency_ms=latency,
                workers=conc,
                pools=plan.ceiling_pools,
            )
    results.finished = datetime.now().astimezone().isoformat(timespec="seconds")
    return results


# ---------------------------------------------------------------------------------- verdicts
@dataclass
class Verdict:
    target: str
    measured: str
    wanted: str
    passed: bool
    gap: str


def _ratio_verdict(
    target: str, value: float, bound: float, *, at_least: bool, unit: str = "x"
) -> Verdict:
    passed = value >= bound if at_least else value <= bound
    if passed:
        gap = "-"
    elif at_least:
        gap = f"{bound / value:.2f}x short" if value else "nothing measured"
    else:
        gap = f"{value / bound:.2f}x over"
    sign = ">=" if at_least else "<="
    return Verdict(target, f"{value:.2f}{unit}", f"{sign} {bound:g}{unit}", passed, gap)


def verdicts(results: Results) -> list[Verdict]:
    found: list[Verdict] = []
    head = results.headline
    if head:
        found.append(
            _ratio_verdict(
                f"{head.contacts} @ {head.latency_ms:g} ms, c{head.concurrency}: archive "
                "throughput / ideal",
                head.api.archive_rps / head.ideal_rps,
                0.9,
                at_least=True,
            )
        )
        found.append(
            _ratio_verdict(
                f"{head.contacts} @ {head.latency_ms:g} ms, c{head.concurrency}: process "
                "wall / ideal time",
                head.process.wall_s / head.ideal_s,
                1.3,
                at_least=False,
            )
        )
    if results.versus and results.versus.handwritten.process.exit_code == 0:
        versus = results.versus
        found.append(
            _ratio_verdict(
                f"{versus.connector.contacts} contacts: hand-written wall / connector wall",
                versus.handwritten.process.wall_s / versus.connector.process.wall_s,
                20,
                at_least=True,
            )
        )
    rated = results.rate_limited
    if rated:
        limit = rated.sandbox_rate_limit
        over = max(0, rated.api.max_arrivals_in_1s_window - int(limit))
        throttled = rated.sandbox_totals.get("by_status", {}).get("429", 0)
        found.append(
            Verdict(
                f"rate limit {limit:g}/s: no 1 s window over it (arrivals at the server; 429s)",
                f"max {rated.api.max_arrivals_in_1s_window} arrivals in any 1 s window "
                f"({rated.api.max_arrivals_in_calendar_second} in a calendar second; answers: "
                f"{rated.api.max_in_1s_window}), {throttled} x 429",
                f"<= {limit:g} per window, 0 x 429",
                over == 0 and throttled == 0,
                "-" if over == 0 and throttled == 0 else f"{over} over, {throttled} x 429",
            )
        )
        found.append(
            _ratio_verdict(
                f"rate limit {limit:g}/s: archive throughput / limit",
                rated.api.archive_rps / limit,
                0.95,
                at_least=True,
            )
        )
    small, large = results.memory_small, results.memory_large
    if small and large:
        found.append(
            _ratio_verdict(
                f"peak RSS {large.contacts} / {small.contacts} queued",
                large.process.peak_rss_mb / small.process.peak_rss_mb,
                1.25,
                at_least=False,
            )
        )
    if small and results.raw_load:
        found.append(
            _ratio_verdict(
                f"latency 0, {small.contacts}: connector wall / raw pipeline.run()",
                small.process.wall_s / results.raw_load.load_s,
                2,
                at_least=False,
            )
        )
    return found


# ---------------------------------------------------------------------------------- markdown
def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows)]


def _connector_rows(runs: list[ConnectorRun]) -> list[list[Any]]:
    rows = []
    for run in runs:
        totals = run.sandbox_totals
        by_status = totals.get("by_status", {})
        rows.append(
            [
                run.label,
                run.contacts,
                f"{run.latency_ms:g}",
                run.concurrency,
                f"{run.rps:g}" if run.rps else "off",
                f"{run.sandbox_rate_limit:g}" if run.sandbox_rate_limit else "off",
                run.chunk_size or "default",
                f"{run.process.wall_s:.1f}",
                f"{run.ideal_s:.1f}" if run.ideal_rps else "-",
                f"{run.api.archive_rps:.0f}",
                f"{run.log_archive_rps:.0f}" if run.log_archive_rps else "-",
                f"{run.ideal_rps:.0f}" if run.ideal_rps else "-",
                f"{run.process.peak_rss_mb:.0f}",
                " / ".join(f"{run.process.rss_at(share):.0f}" for share in (0.25, 0.5, 0.9)),
                f"{run.process.cpu_s:.1f}",
                f"{run.process.sandbox_cpu_s:.1f}",
                f"{run.process.other_cores:.2f}",
                f"{run.process.load_before[0]:.2f} / {run.process.load_after[0]:.2f}",
                totals.get("by_method", {}).get("DELETE", 0),
                totals.get("requests", 0),
                by_status.get("200", 0),
                by_status.get("404", 0),
                by_status.get("429", 0),
                run.audit.archives,
                "ok" if not run.problems() else "; ".join(run.problems()),
            ]
        )
    return rows


CONNECTOR_HEADER = [
    "config",
    "contacts",
    "latency ms",
    "conc",
    "--rps",
    "server limit",
    "chunk",
    "wall s",
    "ideal s",
    "archive req/s (server)",
    "archive req/s (log)",
    "ideal req/s",
    "peak RSS MB",
    "RSS MB at 25/50/90% of wall",
    "CPU s",
    "sandbox CPU s",
    "other cores",
    "load 1m before / after",
    "DELETEs",
    "API requests",
    "200",
    "404",
    "429",
    "audit rows",
    "counts",
]


def render(results: Results) -> str:
    machine = results.machine
    lines = [
        f"Run {results.started} - {results.finished} ({results.mode}): `{results.command}`",
        "",
        f"Machine: {machine.get('nproc')} cores, {machine.get('cpu_model')}, "
        f"{machine.get('memory_gb')} GB, Linux {machine.get('kernel')}. Versions: "
        + ", ".join(f"{k} {v}" for k, v in machine.get("versions", {}).items())
        + ".",
        "",
        *(
            [f"Extra connector environment: `{results.connector_env}`.", ""]
            if results.connector_env
            else []
        ),
        "### Targets",
        "",
        *_table(
            ["target", "measured", "wanted", "result", "miss by"],
            [
                [v.target, v.measured, v.wanted, "pass" if v.passed else "MISS", v.gap]
                for v in verdicts(results)
            ],
        ),
        "",
        "### Connector runs",
        "",
    ]
    runs = [
        r
        for r in (
            results.headline,
            results.versus.connector if results.versus else None,
            results.rate_limited,
            results.memory_small,
            results.memory_large,
            *results.chunk_runs,
        )
        if r is not None
    ]
    lines += _table(CONNECTOR_HEADER, _connector_rows(runs))
    lines += ["", "### Baselines", ""]
    baseline_rows: list[list[Any]] = []
    for run in runs:
        if run.ideal_rps:
            baseline_rows.append(
                [
                    f"ideal, {run.label}",
                    run.contacts,
                    f"{run.ideal_s:.2f}",
                    "-",
                    "-",
                    f"{run.ideal_rps:.0f} req/s",
                ]
            )
    if results.versus:
        loop = results.versus.handwritten
        phases = loop.phases
        baseline_rows.append(
            [
                "hand-written loop (sync httpx, one pipeline.run())",
                loop.contacts,
                f"{loop.process.wall_s:.1f}",
                f"{loop.process.peak_rss_mb:.0f}",
                f"{loop.process.other_cores:.2f}",
                f"calls {phases.get('calls_s', 0):.1f} s ({loop.api.archive_rps:.1f} req/s), "
                f"load {phases.get('load_s', 0):.1f} s, imports {phases.get('import_s', 0):.1f} s"
                f", exit {loop.process.exit_code}, {loop.deletes_succeeded} archived",
            ]
        )
    for raw in (results.raw_load, results.raw_load_chunked):
        if raw:
            what = (
                f"{raw.records // raw.chunk} x pipeline.run() of {raw.chunk}"
                if raw.chunk
                else ("one pipeline.run()")
            )
            baseline_rows.append(
                [
                    f"raw load, {what}",
                    raw.records,
                    f"{raw.process.wall_s:.1f}",
                    f"{raw.process.peak_rss_mb:.0f}",
                    f"{raw.process.other_cores:.2f}",
                    f"pipeline.run() {raw.load_s:.2f} s, imports {raw.import_s:.2f} s",
                ]
            )
    lines += _table(
        ["baseline", "contacts", "wall s", "peak RSS MB", "other cores", "detail"], baseline_rows
    )
    if results.ceiling:
        lines += ["", "### Diagnostic: bare httpx loop (no connector code)", ""]
        lines += _table(
            [
                "latency ms",
                "workers",
                "pools",
                "requests",
                "req/s",
                "server req/s",
                "CPU ms/request",
                "other cores",
            ],
            [
                [
                    f"{c.latency_ms:g}",
                    c.workers,
                    c.pools,
                    c.requests,
                    f"{c.rps:.0f}",
                    f"{c.server_rps:.0f}",
                    f"{c.cpu_ms_per_request:.2f}",
                    f"{c.other_cores:.2f}",
                ]
                for c in results.ceiling
            ],
        )
    return "\n".join(lines) + "\n"


def _jsonable(value: Any) -> Any:
    """Dataclasses as dicts (with the derived ideal figures), minus the processes' output."""
    if hasattr(value, "__dataclass_fields__"):
        data = {
            name: _jsonable(getattr(value, name))
            for name in value.__dataclass_fields__
            if name not in ("stdout", "stderr")
        }
        if isinstance(value, ConnectorRun):
            data.update(ideal_rps=value.ideal_rps, ideal_s=value.ideal_s, problems=value.problems())
        return data
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, about a minute")
    parser.add_argument(
        "--max-other-cores",
        type=float,
        default=0.4,
        help="measure a configuration again when other processes kept more cores busy",
    )
    parser.add_argument(
        "--retries", type=int, default=None, help="re-measurements per config (1; quick: 0)"
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=None,
        help="before each configuration, wait up to this many seconds for an idle machine "
        "(120; quick: 0)",
    )
    parser.add_argument(
        "--out", type=Path, default=BENCH_DIR / "results", help="where last_run*.md/json go"
    )
    parser.add_argument("--keep", action="store_true", help="keep the working directories")
    parser.add_argument(
        "--profile", action="store_true", help="only profile the headline run with py-spy"
    )
    parser.add_argument(
        "--connector-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the connector runs and the bare httpx loop (repeatable)",
    )
    parser.add_argument("--tag", default="", help="added to the names of the result files")
    parser.add_argument(
        "--only",
        default=",".join(PARTS),
        help=f"comma-separated subset of {','.join(PARTS)} (results go to last_run_only-*.md)",
    )
    parser.add_argument(
        "--chunk-sizes",
        default=None,
        help="comma-separated chunk sizes for the `chunks` diagnostic (default "
        f"{','.join(map(str, FULL.chunk_sizes))})",
    )
    args = parser.parse_args(argv)
    plan, mode = (QUICK, "quick") if args.quick else (FULL, "full")
    if args.chunk_sizes:
        plan = replace(plan, chunk_sizes=tuple(int(n) for n in args.chunk_sizes.split(",")))
    retries = args.retries if args.retries is not None else (0 if args.quick else 1)
    wait_quiet = args.wait_quiet if args.wait_quiet is not None else (0 if args.quick else 120)
    parts = tuple(part.strip() for part in args.only.split(",") if part.strip())
    if unknown := set(parts) - set(PARTS):
        parser.error(f"--only: unknown {', '.join(sorted(unknown))}; choose from {PARTS}")
    for item in args.connector_env:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--connector-env {item!r}: use KEY=VALUE")
        CONNECTOR_ENV[key] = value
    suffix = (
        ("" if mode == "full" else "_quick")
        + ("" if set(parts) == set(PARTS) or args.profile else "_only-" + "-".join(parts))
        + (f"_{args.tag}" if args.tag else "")
    )
    args.out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="routera-bench-"))
    print(f"working in {root}")
    if args.profile:
        try:
            text = profile_headline(plan, root)
        finally:
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)
        (args.out / f"last_profile{suffix}.md").write_text(text, encoding="utf-8")
        print(text)
        return 0
    try:
        results = run_all(
            plan,
            root,
            max_other=args.max_other_cores,
            retries=retries,
            mode=mode,
            parts=parts,
            quiet_timeout=wait_quiet,
        )
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    text = render(results)
    (args.out / f"last_run{suffix}.md").write_text(text, encoding="utf-8")
    (args.out / f"last_run{suffix}.json").write_text(
        json.dumps(_jsonable(results), indent=2, default=str), encoding="utf-8"
    )
    print(text)
    runs = [
        results.headline,
        results.versus.connector if results.versus else None,
        results.rate_limited,
        results.memory_small,
        results.memory_large,
        *results.chunk_runs,
    ]
    return 1 if any(run is not None and run.problems() for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
