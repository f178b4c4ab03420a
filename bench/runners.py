"""One runner per kind of configuration: the connector, versus the loop, a raw load, bare httpx.

Each runner takes a `Config` (the sizes and settings of one configuration, a row of the table in
`scenarios.py`), the directory to work in and the extra environment of the connector
(`--connector-env`), and returns what it measured. Every process it starts is measured the same
way (`harness.run_process`), against a fresh sandbox of its own (`sandbox_process`):

- `connector`: N contacts queued with `routera-archive enqueue`, then one
  `routera-archive run --force --concurrency C --rps X` in a fresh directory with a fresh
  `DLT_DATA_DIR`, judged against the ideal (N x latency / concurrency, or N / the limit; twice
  that with `properties`, a snapshot GET before each DELETE);
- `versus`: one sandbox of 2N contacts; the connector archives the first N, then
  `bench/handwritten.py` (synchronous httpx, one DELETE at a time, one `pipeline.run()`, as its
  own process, so both pay the same start-up) the next N;
- `raw_load`: `bench/raw_load.py`, `pipeline.run()` of N API-shaped records already in memory:
  the floor for what the connector's loads cost;
- `ceiling`: `bench/http_ceiling.py`, a bare httpx loop without connector code, once per pool
  count on fresh contacts of one sandbox: what the HTTP stack itself reaches on this machine.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.breakdown import Breakdown, breakdown, marks_file, timeline_env
from bench.harness import (
    CLI,
    PROCESS_TIMEOUT_S,
    PYTHON,
    ProcessRun,
    bench_script,
    clean_env,
    last_json_line,
    run_process,
    script_result,
)
from bench.measures import (
    ApiWindow,
    AuditCounts,
    archived_once_problems,
    audit_counts,
    log_archive_seconds,
    requests_sent,
)
from bench.sandbox_process import Sandbox, contact_ids, fresh_sandbox, seeded_presence, write_ids

# The run's one GET before any archive: the account probe (which also checks `properties`).
CHECK_GETS = 1


@dataclass(frozen=True)
class Config:
    """One configuration; each runner reads the fields its kind needs (0: not used, or off)."""

    label: str  # its working directory under the bench's root, and its processes' name
    contacts: int = 0
    latency_ms: float = 0.0
    concurrency: int = 0  # the connector's requests in flight; the bare loop's workers
    rps: float = 0.0  # the connector's --rps
    rate_limit: float = 0.0  # the sandbox's --rate-limit
    chunk_size: int | None = None  # the connector's chunk size; the raw load's chunks
    pools: tuple[int, ...] = ()  # the bare loop's pool counts, one run each
    repeats: int = 0  # timed runs of each command line (CLI start)
    wrapper: tuple[str, ...] = ()  # in front of the connector's command (a profiler)
    # The connector's SOURCES__ROUTERA__PROPERTIES (a snapshot GET before each DELETE).
    properties: tuple[str, ...] = ()
    answer_fields: str = ""  # the sandbox's --answer-fields ("": its default, all)
    sizes: tuple[int, ...] = ()  # the evidence bench's dataset sizes (audit rows)


# ------------------------------------------------------------------------------ the connector
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
    properties: tuple[str, ...] = ()
    answer_fields: str = ""
    # 429 answers by method (the sandbox's per-request stats).
    throttled_by_method: dict[str, int] = field(default_factory=dict)
    # Per configured property, the seeded contacts that hold it (not null): what the audit
    # rows' column of it must hold.
    seeded_with: dict[str, int] = field(default_factory=dict)
    # Where its time went outside the calls (bench/breakdown.py), once the sandbox stopped.
    breakdown: Breakdown | None = None

    @property
    def fixed_s(self) -> float | None:
        """Wall time minus the calls at the measured rate (issue 18): contacts / archived per
        second on the server."""
        rate = self.archived_per_s
        return self.process.wall_s - self.contacts / rate if rate else None

    @property
    def requests_per_contact_planned(self) -> int:
        """One DELETE per contact, and with `properties` one snapshot GET before it."""
        return 2 if self.properties else 1

    @property
    def snapshot_gets(self) -> int:
        """GETs answered but throttled ones, less the run's check GET: one per snapshot."""
        gets = int(self.sandbox_totals.get("by_method", {}).get("GET", 0))
        return gets - self.throttled_by_method.get("GET", 0) - CHECK_GETS

    @property
    def requests_per_contact(self) -> float:
        """GETs and DELETEs (throttled ones too: they are paid for) but the check GET, per
        contact archived: 1.0 without `properties`, 2.0 with them when nothing is retried."""
        by_method = self.sandbox_totals.get("by_method", {})
        spent = int(by_method.get("GET", 0)) + int(by_method.get("DELETE", 0)) - CHECK_GETS
        return spent / self.deletes_succeeded if self.deletes_succeeded else 0.0

    @property
    def ideal_rps(self) -> float:
        """Requests per second the API allows: concurrency / latency, or the binding limit."""
        limits = [self.rps, self.sandbox_rate_limit]
        by_latency = self.concurrency / (self.latency_ms / 1000) if self.latency_ms else 0.0
        candidates = [x for x in (*limits, by_latency) if x]
        return min(candidates) if candidates else 0.0

    @property
    def ideal_s(self) -> float:
        requests = self.contacts * self.requests_per_contact_planned
        return requests / self.ideal_rps if self.ideal_rps else 0.0

    @property
    def archived_per_s(self) -> float:
        """Contacts archived per second on the server, between the first and the last DELETE."""
        return (self.deletes_succeeded - 1) / self.api.archive_s if self.api.archive_s else 0.0

    @property
    def log_archive_rps(self) -> float | None:
        return self.contacts / self.log_archive_s if self.log_archive_s else None

    @property
    def other_cores(self) -> float:
        return self.process.other_cores

    def note_attempts(self, other_cores: list[float]) -> None:
        self.attempts_other_cores = other_cores

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
        found += archived_once_problems(
            n, self.deletes_succeeded, self.contacts_deleted_more_than_once, self.audit
        )
        if self.audit.log_by_status != {"archived": n}:
            found.append(f"archive_log {self.audit.log_by_status}")
        return found + self._snapshot_problems()

    def _snapshot_problems(self) -> list[str]:
        """With `properties`: one snapshot GET per contact, every audit row made of a snapshot
        and its DELETE, and each property's column filled wherever the seeded contact holds it.
        Without: no snapshot, every row from its DELETE alone."""
        n = self.contacts
        found = []
        snapshots = n if self.properties else 0
        if self.snapshot_gets != snapshots:
            found.append(
                f"{self.snapshot_gets} snapshot GETs (besides {CHECK_GETS} check GET, "
                f"{self.throttled_by_method.get('GET', 0)} throttled) for {snapshots} expected"
            )
        source = "snapshot+delete" if self.properties else "delete"
        if self.audit.by_record_source != {source: n}:
            found.append(f"record_source {self.audit.by_record_source}, expected {source!r}")
        for name in self.properties:
            filled, seeded = self.audit.filled.get(name), self.seeded_with.get(name, 0)
            if filled is None:
                found.append(f"no column for property {name!r} in the audit rows")
            elif filled != seeded or not seeded:
                found.append(f"property {name!r} filled in {filled} rows, seeded in {seeded}")
        return found


def enqueue(workdir: Path, sandbox: Sandbox, ids: list[str]) -> float:
    """Queue `ids` with `routera-archive enqueue`; returns its seconds (not part of any figure)."""
    run_dir = workdir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    ids_file = write_ids(workdir / "ids.txt", ids)
    started = time.perf_counter()
    done = subprocess.run(
        [CLI, "enqueue", str(ids_file), "--requested-by", "bench", "--reason", "benchmark"],
        cwd=run_dir,
        env=sandbox.env(workdir),
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT_S,
    )
    if done.returncode != 0 or f"enqueued {len(ids)} requests" not in done.stdout:
        raise RuntimeError(f"enqueue failed ({done.returncode}): {done.stdout}{done.stderr}")
    return time.perf_counter() - started


def run_connector(
    label: str,
    workdir: Path,
    sandbox: Sandbox,
    config: Config,
    *,
    enqueue_s: float,
    extra_env: Mapping[str, str],
) -> ConnectorRun:
    """`routera-archive run --force --concurrency C --rps X` over a queue already filled.

    The sandbox's stats are reset first, so its counts are this run's alone. The API window is
    left empty: the sandbox's stamps are known once it stops (`Sandbox.window`).
    """
    sandbox.reset_stats()
    extra = dict(extra_env)
    if config.chunk_size:
        extra["SOURCES__ROUTERA__CHUNK_SIZE"] = str(config.chunk_size)
    if config.properties:
        extra["SOURCES__ROUTERA__PROPERTIES"] = json.dumps(list(config.properties))
    extra.update(timeline_env(marks_file(workdir, label)))
    command = [
        CLI,
        "run",
        "--force",
        "--concurrency",
        str(config.concurrency),
        "--rps",
        f"{config.rps:g}",
    ]
    if config.wrapper:
        command = [*config.wrapper, PYTHON, *command]
    process = run_process(
        label, command, cwd=workdir / "run", env=sandbox.env(workdir, **extra), sandbox=sandbox
    )
    stats = sandbox.stats()
    deleted = stats.get("deletes_succeeded", {})
    throttled: dict[str, int] = {}
    for request in stats.get("requests", []):
        if request["status"] == 429:
            throttled[request["method"]] = throttled.get(request["method"], 0) + request["count"]
    return ConnectorRun(
        label=label,
        contacts=config.contacts,
        latency_ms=sandbox.latency_ms,
        concurrency=config.concurrency,
        rps=config.rps,
        sandbox_rate_limit=sandbox.rate_limit,
        chunk_size=config.chunk_size,
        enqueue_s=enqueue_s,
        process=process,
        requests_sent=requests_sent(process.stdout),
        log_archive_s=log_archive_seconds(process.stderr, config.contacts),
        sandbox_totals=stats.get("totals", {}),
        deletes_succeeded=len(deleted),
        contacts_deleted_more_than_once=sum(1 for count in deleted.values() if count > 1),
        audit=audit_counts(workdir / "run" / "routera_audit.duckdb", config.properties),
        properties=config.properties,
        answer_fields=sandbox.answer_fields,
        throttled_by_method=throttled,
        seeded_with=seeded_presence(config.properties, config.contacts, sandbox.contacts),
    )


def connector(config: Config, root: Path, extra_env: Mapping[str, str]) -> ConnectorRun:
    """A fresh sandbox of `contacts`, all of them queued, one run, then the sandbox stopped."""
    workdir = root / config.label
    with fresh_sandbox(
        workdir,
        config.contacts,
        config.latency_ms,
        config.rate_limit,
        answer_fields=config.answer_fields,
    ) as sandbox:
        enqueue_s = enqueue(workdir, sandbox, contact_ids(config.contacts))
        run = run_connector(
            config.label, workdir, sandbox, config, enqueue_s=enqueue_s, extra_env=extra_env
        )
    run.api = sandbox.window(run.process)
    run.breakdown = breakdown(run.process, sandbox.stamps, marks_file(workdir, run.label))
    return run


@dataclass
class FixedCost:
    """A small run (25 contacts at 50 ms), then one with nothing pending, in one dataset: what
    a run costs besides its calls (issue 18)."""

    small: ConnectorRun
    idle: ProcessRun
    idle_breakdown: Breakdown
    idle_requests: dict[str, Any]

    @property
    def other_cores(self) -> float:
        return max(self.small.process.other_cores, self.idle.other_cores)

    def note_attempts(self, other_cores: list[float]) -> None:
        self.small.note_attempts(other_cores)

    def problems(self) -> list[str]:
        """The run with nothing pending's (the small run is judged with the connector runs)."""
        found = []
        if self.idle.exit_code != 0:
            found.append(f"nothing pending: exit code {self.idle.exit_code}")
        deletes = self.idle_requests.get("by_method", {}).get("DELETE", 0)
        if deletes:
            found.append(f"nothing pending: {deletes} DELETEs")
        return found


def fixed_cost(config: Config, root: Path, extra_env: Mapping[str, str]) -> FixedCost:
    """`contacts` archived in one run, then a second run of the same dataset, nothing pending."""
    workdir = root / config.label
    with fresh_sandbox(workdir, config.contacts, config.latency_ms) as sandbox:
        enqueue_s = enqueue(workdir, sandbox, contact_ids(config.contacts))
        small = run_connector(
            f"{config.label}-small",
            workdir,
            sandbox,
            config,
            enqueue_s=enqueue_s,
            extra_env=extra_env,
        )
        idle = run_connector(
            f"{config.label}-idle", workdir, sandbox, config, enqueue_s=0.0, extra_env=extra_env
        )
    small.api = sandbox.window(small.process)
    small.breakdown = breakdown(small.process, sandbox.stamps, marks_file(workdir, small.label))
    idle_breakdown = breakdown(idle.process, sandbox.stamps, marks_file(workdir, idle.label))
    return FixedCost(small, idle.process, idle_breakdown, idle.sandbox_totals)


# ------------------------------------------------------------------------ the hand-written loop
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

    @property
    def other_cores(self) -> float:
        return max(self.connector.process.other_cores, self.handwritten.process.other_cores)

    def note_attempts(self, other_cores: list[float]) -> None:
        self.connector.note_attempts(other_cores)


def versus(config: Config, root: Path, extra_env: Mapping[str, str]) -> Versus:
    """One sandbox with 2N contacts: the connector archives the first N, the loop the next N."""
    n = config.contacts
    workdir = root / config.label
    with fresh_sandbox(workdir, 2 * n, config.latency_ms) as sandbox:
        ids = contact_ids(2 * n)
        enqueue_s = enqueue(workdir, sandbox, ids[:n])
        run = run_connector(
            f"{config.label}-connector",
            workdir,
            sandbox,
            config,
            enqueue_s=enqueue_s,
            extra_env=extra_env,
        )
        loop_dir = workdir / "handwritten"
        loop_dir.mkdir()
        ids_file = write_ids(loop_dir / "ids.txt", ids[n:])
        sandbox.reset_stats()
        # Not handwritten.duckdb: DuckDB cannot hold a dataset named like its file.
        command = bench_script(
            "handwritten.py", sandbox.url, str(ids_file), str(loop_dir / "loop.duckdb")
        )
        process = run_process(
            "handwritten", command, cwd=loop_dir, env=sandbox.env(loop_dir), sandbox=sandbox
        )
        loop_stats = sandbox.stats()
    run.api = sandbox.window(run.process)
    run.breakdown = breakdown(run.process, sandbox.stamps, marks_file(workdir, run.label))
    handwritten = HandwrittenRun(
        contacts=n,
        process=process,
        phases=last_json_line(process.stdout) if process.exit_code == 0 else {},
        api=sandbox.window(process),
        deletes_succeeded=len(loop_stats.get("deletes_succeeded", {})),
    )
    return Versus(run, handwritten)


# ---------------------------------------------------------------------------------- raw load
@dataclass
class RawLoad:
    records: int
    chunk: int | None
    process: ProcessRun
    load_s: float
    import_s: float

    @property
    def other_cores(self) -> float:
        return self.process.other_cores

    def note_attempts(self, other_cores: list[float]) -> None:
        """A raw load keeps no record of its attempts."""


def raw_load(config: Config, root: Path, extra_env: Mapping[str, str]) -> RawLoad:
    """`bench/raw_load.py`: `pipeline.run()` of `contacts` records already in memory, in chunks
    of `chunk_size` if set. No connector code runs, so `extra_env` does not apply."""
    workdir = root / config.label
    shutil.rmtree(workdir, ignore_errors=True)
    records, chunk = config.contacts, config.chunk_size
    command = bench_script("raw_load.py", str(records), str(workdir / "raw.duckdb"))
    if chunk:
        command += ["--chunk", str(chunk)]
    env = clean_env(DLT_DATA_DIR=str(workdir / "dlt_data"))
    process = run_process(config.label, command, cwd=workdir, env=env, sandbox=None)
    result = script_result(process, "raw load")
    return RawLoad(records, chunk, process, float(result["load_s"]), float(result["import_s"]))


# --------------------------------------------------------------------------- bare httpx loop
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


def ceiling(config: Config, root: Path, extra_env: Mapping[str, str]) -> list[Ceiling]:
    """The bare loop once per pool count, each on its own fresh contacts of one sandbox."""
    workdir = root / config.label
    n, pools = config.contacts, config.pools
    runs: list[tuple[int, ProcessRun, dict[str, Any]]] = []
    with fresh_sandbox(workdir, n * len(pools), config.latency_ms) as sandbox:
        ids = contact_ids(n * len(pools))
        for number, pool_count in enumerate(pools):
            ids_file = write_ids(
                workdir / f"ids-{pool_count}.txt", ids[number * n : (number + 1) * n]
            )
            command = bench_script(
                "http_ceiling.py",
                sandbox.url,
                str(ids_file),
                "--workers",
                str(config.concurrency),
                "--pools",
                str(pool_count),
            )
            process = run_process(
                f"ceiling-{pool_count}",
                command,
                cwd=workdir,
                env=sandbox.env(workdir, **extra_env),
                sandbox=sandbox,
            )
            runs.append((pool_count, process, script_result(process, "http ceiling")))
    return [
        Ceiling(
            latency_ms=config.latency_ms,
            workers=config.concurrency,
            pools=pool_count,
            requests=int(result["requests"]),
            rps=float(result["rps"]),
            cpu_ms_per_request=float(result["cpu_ms_per_request"]),
            server_rps=sandbox.window(process).archive_rps,
            other_cores=process.other_cores,
        )
        for pool_count, process, result in runs
    ]
