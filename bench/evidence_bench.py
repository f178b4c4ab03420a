"""What the evidence features cost as a dataset grows: the chain's link, `verify` and `redact`.

Issue 15 made every run end by linking itself into the dataset's hash chain, added `verify`
(recompute every hash) and `redact` (change rows on the record, then rewrite the DuckDB file).
The link step reads the run column of every chained table (`SELECT DISTINCT`) to find the
rows no link covers, so its cost may grow with the dataset, not with the run; `verify` reads
and hashes every row; `redact` rewrites the whole DuckDB file. This measures the three on one
dataset grown through the sizes asked (`--sizes`, audit rows in `contact_archives`; each has
its `archive_log` row and its digest too):

- the dataset is built the real way: the real pipeline (`make_pipeline` with `duckdb_file=`
  and `pipelines_dir=` in a temporary folder), the requests queued with `enqueue`, and real
  `ArchiveRun`s against the in-process sandbox (`SandboxServer`, latency 0, rps 0, max_share
  0, concurrency 32), in runs of at most `--fill-run` records (10,000: a 100,000-row dataset
  is ten runs, ten links), so every row is chained by the run that loaded it;
- at each size, a **probe run** of `--probe` (100) more records, a real run whose
  `link_run` (the step `ArchiveRun._finish_report` calls) is timed, split into its reads
  (`digest_unchained`: the `SELECT DISTINCT` per table, then the uncovered rows read back and
  hashed), its load (`load_fresh`: the run row and the digests, merged insert-only into
  `row_digests`) and the rest (the head, the stored schema, the read-back of the run row, the
  INSERT); the `SELECT DISTINCT`s alone are timed again right after, on their own;
- then **`verify_dataset`** in a fresh process of its own (`--verify-child`, another pipeline
  folder, as `routera-archive verify` runs): its wall time, and its peak RSS (`ru_maxrss`)
  beside the RSS the process had before it (after the imports and the pipeline);
- then **`redact_dataset`** of one contact id (one archived in the first run), in this
  process, split into the plan (reading the selected rows), the change (the UPDATE
  transaction), the record (the `redactions` row), the link (with the changed rows digested
  again), the cleaning of the copies (staging, package files) and, on DuckDB, the file's
  rewrite (`Cleanup.compact_seconds`, the file's bytes before and after: the cost per MB is
  of the file before).

Each measurement records the load average before it and how many cores other processes kept
busy during it (the machine's busy CPU minus this process's and its children's). Nothing here
asserts a time; the script checks only that the runs archived what they were given, that
`verify` says intact and that the redaction changed the contact's row.

Usage: `.venv/bin/python bench/evidence_bench.py [--sizes 1000,10000,100000]
[--destination duckdb] [--destination postgres] [--name s9-evidence]` (about 5 minutes for
DuckDB at the default sizes on 2 cores, 8 beside another test suite; PostgreSQL about 6 more).
It prints the table, then one JSON line, and writes `results/NAME.md` and `results/NAME.json`
(`--out` another folder).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

if not __package__:  # run as `python bench/evidence_bench.py`: `bench` is one folder up
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import BENCH_DIR, CpuSnapshot, busy_cores, load_average, machine_info

POSTGRES_URL = "postgresql://postgres:trust@127.0.0.1:5432/test"
DUCKDB_FILE = "routera_audit.duckdb"
SIZES = (1_000, 10_000, 100_000)
PROBE = 100
FILL_RUN = 10_000
CONCURRENCY = 32
MB = 1024 * 1024


def say(line: str) -> None:
    print(line, flush=True)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def own_cpu_seconds() -> float:
    """CPU of this process and its reaped children (the call workers, the verify process)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


@dataclass
class Window:
    """The wall time of one measurement, the load before it and the other processes' cores."""

    seconds: float = 0.0
    load_before: float = 0.0
    other_cores: float = 0.0


@contextlib.contextmanager
def window() -> Iterator[Window]:
    found = Window(load_before=load_average()[0])
    machine, own, started = CpuSnapshot.take(), own_cpu_seconds(), time.monotonic()
    yield found
    found.seconds = time.monotonic() - started
    after = CpuSnapshot.take()
    busy = (after.busy - machine.busy) / os.sysconf("SC_CLK_TCK")
    found.other_cores = max(0.0, busy - (own_cpu_seconds() - own)) / max(found.seconds, 1e-9)


class Stopwatch:
    """Wall time spent in named module functions while it is on (calls nested in a timed
    call are counted in their own name too)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    @contextlib.contextmanager
    def timing(self, module: ModuleType, name: str, label: str | None = None) -> Iterator[None]:
        original: Callable[..., Any] = getattr(module, name)
        label = label or name

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.monotonic()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[label] = self.seconds.get(label, 0.0) + time.monotonic() - started
                self.calls[label] = self.calls.get(label, 0) + 1

        setattr(module, name, timed)
        try:
            yield
        finally:
            setattr(module, name, original)

    def get(self, label: str) -> float:
        return self.seconds.get(label, 0.0)


# ----------------------------------------------------------------------------- the results
@dataclass
class LinkFigures:
    run_records: int = 0
    run_seconds: float = 0.0  # the whole probe run, start to report
    link_seconds: float = 0.0
    digest_seconds: float = 0.0  # digest_unchained: SELECT DISTINCT x tables, read, hash
    distinct_seconds: float = 0.0  # the SELECT DISTINCTs alone, after the run (best of 3)
    distinct_tables: int = 0
    load_seconds: float = 0.0  # load_fresh: run row + digests, dlt
    other_seconds: float = 0.0  # head, stored schema, read-back, INSERT
    digested_rows: int = 0
    window: Window = field(default_factory=Window)


@dataclass
class VerifyFigures:
    seconds: float = 0.0
    rss_before_mb: float = 0.0  # resident just before verify_dataset (imports, pipeline)
    peak_rss_mb: float = 0.0  # the process's peak (VmHWM)
    rows_checked: int = 0
    links: int = 0
    intact: bool = False
    window: Window = field(default_factory=Window)


@dataclass
class RedactFigures:
    seconds: float = 0.0  # the whole redact_dataset call
    plan_seconds: float = 0.0
    change_seconds: float = 0.0
    record_seconds: float = 0.0
    link_seconds: float = 0.0
    clean_seconds: float = 0.0  # staging and package files (clean_copies minus the rewrite)
    compact_seconds: float | None = None
    bytes_before: int | None = None
    bytes_after: int | None = None
    vacuum_seconds: float | None = None
    rows_changed: int = 0
    window: Window = field(default_factory=Window)

    @property
    def change_record_link_seconds(self) -> float:
        return self.plan_seconds + self.change_seconds + self.record_seconds + self.link_seconds

    @property
    def rest_seconds(self) -> float:
        """What no part names: the locks, the schema read, the intent file, its removal."""
        parts = self.change_record_link_seconds + self.clean_seconds
        return self.seconds - parts - (self.rewrite_seconds or 0.0)

    @property
    def rewrite_seconds(self) -> float | None:
        """DuckDB: the file's rewrite; PostgreSQL: the VACUUM FULLs."""
        return self.compact_seconds if self.compact_seconds is not None else self.vacuum_seconds

    @property
    def seconds_per_mb(self) -> float | None:
        if self.rewrite_seconds is None or not self.bytes_before:
            return None
        return self.rewrite_seconds / (self.bytes_before / MB)


@dataclass
class SizeResult:
    destination: str
    target_rows: int
    audit_rows: int = 0  # contact_archives rows when the probe run starts
    chained_rows: int = 0  # rows of row_digests when the probe run starts
    links_before: int = 0
    fill_runs: int = 0
    fill_seconds: float = 0.0
    # Cores other processes kept busy just before the measurements (3 s, this one asleep),
    # and how long it waited for them to fall.
    quiet_other_cores: float = 0.0
    quiet_wait_seconds: float = 0.0
    links: list[LinkFigures] = field(default_factory=list)
    verifies: list[VerifyFigures] = field(default_factory=list)
    redacts: list[RedactFigures] = field(default_factory=list)
    file_bytes: int | None = None  # the DuckDB file before the first redaction

    @property
    def link(self) -> LinkFigures:
        """The probe run whose link took the median time."""
        return median_of(self.links, lambda f: f.link_seconds)

    @property
    def verify(self) -> VerifyFigures:
        return median_of(self.verifies, lambda f: f.seconds)

    @property
    def redact(self) -> RedactFigures:
        return median_of(self.redacts, lambda f: f.seconds)


T = TypeVar("T")


def median_of(items: list[T], key: Callable[[T], float]) -> T:
    """The item of median `key` (the lower one of an even count)."""
    if not items:
        raise ValueError("nothing measured")
    return sorted(items, key=key)[(len(items) - 1) // 2]


def spread(items: list[T], key: Callable[[T], float | None], digits: int = 2) -> str:
    """The median, and the range when there are several (`0.41 (0.39-0.45)`)."""
    values = sorted(v for v in (key(i) for i in items) if v is not None)
    if not values:
        return "-"
    middle = values[(len(values) - 1) // 2]
    if len(values) == 1:
        return f"{middle:.{digits}f}"
    return f"{middle:.{digits}f} ({values[0]:.{digits}f}-{values[-1]:.{digits}f})"


@dataclass
class Bench:
    started: str
    command: str
    commit: str
    sizes: tuple[int, ...]
    probe: int
    fill_run: int
    repeats: dict[str, int]
    uptime_before: str
    uptime_after: str = ""
    finished: str = ""
    load_waits: int = 0
    machine: dict[str, Any] = field(default_factory=dict)
    results: list[SizeResult] = field(default_factory=list)


# --------------------------------------------------------------------------- the dataset
class Dataset:
    """One growing dataset on one destination, and the sandbox that answers its runs."""

    def __init__(self, destination: str, root: Path, server: Any) -> None:
        from routera_archive_pipelines.factory import enqueue_pipeline_name_for, make_pipeline

        self.destination = destination
        self.root = root
        self.server = server
        self.name = f"ra_ev_{uuid.uuid4().hex[:8]}"
        self.duckdb_file = root / DUCKDB_FILE if destination == "duckdb" else None
        self.pipeline = make_pipeline(
            destination,
            self.name,
            duckdb_file=self.duckdb_file,
            pipelines_dir=root / "pipelines",
        )
        self.enqueuer = make_pipeline(
            destination,
            self.name,
            pipeline_name=enqueue_pipeline_name_for(destination, self.name),
            duckdb_file=self.duckdb_file,
            pipelines_dir=root / "pipelines",
        )
        self.ids: list[str] = list(server.state.contact_ids(include_archived=False))
        self.used = 0
        self.first_ids: list[str] = []

    def take(self, count: int) -> list[str]:
        if self.used + count > len(self.ids):
            raise RuntimeError(f"the sandbox has {len(self.ids) - self.used} contacts left")
        part = self.ids[self.used : self.used + count]
        self.used += count
        if not self.first_ids:
            self.first_ids = list(part)
        return part

    def config(self, records: int) -> Any:
        from routera_archive.config import settings_from_values

        return settings_from_values(
            base_url=self.server.url,
            client_id=self.server.config.client_id,
            client_secret=self.server.config.client_secret,
            rps=0.0,
            max_share=0.0,
            max_archives=max(records, 1) * 2,
            concurrency=CONCURRENCY,
        )

    def archive(self, count: int) -> Any:
        """Queue `count` fresh contacts and archive them with one real run."""
        from routera_archive.dataset.enqueue import enqueue
        from routera_archive.errors import ExitCode
        from routera_archive.run.runner import ArchiveRun, RunOptions

        ids = self.take(count)
        enqueue(self.enqueuer, [{"contact_id": cid} for cid in ids], requested_by="bench")
        report = ArchiveRun(self.pipeline, self.config(count), RunOptions()).execute()
        if report.exit_code != ExitCode.OK or report.counts != {"archived": count}:
            raise RuntimeError(
                f"run {report.run_id}: {report.exit_code} {report.counts} {report.error}"
            )
        if report.chain is None:
            raise RuntimeError(f"run {report.run_id} was not linked: {report.chain_error}")
        return report

    def count(self, table: str) -> int:
        with self.pipeline.sql_client() as client:
            qualified = client.make_qualified_table_name(table)
            rows = client.execute_sql(f"SELECT COUNT(*) FROM {qualified}")
        return int(rows[0][0]) if rows else 0

    def time_distinct(self) -> tuple[float, int]:
        """The link step's `SELECT DISTINCT` of each chained table's run column, on its own:
        (seconds, how many tables the dataset has of the chained ones)."""
        from routera_archive.dataset.chain import CHAINED_TABLES, stored_types

        types = stored_types(self.pipeline)
        present = [spec for spec in CHAINED_TABLES if spec.name in types]
        with self.pipeline.sql_client() as client:
            started = time.monotonic()
            for spec in present:
                table = client.make_qualified_table_name(spec.name)
                client.execute_sql(f"SELECT DISTINCT {spec.run_column} FROM {table}")
            return time.monotonic() - started, len(present)

    def relation_sizes(self) -> dict[tuple[str, str], int]:
        """PostgreSQL: (schema, table) -> bytes (`pg_total_relation_size`), of the dataset's
        and its staging datasets' tables."""
        with self.pipeline.sql_client() as client:
            rows = client.execute_sql(
                "SELECT n.nspname, c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind = 'r' AND (n.nspname = %s OR n.nspname LIKE %s)",
                self.name,
                f"{self.name}_staging%",
            )
        return {(str(schema), str(table)): int(size) for schema, table, size in rows or []}

    def drop(self) -> None:
        if self.destination == "postgres":
            with self.pipeline.sql_client() as client:
                for name in (self.name, f"{self.name}_staging"):
                    client.execute_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


# ---------------------------------------------------------------------------- measuring
def probe_run(data: Dataset, records: int) -> LinkFigures:
    """A real run of `records` more records, its link step timed and split."""
    import routera_archive.dataset.chain as chain
    import routera_archive.run.runner as runner

    watch = Stopwatch()
    figures = LinkFigures(run_records=records)
    with (
        watch.timing(runner, "link_run"),
        watch.timing(chain, "digest_unchained"),
        watch.timing(chain, "load_fresh"),
    ):
        started = time.monotonic()
        with window() as figures.window:
            report = data.archive(records)
        figures.run_seconds = time.monotonic() - started
    figures.link_seconds = watch.get("link_run")
    figures.digest_seconds = watch.get("digest_unchained")
    figures.load_seconds = watch.get("load_fresh")
    figures.other_seconds = figures.link_seconds - figures.digest_seconds - figures.load_seconds
    figures.digested_rows = int(report.chain.digested_rows)
    timings = [data.time_distinct() for _ in range(3)]
    figures.distinct_seconds = min(seconds for seconds, _ in timings)
    figures.distinct_tables = timings[0][1]
    return figures


def verify_in_child(data: Dataset) -> VerifyFigures:
    """`verify_dataset` in a fresh process with a pipeline folder of its own."""
    folder = data.root / f"verify-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "RUNTIME__DLTHUB_TELEMETRY": "false", "DLT_DATA_DIR": str(folder)}
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--verify-child",
        json.dumps(
            {
                "destination": data.destination,
                "dataset": data.name,
                "duckdb_file": None if data.duckdb_file is None else str(data.duckdb_file),
                "pipelines_dir": str(folder / "pipelines"),
            }
        ),
    ]
    with window() as span:
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"verify child failed: {done.stderr[-3000:]}")
    found = json.loads(done.stdout.strip().splitlines()[-1])
    shutil.rmtree(folder, ignore_errors=True)
    return VerifyFigures(
        seconds=found["seconds"],
        rss_before_mb=found["rss_before_mb"],
        peak_rss_mb=found["peak_rss_mb"],
        rows_checked=found["rows_checked"],
        links=found["links"],
        intact=found["intact"],
        window=span,
    )


def status_mb(name: str) -> float:
    """A figure of /proc/self/status (VmRSS: resident now; VmHWM: the peak), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def verify_child(spec: dict[str, Any]) -> int:
    """The `--verify-child` process: one `verify_dataset`, its figures as one JSON line."""
    from routera_archive.audit.verify import verify_dataset
    from routera_archive_pipelines.factory import make_pipeline

    pipeline = make_pipeline(
        spec["destination"],
        spec["dataset"],
        duckdb_file=spec["duckdb_file"],
        pipelines_dir=spec["pipelines_dir"],
    )
    before = status_mb("VmRSS")
    started = time.monotonic()
    result = verify_dataset(pipeline)
    seconds = time.monotonic() - started
    peak = status_mb("VmHWM")
    found = {
        "seconds": seconds,
        "rss_before_mb": before,
        "peak_rss_mb": peak,
        "rows_checked": result.rows_checked,
        "links": result.links,
        "intact": result.intact,
        "findings": [asdict(f) for f in result.findings[:5]],
    }
    print(json.dumps(found))
    return 0


def redact_one(data: Dataset, contact_id: str) -> RedactFigures:
    import routera_archive.dataset.leftovers as leftovers
    import routera_archive.dataset.redact as redact
    from routera_archive.dataset.redact import RedactionRequest
    from routera_archive.run.retention import redact_dataset

    watch = Stopwatch()
    request = RedactionRequest(contact_ids=(contact_id,), redacted_by="bench", reason="bench")
    sizes_before = data.relation_sizes() if data.destination == "postgres" else {}
    with (
        watch.timing(redact, "plan_changes"),
        watch.timing(redact, "apply_changes"),
        watch.timing(redact, "load_fresh"),
        watch.timing(redact, "link_run"),
        watch.timing(redact, "clean_copies"),
        watch.timing(leftovers, "_vacuum"),
        window() as span,
    ):
        done = redact_dataset(data.pipeline, request)
    if len(done) != 1 or done[0].link is None or done[0].cleanup is None:
        raise RuntimeError(f"the redaction of {contact_id} did not end as expected: {done}")
    cleanup = done[0].cleanup
    figures = RedactFigures(
        seconds=span.seconds,
        plan_seconds=watch.get("plan_changes"),
        change_seconds=watch.get("apply_changes"),
        record_seconds=watch.get("load_fresh"),
        link_seconds=watch.get("link_run"),
        compact_seconds=cleanup.compact_seconds,
        bytes_before=cleanup.duckdb_bytes_before,
        bytes_after=cleanup.duckdb_bytes_after,
        vacuum_seconds=watch.get("_vacuum") if data.destination == "postgres" else None,
        rows_changed=done[0].row_count,
        window=span,
    )
    if data.destination == "postgres":  # the tables VACUUM FULL rewrote, before and after
        sizes_after = data.relation_sizes()
        vacuumed = [
            tuple(part.strip('"') for part in name.split(".", 1))
            for name in cleanup.vacuumed_tables
        ]
        figures.bytes_before = sum(sizes_before.get((s, t), 0) for s, t in vacuumed)
        figures.bytes_after = sum(sizes_after.get((s, t), 0) for s, t in vacuumed)
    heavy = (figures.compact_seconds or 0.0) + (figures.vacuum_seconds or 0.0)
    figures.clean_seconds = watch.get("clean_copies") - heavy
    if not done[0].rows.get("contact_archives") == [contact_id]:
        raise RuntimeError(f"the redaction changed {done[0].rows}, not {contact_id}'s row")
    return figures


def wait_for_load(limit: float, tries: int, pause: float) -> int:
    """Sleep while the 1-minute load is above `limit` (at most `tries` times)."""
    waited = 0
    while load_average()[0] > limit and waited < tries:
        say(f"load {load_average()[0]} > {limit}: waiting {pause:g} s ({uptime()})")
        time.sleep(pause)
        waited += 1
    return waited


def wait_for_quiet(max_other: float, timeout: float) -> tuple[float, float]:
    """Before a size's measurements: the 1-minute load counts this process's own build, so ask
    how many cores the machine keeps busy while this process sleeps, and wait (at most
    `timeout` s) for it to fall to `max_other`. Returns (the last reading, seconds waited)."""
    started = time.monotonic()
    busy = busy_cores()
    waited = 0.0
    while busy > max_other and time.monotonic() - started < timeout:
        time.sleep(5)
        busy = busy_cores()
        waited = time.monotonic() - started
    return busy, waited


@dataclass(frozen=True)
class Repeats:
    probes: int = 3
    verifies: int = 2
    redacts: int = 2


def measure_destination(
    destination: str,
    sizes: tuple[int, ...],
    probe: int,
    fill_run: int,
    repeats: Repeats,
    root: Path,
    quiet: tuple[float, float],
) -> list[SizeResult]:
    from routera_archive_sandbox import SandboxConfig, SandboxServer

    found: list[SizeResult] = []
    contacts = max(sizes) + probe * repeats.probes * len(sizes) + 10
    folder = root / destination
    folder.mkdir(parents=True)
    say(f"[{datetime.now():%H:%M:%S}] {destination}: sandbox of {contacts} contacts")
    config = SandboxConfig(port=0, contacts=contacts, companies=0, deals=0, tickets=0, seed=15)
    with SandboxServer(config) as server:
        data = Dataset(destination, folder, server)
        redacted = 0
        try:
            archived = 0
            for size in sizes:
                result = SizeResult(destination, size)
                started = time.monotonic()
                while archived < size:
                    step = min(fill_run, size - archived)
                    data.archive(step)
                    archived += step
                    result.fill_runs += 1
                result.fill_seconds = time.monotonic() - started
                result.audit_rows = data.count("contact_archives")
                result.chained_rows = data.count("row_digests")
                result.links_before = data.count("archive_chain")
                say(
                    f"[{datetime.now():%H:%M:%S}] {destination} {size}: built in "
                    f"{result.fill_seconds:.1f} s ({result.fill_runs} runs), "
                    f"{result.audit_rows} audit rows, {result.chained_rows} digests"
                )
                result.quiet_other_cores, result.quiet_wait_seconds = wait_for_quiet(*quiet)
                say(
                    f"  other cores {result.quiet_other_cores:.2f} (waited "
                    f"{result.quiet_wait_seconds:.0f} s), load {load_average()[0]}"
                )
                for _ in range(repeats.probes):
                    link = probe_run(data, probe)
                    archived += probe
                    result.links.append(link)
                    say(
                        f"  probe run of {probe}: link {link.link_seconds:.3f} s (digest "
                        f"{link.digest_seconds:.3f}, load {link.load_seconds:.3f}, distinct "
                        f"{link.distinct_seconds:.4f})"
                    )
                for _ in range(repeats.verifies):
                    check = verify_in_child(data)
                    if not check.intact:
                        raise RuntimeError(f"verify at {size}: not intact")
                    result.verifies.append(check)
                    say(
                        f"  verify: {check.seconds:.2f} s, peak RSS {check.peak_rss_mb:.0f} MB "
                        f"({check.rows_checked} rows)"
                    )
                if data.duckdb_file is not None:
                    result.file_bytes = data.duckdb_file.stat().st_size
                for _ in range(repeats.redacts):
                    done = redact_one(data, data.first_ids[redacted])
                    redacted += 1
                    result.redacts.append(done)
                    say(
                        f"  redact: {done.seconds:.2f} s (change+record+link "
                        f"{done.change_record_link_seconds:.2f}, rewrite "
                        f"{done.compact_seconds}, vacuum {done.vacuum_seconds})"
                    )
                found.append(result)
        finally:
            data.drop()
    return found


# ------------------------------------------------------------------------------ rendering
def _mb(value: int | None) -> str:
    return "-" if value is None else f"{value / MB:.1f}"


HEADER = [
    "destination",
    "audit rows",
    "digests",
    "links",
    "link s, probe run of 100",
    "of it: digest / load / rest s",
    "SELECT DISTINCT s (tables)",
    "verify s",
    "verify peak RSS MB (before it)",
    "redact s",
    "change+record+link s",
    "file rewrite s (PostgreSQL: VACUUM FULL)",
    "file MB before / after (PostgreSQL: the vacuumed tables)",
    "rewrite s per MB",
]


def rows_of(bench: Bench) -> list[list[str]]:
    rows = []
    for r in bench.results:
        link, red = r.link, r.redact
        rewrite = spread(r.redacts, lambda f: f.rewrite_seconds)
        rows.append(
            [
                r.destination,
                f"{r.audit_rows:,}",
                f"{r.chained_rows:,}",
                str(r.links_before),
                spread(r.links, lambda f: f.link_seconds, 3),
                f"{link.digest_seconds:.3f} / {link.load_seconds:.3f} / {link.other_seconds:.3f}",
                spread(r.links, lambda f: f.distinct_seconds, 4) + f" ({r.link.distinct_tables})",
                spread(r.verifies, lambda f: f.seconds),
                f"{r.verify.peak_rss_mb:.0f} ({r.verify.rss_before_mb:.0f})",
                spread(r.redacts, lambda f: f.seconds),
                spread(r.redacts, lambda f: f.change_record_link_seconds),
                rewrite,
                f"{_mb(red.bytes_before)} / {_mb(red.bytes_after)}",
                spread(r.redacts, lambda f: f.seconds_per_mb, 3),
            ]
        )
    return rows


def detail_rows(bench: Bench) -> list[list[str]]:
    rows = []
    for r in bench.results:
        red = r.redact
        others = [
            max(f.window.other_cores for f in r.links),
            max(f.window.other_cores for f in r.verifies),
            max(f.window.other_cores for f in r.redacts),
        ]
        rows.append(
            [
                r.destination,
                f"{r.audit_rows:,}",
                f"{red.plan_seconds:.3f} / {red.change_seconds:.3f} / "
                f"{red.record_seconds:.3f} / {red.link_seconds:.3f} / {red.clean_seconds:.3f} / "
                f"{red.rest_seconds:.3f}",
                str(red.rows_changed),
                spread(r.links, lambda f: f.run_seconds),
                str(r.link.digested_rows),
                f"{r.verify.rows_checked:,}",
                f"{r.fill_seconds:.1f} ({r.fill_runs})",
                f"{r.quiet_other_cores:.2f} (waited {r.quiet_wait_seconds:.0f} s)",
                " / ".join(f"{v:.2f}" for v in others),
            ]
        )
    return rows


def render(bench: Bench) -> str:
    def table(header: list[str], rows: list[list[str]]) -> list[str]:
        def line(cells: list[str]) -> str:
            return "| " + " | ".join(cells) + " |"

        return [line(header), line(["---"] * len(header)), *(line(r) for r in rows)]

    machine = bench.machine
    versions = ", ".join(f"{k} {v}" for k, v in machine.get("versions", {}).items())
    reps = bench.repeats
    return "\n".join(
        [
            f"Run {bench.started} - {bench.finished}: `{bench.command}` at `{bench.commit}`",
            "",
            f"Machine: {machine.get('nproc')} cores, {machine.get('cpu_model')}, "
            f"{machine.get('memory_gb')} GB. Versions: {versions}.",
            "",
            f"- uptime before: `{bench.uptime_before}`"
            + (f" (after {bench.load_waits} waits of 60 s)" if bench.load_waits else ""),
            f"- uptime after: `{bench.uptime_after}`",
            "",
            f"Each size: {reps['probes']} probe runs of {bench.probe} records, "
            f"{reps['verifies']} verify processes, {reps['redacts']} redactions of one contact "
            "each: the median, and the range in brackets; a split is that of the median one. "
            f"The dataset was grown with real runs of at most {bench.fill_run:,} records.",
            "",
            *table(HEADER, rows_of(bench)),
            "",
            *table(
                [
                    "destination",
                    "audit rows",
                    "redact: plan / UPDATE / record / link / clean copies / rest s",
                    "rows changed",
                    "probe run s (whole run)",
                    "digests per probe link",
                    "verify rows checked",
                    "build s (runs)",
                    "other cores before",
                    "other cores during (max: link runs / verify / redact; PostgreSQL's "
                    "server counts as other)",
                ],
                detail_rows(bench),
            ),
            "",
        ]
    )


def jsonable(bench: Bench) -> dict[str, Any]:
    data = asdict(bench)
    for raw, result in zip(data["results"], bench.results, strict=True):
        for entry, figures in zip(raw["redacts"], result.redacts, strict=True):
            entry["change_record_link_seconds"] = figures.change_record_link_seconds
            entry["seconds_per_mb"] = figures.seconds_per_mb
            entry["rewrite_seconds"] = figures.rewrite_seconds
            entry["rest_seconds"] = figures.rest_seconds
    return data


def git_commit() -> str:
    done = subprocess.run(
        ["git", "-C", str(BENCH_DIR), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    dirty = subprocess.run(
        ["git", "-C", str(BENCH_DIR), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


# ------------------------------------------------------- as a part of run_bench.py
@dataclass
class EvidenceRun:
    """This script run by `run_bench.py --only evidence`, as a process of its own."""

    label: str
    sizes: tuple[int, ...]
    exit_code: int
    wall_s: float
    peak_rss_mb: float
    other_cores: float
    markdown: str = ""
    figures: dict[str, Any] = field(default_factory=dict)
    stderr: str = ""

    def problems(self) -> list[str]:
        if self.exit_code == 0:
            return []
        return [f"evidence_bench.py exited {self.exit_code}: {self.stderr[-500:]}"]


def evidence(config: Any, root: Path, extra_env: Mapping[str, str]) -> EvidenceRun:
    """`run_bench.py`'s runner (a `runners.Config` with `sizes`): DuckDB only, no load wait of
    its own (run_bench waits for a quiet machine before each configuration)."""
    from bench.harness import bench_script, clean_env, run_process

    workdir = root / config.label
    out = workdir / "results"
    command = bench_script(
        "evidence_bench.py",
        "--sizes",
        ",".join(map(str, config.sizes)),
        "--out",
        str(out),
        "--name",
        "evidence",
        "--load-waits",
        "0",
    )
    process = run_process(
        config.label, command, cwd=workdir, env=clean_env(**extra_env), sandbox=None
    )
    found = EvidenceRun(
        label=config.label,
        sizes=tuple(config.sizes),
        exit_code=process.exit_code,
        wall_s=process.wall_s,
        peak_rss_mb=process.peak_rss_mb,
        other_cores=process.other_cores,
        stderr=process.stderr[-3000:],
    )
    if process.exit_code == 0:
        found.markdown = (out / "evidence.md").read_text(encoding="utf-8")
        found.figures = json.loads((out / "evidence.json").read_text(encoding="utf-8"))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="audit rows")
    parser.add_argument(
        "--destination", action="append", choices=("duckdb", "postgres"), default=None
    )
    parser.add_argument("--probe", type=int, default=PROBE, help="records of each probe run")
    parser.add_argument("--fill-run", type=int, default=FILL_RUN, help="records per build run")
    parser.add_argument("--name", default="s9-evidence", help="results/NAME.md and .json")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    parser.add_argument("--probes", type=int, default=Repeats.probes, help="probe runs per size")
    parser.add_argument("--verifies", type=int, default=Repeats.verifies, help="per size")
    parser.add_argument("--redacts", type=int, default=Repeats.redacts, help="per size")
    parser.add_argument("--max-load", type=float, default=1.5, help="wait while load is above")
    parser.add_argument("--load-waits", type=int, default=10, help="at most this many 60 s waits")
    parser.add_argument(
        "--max-other",
        type=float,
        default=0.3,
        help="before each size's measurements, wait while others keep more cores busy",
    )
    parser.add_argument("--quiet-timeout", type=float, default=30.0, help="for --max-other")
    parser.add_argument("--verify-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.verify_child:
        return verify_child(json.loads(args.verify_child))
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    destinations = tuple(args.destination or ["duckdb"])
    sizes = tuple(sorted(int(n) for n in args.sizes.split(",") if n.strip()))
    if "postgres" in destinations:
        os.environ["DESTINATION__POSTGRES__CREDENTIALS"] = POSTGRES_URL
    repeats = Repeats(probes=args.probes, verifies=args.verifies, redacts=args.redacts)
    waits = wait_for_load(args.max_load, args.load_waits, 60.0)
    bench = Bench(
        started=datetime.now().astimezone().isoformat(timespec="seconds"),
        command=" ".join([".venv/bin/python", "bench/evidence_bench.py", *sys.argv[1:]]),
        commit=git_commit(),
        sizes=sizes,
        probe=args.probe,
        fill_run=args.fill_run,
        repeats=asdict(repeats),
        uptime_before=uptime(),
        load_waits=waits,
        machine=machine_info(),
    )
    say(f"uptime: {bench.uptime_before}")
    root = Path(tempfile.mkdtemp(prefix="routera-evidence-"))
    os.environ["DLT_DATA_DIR"] = str(root / "dlt_data")
    try:
        for destination in destinations:
            bench.results += measure_destination(
                destination,
                sizes,
                args.probe,
                args.fill_run,
                repeats,
                root,
                (args.max_other, args.quiet_timeout),
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    bench.uptime_after = uptime()
    bench.finished = datetime.now().astimezone().isoformat(timespec="seconds")
    text = render(bench)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.md").write_text(text, encoding="utf-8")
    data = jsonable(bench)
    (args.out / f"{args.name}.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    say(text)
    say(json.dumps(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
