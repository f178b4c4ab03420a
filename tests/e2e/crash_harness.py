"""A crash harness: SIGKILL `routera-archive run` at random moments, then audit what is left.

The CLI runs as a real process against a sandbox that lives in the test process. Each attempt
is killed with SIGKILL (no handler, no `finally`, no flush) at a moment drawn from a seeded
`random.Random`, anchored either on the process start or on its n-th chunk load, so kills land
in startup and recovery, in the calls before the first load, and in the extract, normalize and
load of later chunks whatever the machine's speed. After the last kill a run is left to finish,
and `verify` checks the rule: a record the API returned is never lost, and no record is
archived twice. A queue may be mixed (`build_queue(types=...)`): every type's record is then
checked the same way, in its own type's audit table, by (type, id).

The CLI writes to a `Target` (`cli_support`): the DuckDB file in the work folder, or a dataset
of its own in the test PostgreSQL. The harness gives the run the target's options and
environment, and reads the queue and the audit trail back through it.

For every kill the harness keeps the evidence a bug report needs: the plan (anchor and delay),
the moment, the run id, the last log line, what dlt left on disk (which tells the phase), the
contacts the sandbox archived during the attempt, and those the run had journaled. Each run's
output stays in the work folder (`attempt-N.out`, `attempt-N.err` with arrival times,
`final.out`, `final.err`) next to dlt's folders (and the DuckDB file, on DuckDB);
`pytest --basetemp=DIR` keeps them out of pytest's rotation.

`crash_after_insert` adds one deterministic crash point (a `sitecustomize` in the child) for a
window that timed kills only hit by chance.

`through="source"` drives a dlt user's own script instead of the CLI: one
`pipeline.run(routera_archive())` on the same pipeline (name, folder, destination and dataset),
so that the harness reads its lock, journal and packages the same way. The script logs as a
user's script would (INFO to stderr) and prints no summary: the final run's id and account come
from the dataset (`archive_runs`) and from the run's log lines. One `pipeline.run()` loads once,
after its extract: its kills are anchored on the start or on a share of the records left to
archive (`draw_source_kill_plans`), never on a chunk load.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from routera_archive_pipelines.factory import pipeline_name_for
from routera_archive_sandbox import SandboxServer
from tests.e2e.cli_support import DB_FILE, Result, Target, cli_env, run_cli, start_cli

TERMINAL = ("archived", "already_archived", "not_found", "invalid", "duplicate")
# Custom fields no destination column holds as they are (tests/e2e/test_poison_records.py).
POISON_FIELDS: tuple[dict[str, object], ...] = (
    {"lead_score": 2**64 - 1},  # a number column everywhere else
    {"nickname": "\ud83d cut"},  # a lone surrogate: half an emoji
    {"nickname": "a\x00b"},
    {"lead_score": float("nan")},
    {"history": json.loads("[" * 80 + "1" + "]" * 80)},  # deeper than a JSON column goes
)
WITH_RECORD = ("archived", "already_archived")
# `record_source` of a row made from the run's own DELETE answer (with `properties`, over its
# snapshot), and of one recovered (a journal replayed, a GET after a 404, with or without a
# snapshot a crashed run journaled).
OWN_ANSWER = ("delete", "snapshot+delete")
RECOVERED = ("journal", "get", "snapshot+get")

# Phases a kill can land in; the first two come from the log, the others from dlt's folders.
PHASES = ("startup", "recovery", "calls", "extract", "normalize", "load")

START_LINE = re.compile(r"run (\S+): (\d+) requests to handle")
LOADED_LINE = re.compile(r"loaded (\d+) outcomes \(load ids")
RECOVERY_LINES = ("left unloaded", "was interrupted: loading")
SUMMARY_RUN = re.compile(r"routera-archive run (\S+): (.*)")
SUMMARY_COUNT = re.compile(
    r"^\s*(archived|already_archived|not_found|invalid|duplicate|failed)\s+\S\s+(\d+)\s*$"
)
SUMMARY_REPLAYED = re.compile(r"loaded (\d+) outcomes from an interrupted run's journal")
# The runner's own log line for the same (the source's runs print no summary).
JOURNAL_REPLAYED = re.compile(r"was interrupted: loading (\d+) outcomes from its journal")

# The harness's runs: the CLI's `run`, or a dlt user's script around the source.
THROUGH = ("cli", "source")
# A dlt user's own script: the draining source in one `pipeline.run()`, on the pipeline the CLI
# would use for this destination and dataset (T_PIPELINE), under DLT_DATA_DIR.
SOURCE_RUN_SCRIPT = """
import logging
import os
import sys

import dlt
from routera_archive import routera_archive

logging.basicConfig(
    stream=sys.stderr,
    level=logging.INFO,
    format="%(asctime)s %(levelname)s %(name)s: %(message)s",
)
if os.environ["T_DEST"] == "duckdb":
    destination = dlt.destinations.duckdb(os.environ["T_FILE"])
else:
    destination = "postgres"
pipeline = dlt.pipeline(
    pipeline_name=os.environ["T_PIPELINE"],
    destination=destination,
    dataset_name=os.environ["T_DATASET"],
)
info = pipeline.run(routera_archive(force=True))
print(info, flush=True)
"""

# Every process this module starts is waited for at most this long; nothing can hang CI.
PROCESS_TIMEOUT_S = 180.0
# Time for the sandbox to finish the requests a killed client left in flight (latency + a margin).
SETTLE_S = 0.25


@dataclass(frozen=True)
class KillPlan:
    """When to kill: `delay` seconds after the process started ("start"), after its log says
    how many requests it handles ("calls": the lock is held, recovery is done), after its
    n-th chunk load ("loaded"); for the source's runs, which load once, after the sandbox
    archived `share` of the records still to archive when the attempt started ("answered"), or
    after a new package of the run's reached the `folder` of `CrashHarness._packages`
    ("package": `extracted`, normalize's; `normalized`, the load's)."""

    anchor: str
    delay: float
    nth: int = 0
    share: float = 0.0
    folder: str = ""

    def describe(self) -> str:
        if self.anchor == "start":
            return f"{self.delay:.2f}s after start"
        if self.anchor == "calls":
            return f"{self.delay:.2f}s after the calls start"
        if self.anchor == "answered":
            return f"{self.delay:.2f}s after {self.share:.0%} of the records left were archived"
        if self.anchor == "package":
            return f"{self.delay:.2f}s after a package reached {self.folder}"
        return f"{self.delay:.2f}s after load #{self.nth}"


def draw_kill_plans(
    rng: random.Random, kills: int, *, early_max: float = 3.0, load_cycle: float = 1.0
) -> list[KillPlan]:
    """Half the kills anchored on the start (0.2 s to `early_max`: startup, recovery, the first
    calls and the first load), half on a chunk load (within the next load cycle: calls, then
    the next chunk's extract, normalize and load), in a seeded order.

    A chunk's `pipeline.run` takes ~0.9 s here: its extract starts ~0.03 s after the previous
    chunk's "loaded" line and lasts ~0.1 s, normalize ~0.15 s, load the rest. The delay after a
    load is `load_cycle * u**2`, so that the short extract is hit too (P(delay < 0.15 s) ~ 0.4).
    """
    anchors = ["start"] * ((kills + 1) // 2) + ["loaded"] * (kills // 2)
    rng.shuffle(anchors)
    plans = []
    for anchor in anchors:
        if anchor == "start":
            plans.append(KillPlan("start", round(rng.uniform(0.2, early_max), 3)))
        else:
            delay = round(load_cycle * rng.random() ** 2, 3)
            plans.append(KillPlan("loaded", delay, rng.randint(1, 2)))
    return plans


def draw_source_kill_plans(
    rng: random.Random, kills: int, *, early_max: float = 3.0
) -> list[KillPlan]:
    """Kills for runs through the source, which load once, after their extract: half anchored
    on the start (0.2 s to `early_max`: startup, recovery, the first calls); the others in turn
    mid-calls (a quarter to nine tenths of the records left archived, then up to 0.5 s: calls
    in flight, the extract open), in normalize (its package extracted) and in the load (its
    package normalized), the last two within 0.1 s of the anchor; in a seeded order."""
    plans = [
        KillPlan("start", round(rng.uniform(0.2, early_max), 3)) for _ in range((kills + 1) // 2)
    ]
    for n in range(kills // 2):
        if n % 3 == 0:
            delay = 0.5 * rng.random() ** 2
            plans.append(
                KillPlan("answered", round(delay, 3), share=round(rng.uniform(0.25, 0.9), 2))
            )
        else:
            folder = "extracted" if n % 3 == 1 else "normalized"
            plans.append(KillPlan("package", round(0.1 * rng.random() ** 2, 3), folder=folder))
    rng.shuffle(plans)
    return plans


@dataclass
class Attempt:
    """One `run` that was meant to be killed, and what it left."""

    number: int
    plan: KillPlan
    killed: bool = False
    pid: int | None = None
    exit_code: int | None = None
    at: float = 0.0  # seconds after the start when it was killed (or ended)
    run_id: str | None = None
    lines: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # when each line came, after the start
    loads: int = 0  # chunk loads this run logged before it died
    deletes: int = 0  # DELETEs the sandbox saw during the attempt
    phase: str = "startup"
    left_on_disk: dict[str, int] = field(default_factory=dict)
    # Records (`record_key`) the sandbox archived meanwhile, and those with a record in its
    # journal.
    archived: set[str] = field(default_factory=set)
    journaled: set[str] = field(default_factory=set)

    @property
    def last_line(self) -> str:
        if not self.lines:
            return "(no log line)"
        line = self.lines[-1]
        # Drop the timestamp and level: "2026-.. INFO routera_archive.run.runner: loaded ..."
        # -> the message.
        return line.split(": ", 1)[-1] if ": " in line else line

    @property
    def stage(self) -> str:
        return "after loads started" if self.loads else "before first load"

    def describe(self) -> str:
        what = "killed" if self.killed else f"ended by itself with exit code {self.exit_code}"
        left = ", ".join(f"{k} {v}" for k, v in sorted(self.left_on_disk.items()) if v) or "-"
        return (
            f"#{self.number} {self.plan.describe()}: {what} at {self.at:.2f}s, run {self.run_id}, "
            f"phase {self.phase}, {self.stage} ({self.loads} loads), {self.deletes} DELETEs, "
            "archived "
            f"{len(self.archived)}, journaled {len(self.journaled)}, "
            f"unjournaled {len(self.archived - self.journaled)}, left {left}; "
            f"last line: {self.last_line[:110]}"
        )


@dataclass
class FinalRun:
    exit_code: int
    stdout: str
    stderr: str
    started_epoch: float
    seconds: float
    # A run through the source prints no summary: its id is its archive_runs row's.
    source_run_id: str | None = None
    through_source: bool = False

    @property
    def run_id(self) -> str | None:
        if self.through_source:
            return self.source_run_id
        found = SUMMARY_RUN.search(self.stdout)
        return found.group(1) if found else None

    def summary_counts(self) -> dict[str, int] | None:
        """The CLI summary's counts (None for a run through the source: it has none)."""
        if self.through_source:
            return None
        counts = {}
        for line in self.stdout.splitlines():
            found = SUMMARY_COUNT.match(line)
            if found:
                counts[found.group(1)] = int(found.group(2))
        return counts

    def replayed(self) -> int:
        if self.through_source:
            return sum(int(n) for n in JOURNAL_REPLAYED.findall(self.stderr))
        found = SUMMARY_REPLAYED.search(self.stdout)
        return int(found.group(1)) if found else 0

    @property
    def stuck_on_normalize(self) -> bool:
        """The run failed re-normalizing a package that was already normalized: a crash between
        the two halves of dlt's normalize commit left it in both folders."""
        text = self.stdout + self.stderr
        return self.exit_code != 0 and "step=normalize" in text and "Directory not empty" in text

    def error(self) -> str:
        """The summary's error, on one line."""
        text = " ".join(self.stdout.split())
        return text[text.find("error:") :][:600] if "error:" in text else "(no error line)"


@dataclass
class QueuePlan:
    """What was queued, and what each kind of request must end as."""

    contacts: list[str]  # active contacts queued once (plus the duplicated ones once more)
    duplicated: list[str]  # contacts queued twice
    unknown: list[str]  # valid ids the sandbox does not know
    pre_archived: list[str]  # archived before the harness started (queued)
    invalid_requests: int  # requests that can never be valid (added with SQL)
    # Unknown contacts under one request id (added with SQL): a request is its id and its
    # contact, so these are as many requests, each `not_found`.
    shared: int = 0
    # A mixed queue (`build_queue(types=...)`): per other type, the active records queued once
    # (plus the duplicated ones once more), and the requests for a record of another type
    # queued as a contact (each `not_found`: no such contact).
    others: dict[str, list[str]] = field(default_factory=dict)
    others_duplicated: int = 0
    misfiled: int = 0

    @property
    def requests(self) -> int:
        return (
            len(self.contacts)
            + len(self.duplicated)
            + len(self.unknown)
            + len(self.pre_archived)
            + self.invalid_requests
            + self.shared
            + self.archived_others
            + self.others_duplicated
            + self.misfiled
        )

    @property
    def archived_others(self) -> int:
        return sum(len(ids) for ids in self.others.values())

    def expected_archived(self) -> set[str]:
        """Every record the harness's runs must leave archived, as `record_key`s."""
        keys = set(self.contacts) | set(self.pre_archived)
        return keys | {record_key(kind, oid) for kind, ids in self.others.items() for oid in ids}


# The child's `sitecustomize`: SIGKILL the process once, at one exact point inside dlt.
CRASH_HOOK = """
import os
import signal

POINT = os.environ.get("CRASH_HOOK_POINT", "")
MARKER = os.environ.get("CRASH_HOOK_MARKER", "")


def _die(note):
    if not os.path.exists(MARKER):
        with open(MARKER, "w") as handle:
            handle.write(note)
        os.kill(os.getpid(), signal.SIGKILL)


if POINT.startswith("insert:"):
    # The INSERT of a job's file: its statements (PostgreSQL), or DuckDB's copy of its parquet
    # file (`INSERT INTO ... SELECT FROM read_parquet`).
    from dlt.destinations.impl.duckdb.duck import DuckDbCopyJob
    from dlt.destinations.insert_job_client import InsertValuesLoadJob

    def _then_die(job_class):
        run = job_class.run

        def _run_then_die(self):
            run(self)  # the INSERT is committed when this returns
            if self.load_table_name == POINT.split(":", 1)[1]:
                _die(self.file_name())

        job_class.run = _run_then_die

    _then_die(InsertValuesLoadJob)
    _then_die(DuckDbCopyJob)

elif POINT == "normalize-commit":
    from dlt.common.storages.load_storage import LoadStorage

    _commit = LoadStorage.commit_new_load_package

    def _commit_then_die(self, load_id):
        _commit(self, load_id)  # load/new/<id> renamed to load/normalized/<id>
        _die(load_id)  # before normalize/extracted/<id> is deleted

    LoadStorage.commit_new_load_package = _commit_then_die

elif POINT == "schema-write":
    from dlt.common.storages.file_storage import FileStorage
    from dlt.common.utils import uniq_id

    _save_atomic = FileStorage.save_atomic

    def _write_then_die(storage_path, relative_path, data, file_type="t"):
        # A schema saved again (not its first save): dlt's own temporary file, then the kill
        # before its rename over `<name>.schema.json`.
        if relative_path.endswith(".schema.json") and os.path.exists(
            os.path.join(storage_path, relative_path)
        ):
            mode = "w" + file_type
            encoding = None if "b" in mode else "utf-8"
            name = os.environ.get("CRASH_HOOK_TORN_NAME") or uniq_id(8)
            with open(os.path.join(storage_path, name), mode, encoding=encoding) as f:
                f.write(data)
            _die(relative_path)
        return _save_atomic(storage_path, relative_path, data, file_type)

    FileStorage.save_atomic = staticmethod(_write_then_die)
"""

# Crash points `CrashHarness.crash_at` knows.
CRASH_POINTS = (
    "insert:contact_archives",
    "insert:archive_log",
    "normalize-commit",
    "schema-write",
)


def _fake_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


# Each type's audit table.
ARCHIVE_TABLES = {
    "contacts": "contact_archives",
    "companies": "company_archives",
    "deals": "deal_archives",
    "tickets": "ticket_archives",
}


def record_key(object_type: str | None, object_id: str | None) -> str:
    """One record of any type, as the harness names it: a contact by its id (as before there
    were types), any other record as `type/id`."""
    if object_type in (None, "contacts"):
        return str(object_id)
    return f"{object_type}/{object_id}"


def archived_keys(server: SandboxServer) -> set[str]:
    """The records the sandbox has archived since its stats were reset, of every type."""
    by_type = server.state.stats()["deletes_succeeded_by_type"]
    return {record_key(kind, oid) for kind, ids in by_type.items() for oid in ids}


class CrashHarness:
    """The CLI in the target's work folder against `server`, writing to `target`, with every
    process it starts under its control."""

    def __init__(
        self,
        target: Target,
        server: SandboxServer,
        *,
        chunk_size: int = 100,
        settings: Mapping[str, str] | None = None,
        through: str = "cli",
    ) -> None:
        assert through in THROUGH, through
        self.through = through
        self.target = target
        self.workdir = target.workdir
        self.server = server
        self.chunk_size = chunk_size
        # More environment for every run (say, a lower concurrency).
        self.settings = dict(settings or {})
        # The run's own pipeline folder: its name depends on the destination and the dataset.
        self.pipeline_name = pipeline_name_for(target.destination, target.dataset)
        self.pipeline_dir = self.workdir / "dlt_data" / "pipelines" / self.pipeline_name
        self.queue_plan: QueuePlan | None = None
        self.attempts: list[Attempt] = []
        self.extra_env: dict[str, str] = {}
        self._live: list[subprocess.Popen[str]] = []

    # ------------------------------------------------------------------ processes
    def env(self) -> dict[str, str]:
        chunks = {"SOURCES__ROUTERA__CHUNK_SIZE": str(self.chunk_size)}
        return cli_env(
            self.server, self.workdir, self.target.env, chunks, self.settings, self.extra_env
        )

    def crash_at(self, point: str, **hook_env: str) -> Path:
        """Make the next run SIGKILL itself once, at one exact point inside dlt:

        - `insert:<table>`: right after dlt's insert job for `<table>` (into the staging
          dataset, for a merged table) committed, before dlt recorded the job as done;
        - `normalize-commit`: right after normalize renamed the package into `load/normalized/`,
          before it deleted the extracted copy (dlt logs "do not kill this process" there);
        - `schema-write`: inside dlt's save of a schema already saved once, after its
          temporary file was written and before its rename (`FileStorage.save_atomic`);
          `CRASH_HOOK_TORN_NAME=` in `hook_env` names that file, dlt's random name otherwise.

        A `sitecustomize` on the child's PYTHONPATH wraps the dlt function; the connector is
        untouched. Returns the marker file the hook writes when it fires."""
        assert point in CRASH_POINTS, point
        hook_dir = self.workdir / "crash_hook"
        hook_dir.mkdir(exist_ok=True)
        (hook_dir / "sitecustomize.py").write_text(CRASH_HOOK, encoding="utf-8")
        marker = self.workdir / f"crashed-at-{point.replace(':', '-')}"
        self.extra_env = {
            "PYTHONPATH": os.pathsep.join(
                [str(hook_dir), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
            "CRASH_HOOK_POINT": point,
            "CRASH_HOOK_MARKER": str(marker),
            **hook_env,
        }
        return marker

    def no_crash_hook(self) -> None:
        self.extra_env = {}

    def cli(self, *args: str, timeout: float = PROCESS_TIMEOUT_S) -> Result:
        return run_cli(self.workdir, self.env(), *self.target.command(*args), timeout=timeout)

    def spawn_run(self, stdout: IO[str]) -> subprocess.Popen[str]:
        if self.through == "source":
            process = subprocess.Popen(
                [sys.executable, str(self._source_script())],
                cwd=self.workdir,
                env=self._source_env(),
                stdout=stdout,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,  # its own process group: the kill reaches its worker
            )
        else:
            process = start_cli(
                self.workdir,
                self.env(),
                *self.target.command("run", "--force", "--rps", "0"),
                stdout=stdout,
                start_new_session=True,  # its own process group: the kill reaches any helper too
            )
        self._live.append(process)
        return process

    def _source_script(self) -> Path:
        script = self.workdir / "users_pipeline.py"
        if not script.exists():
            script.write_text(SOURCE_RUN_SCRIPT, encoding="utf-8")
        return script

    def _source_env(self) -> dict[str, str]:
        return {
            **self.env(),
            "T_DEST": self.target.destination,
            "T_FILE": str(self.workdir / DB_FILE),
            "T_DATASET": self.target.dataset,
            "T_PIPELINE": self.pipeline_name,
        }

    def close(self) -> None:
        """Kill whatever this harness started that is still alive (used in a `finally`)."""
        for process in self._live:
            if process.poll() is None:
                _kill_group(process)
                process.wait(timeout=30)
        self._live.clear()

    # ---------------------------------------------------------------------- queue
    def build_queue(
        self,
        rng: random.Random,
        *,
        contacts: int,
        duplicated: int = 8,
        unknown: int = 5,
        types: Mapping[str, int] | None = None,
    ) -> QueuePlan:
        """Queue `contacts` active contacts through `enqueue` (some twice, a few unknown ids, one
        archived beforehand), then add invalid requests with SQL (enqueue refuses them).

        `types` makes it a mixed queue: so many active records of each other type (`companies`:
        20), two of each queued twice, and one of each queued as a contact, all shuffled in
        among the contacts in one CSV with an `object_type` column; and invalid requests of
        those types (a dot-segment id, an unknown type) with SQL."""
        active = self.server.state.contact_ids(include_archived=False)
        assert len(active) >= contacts + 1, "the sandbox needs more contacts"
        chosen = rng.sample(active, contacts + 1)
        pre_archived, queued = chosen[:1], chosen[1:]
        # Records nobody plans for, among the others: each must reach the trail like any other.
        queued += [
            self.server.state.create_contact({"email": f"poison-{n}@example.com", **fields})["id"]
            for n, fields in enumerate(POISON_FIELDS)
        ]
        assert self.server.state.archive_contact(pre_archived[0], "someone-before-the-harness")
        self.server.state.reset_stats()  # from here on, deletes_succeeded is the harness's own
        twice = rng.sample(queued, duplicated)
        known = set(self.server.state.contact_ids())
        strangers = [i for i in (_fake_uuid(rng) for _ in range(unknown)) if i not in known]
        lines = [*queued, *twice, *strangers, *pre_archived]
        rng.shuffle(lines)
        # The other types draw from a generator of their own, so that `rng` (and the kill
        # plans drawn from it next) is where it would be without them.
        mix = random.Random(repr(sorted((types or {}).items())))
        others: dict[str, list[str]] = {}
        typed: list[tuple[str, str]] = []  # (object_type, object_id) of the other types' rows
        for kind, count in (types or {}).items():
            active_of_kind = self.server.state.object_ids(kind, include_archived=False)
            assert len(active_of_kind) >= count, f"the sandbox needs more {kind}"
            others[kind] = mix.sample(active_of_kind, count)
            typed += [(kind, oid) for oid in [*others[kind], *mix.sample(others[kind], 2)]]
            typed.append(("contacts", others[kind][0]))  # misfiled: names no contact
        if typed:
            rows = [("", cid) for cid in lines] + typed
            mix.shuffle(rows)
            queue_file = "queue.csv"
            text = "object_type,object_id\n" + "".join(f"{k},{oid}\n" for k, oid in rows)
        else:
            rows = list(lines)
            queue_file = "queue.txt"
            text = "\n".join(lines) + "\n"
        (self.workdir / queue_file).write_text(text, encoding="utf-8")
        done = self.cli("enqueue", queue_file, "--requested-by", "crash-harness", "--reason", "t")
        assert done.code == 0, done.stdout + done.stderr
        assert f"enqueued {len(rows)} requests" in done.stdout, done.stdout

        # Requests that can never be valid, and one request id shared by two contacts: the
        # queue is the user's table, so it can hold anything. Written while no run is alive.
        shared = uuid.UUID(int=rng.getrandbits(128)).hex
        invalid = [
            (f"invalid-{n}", contact_id)
            for n, contact_id in enumerate(
                [" padded ", "..", "x" * 300, "tab\tid", "", None], start=1
            )
        ]
        sharing = [(shared, _fake_uuid(rng)), (shared, _fake_uuid(rng))]
        self.target.executemany(
            "INSERT INTO archive_queue (request_id, contact_id, _dlt_load_id, _dlt_id) "
            "VALUES (?, ?, ?, ?)",
            [
                (request_id, contact_id, "crash-harness", uuid.uuid4().hex[:14])
                for request_id, contact_id in invalid + sharing
            ],
        )
        invalid_typed = [(f"invalid-{kind}", kind, "..") for kind in others]
        if others:
            invalid_typed.append(("invalid-type", "widgets", _fake_uuid(mix)))
        self.target.executemany(
            "INSERT INTO archive_queue (request_id, object_type, object_id, _dlt_load_id, _dlt_id) "
            "VALUES (?, ?, ?, ?, ?)",
            [(*row, "crash-harness", uuid.uuid4().hex[:14]) for row in invalid_typed],
        )
        self.queue_plan = QueuePlan(
            contacts=queued,
            duplicated=twice,
            unknown=strangers,
            pre_archived=pre_archived,
            invalid_requests=len(invalid) + len(invalid_typed),
            shared=len(sharing),
            others=others,
            others_duplicated=2 * len(others),
            misfiled=len(others),
        )
        return self.queue_plan

    # -------------------------------------------------------------------- killing
    def kill_once(
        self,
        number: int,
        plan: KillPlan,
        *,
        before_kill: Callable[[subprocess.Popen[str]], None] | None = None,
    ) -> Attempt:
        """Start a run, SIGKILL it as `plan` says, and record what it left. A run that ends
        before its moment is not killed (`killed` False, `exit_code` its own)."""
        attempt = Attempt(number=number, plan=plan)
        started_epoch = time.time()
        before_disk = self._packages()
        before_archived = archived_keys(self.server)
        before_deletes = _deletes(self.server)
        loads = threading.Semaphore(0)
        calling = threading.Event()
        started = time.monotonic()
        with (self.workdir / f"attempt-{number}.out").open("w", encoding="utf-8") as stdout:
            process = self.spawn_run(stdout)
            attempt.pid = process.pid

            def read_stderr() -> None:
                assert process.stderr is not None
                for line in process.stderr:
                    attempt.times.append(time.monotonic() - started)
                    attempt.lines.append(line.rstrip("\n"))
                    if LOADED_LINE.search(line):
                        loads.release()
                    if START_LINE.search(line):
                        calling.set()

            reader = threading.Thread(target=read_stderr, daemon=True)
            reader.start()
            try:
                deadline = started + PROCESS_TIMEOUT_S
                if plan.anchor == "loaded":
                    seen = 0
                    while (
                        seen < plan.nth and process.poll() is None and time.monotonic() < deadline
                    ):
                        if loads.acquire(timeout=0.05):
                            seen += 1
                    kill_at = time.monotonic() + plan.delay
                elif plan.anchor == "answered":
                    assert self.queue_plan is not None, "build_queue first"
                    left = len(self.queue_plan.expected_archived() - before_archived)
                    wanted = max(1, round(plan.share * left))
                    while (
                        len(archived_keys(self.server) - before_archived) < wanted
                        and process.poll() is None
                        and time.monotonic() < deadline
                    ):
                        time.sleep(0.005)
                    kill_at = time.monotonic() + plan.delay
                elif plan.anchor == "package":
                    while (
                        not self._packages()[plan.folder] - before_disk.get(plan.folder, set())
                        and process.poll() is None
                        and time.monotonic() < deadline
                    ):
                        time.sleep(0.002)
                    kill_at = time.monotonic() + plan.delay
                elif plan.anchor == "calls":
                    while not calling.wait(0.05):
                        if process.poll() is not None or time.monotonic() > deadline:
                            break
                    kill_at = time.monotonic() + plan.delay
                else:
                    kill_at = started + plan.delay
                while time.monotonic() < kill_at and process.poll() is None:
                    time.sleep(min(0.005, max(0.0, kill_at - time.monotonic())))
                attempt.at = time.monotonic() - started
                if process.poll() is None:
                    if before_kill is not None:
                        before_kill(process)
                    _kill_group(process)
                attempt.exit_code = process.wait(timeout=30)
                attempt.killed = attempt.exit_code == -signal.SIGKILL
            finally:
                if process.poll() is None:
                    _kill_group(process)
                    process.wait(timeout=30)
            reader.join(timeout=10)
        (self.workdir / f"attempt-{number}.err").write_text(
            "".join(
                f"{t:7.3f} {line}\n" for t, line in zip(attempt.times, attempt.lines, strict=False)
            ),
            encoding="utf-8",
        )
        time.sleep(SETTLE_S)  # requests the dead client left in flight are still handled

        attempt.loads = sum(1 for line in attempt.lines if LOADED_LINE.search(line))
        attempt.deletes = _deletes(self.server) - before_deletes
        for line in attempt.lines:
            if found := START_LINE.search(line):
                attempt.run_id = found.group(1)
        if attempt.run_id is None:
            attempt.run_id = self._lock_holder(attempt.pid)
        if attempt.run_id is None and self.through == "source" and not attempt.killed:
            attempt.run_id = self._run_row_loaded_since(started_epoch)
        after_disk = self._packages()
        attempt.left_on_disk = {
            kind: len(after_disk[kind] - before_disk.get(kind, set())) for kind in after_disk
        }
        attempt.phase = _phase(attempt, through=self.through)
        attempt.archived = archived_keys(self.server) - before_archived
        attempt.journaled = self._journaled(attempt.run_id)
        self.attempts.append(attempt)
        return attempt

    def final_run(self, name: str = "final") -> FinalRun:
        """A run that is not killed; its output goes to `<name>.out` and `<name>.err`."""
        started_epoch = time.time()
        started = time.monotonic()
        if self.through == "source":
            ran = subprocess.run(
                [sys.executable, str(self._source_script())],
                cwd=self.workdir,
                env=self._source_env(),
                capture_output=True,
                text=True,
                timeout=PROCESS_TIMEOUT_S,
            )
            done = Result(ran.returncode, ran.stdout, ran.stderr)
        else:
            done = self.cli("run", "--force", "--rps", "0")
        (self.workdir / f"{name}.out").write_text(done.stdout, encoding="utf-8")
        (self.workdir / f"{name}.err").write_text(done.stderr, encoding="utf-8")
        final = FinalRun(
            done.code, done.stdout, done.stderr, started_epoch, time.monotonic() - started
        )
        if self.through == "source":
            final.through_source = True
            final.source_run_id = self._run_row_loaded_since(started_epoch)
        return final

    def _run_row_loaded_since(self, epoch: float) -> str | None:
        """The run whose archive_runs row was loaded after `epoch` (load ids are creation
        times; a killed run writes no row)."""
        if "archive_runs" not in self.target.tables():
            return None
        found = {
            str(run_id)
            for run_id, load_id in self.target.query(
                "SELECT run_id, _dlt_load_id FROM archive_runs"
            )
            if float(load_id) >= epoch
        }
        assert len(found) <= 1, f"more than one run row loaded by one run: {found}"
        return found.pop() if found else None

    # ----------------------------------------------------------------- what is left
    def packages(self) -> dict[str, list[str]]:
        """Every load package dlt holds, by where it is (for evidence)."""
        return {kind: sorted(found) for kind, found in self._packages().items() if found}

    def _packages(self) -> dict[str, set[str]]:
        """dlt's load packages by where they are: `normalize/<extract folder>/<load id>` while
        extracted, `normalize/extracted/` until normalized, `load/new/` while normalized,
        `load/normalized/` until and while loaded, `load/loaded/` when done."""
        normalize = self.pipeline_dir / "normalize"
        load = self.pipeline_dir / "load"

        def names(folder: Path, glob: str) -> set[str]:
            return {str(p.relative_to(self.pipeline_dir)) for p in folder.glob(glob) if p.is_dir()}

        return {
            # Each extract works in a folder of its own, renamed into `extracted/` when done.
            "extract": {p for p in names(normalize, "*/*") if Path(p).parts[1] != "extracted"},
            "extracted": names(normalize, "extracted/*"),
            "load_new": names(load, "new/*"),
            "normalized": names(load, "normalized/*"),
            "loaded": names(load, "loaded/*"),
        }

    def _lock_holder(self, pid: int | None) -> str | None:
        """The run id in the lock file, if the process `pid` wrote it (a run killed before it
        took the lock leaves the previous holder's record there)."""
        try:
            holder = json.loads((self.pipeline_dir / "run.lock").read_text("utf-8") or "{}")
        except (OSError, ValueError):
            return None
        return holder.get("run_id") if holder.get("pid") == pid else None

    def _journaled(self, run_id: str | None) -> set[str]:
        """Contacts whose record the run `run_id` had written to its journals when it died (its
        own, `<run id>.jsonl`, and its call worker's, `<run id>.calls.jsonl`)."""
        if run_id is None:
            return set()
        journal = self.pipeline_dir / "journal"
        contacts = set()
        for path in [journal / f"{run_id}.jsonl", *journal.glob(f"{run_id}.*.jsonl")]:
            if not path.exists():
                continue
            for line in path.read_text("utf-8").splitlines():
                try:
                    outcome = json.loads(line)
                except ValueError:
                    continue  # the line the kill tore
                if outcome.get("status") in WITH_RECORD and outcome.get("record"):
                    request = outcome["request"]
                    contacts.add(record_key(request.get("object_type"), request["object_id"]))
        return contacts

    # ---------------------------------------------------------------------- report
    def tally(self) -> Counter[str]:
        return Counter(a.phase for a in self.attempts if a.killed)

    def stages(self) -> Counter[str]:
        return Counter(a.stage for a in self.attempts if a.killed)

    def report(self, final: FinalRun | None = None, rows: dict[str, Any] | None = None) -> str:
        killed = [a for a in self.attempts if a.killed]
        lines = [
            f"{len(killed)} kills of {len(self.attempts)} attempts; phases "
            + ", ".join(f"{p} {self.tally()[p]}" for p in PHASES)
            + "; "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.stages().items())),
        ]
        lines += [f"  {a.describe()}" for a in self.attempts]
        if final is not None:
            lines.append(
                f"  final run {final.run_id}: exit {final.exit_code} in {final.seconds:.1f}s, "
                f"summary {final.summary_counts()}, replayed from journal {final.replayed()}"
            )
        if rows:
            lines.append(f"  rows: {rows}")
        return "\n".join(lines)


def _kill_group(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # the group is the process's own (new session)


def _deletes(server: SandboxServer) -> int:
    return int(server.state.stats()["totals"]["by_method"].get("DELETE", 0))


def _phase(attempt: Attempt, *, through: str = "cli") -> str:
    """Where the kill landed: from the log before the calls start, from dlt's folders after.
    A run through the source logs no start of its calls: its first DELETE is that start."""
    if not attempt.killed:
        return "not killed"
    if through == "source":
        started = attempt.deletes > 0
    else:
        started = any(START_LINE.search(line) for line in attempt.lines)
    if not started:
        if any(marker in line for line in attempt.lines for marker in RECOVERY_LINES):
            return "recovery"
        return "startup"
    left = attempt.left_on_disk
    if left.get("normalized"):
        return "load"
    if left.get("extracted") or left.get("load_new"):
        return "normalize"
    if left.get("extract"):
        return "extract"
    return "calls"


# ------------------------------------------------------------------------------ the audit
def read_tables(target: Target) -> dict[str, list[dict[str, Any]]]:
    """The queue, the log, the runs and every type's audit table, as rows (a table no run got
    to create reads as empty). Each row of the queue, the log and the archives has a `key`:
    its record's `record_key`."""
    existing = target.tables()

    def rows(columns: str, table: str) -> list[dict[str, Any]]:
        if table not in existing:
            return []
        names = [name.strip() for name in columns.split(",")]
        found = target.query(f"SELECT {columns} FROM {table}")
        return [dict(zip(names, row, strict=True)) for row in found]

    def typed(columns: str, table: str) -> list[dict[str, Any]]:
        """`rows`, with `object_type` and `object_id` (NULL where the table has none: a
        contact-only queue), and the record's key."""
        held = {
            name
            for (name,) in target.query(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = ? AND table_name = ?",
                target.dataset,
                table,
            )
        }
        extra = ", ".join(name if name in held else f"NULL AS {name}" for name in TYPE_COLUMNS)
        found = rows(f"{columns}, {extra}", table)
        for row in found:
            kind = row["object_type"] or "contacts"
            object_id = row["object_id"] if row["object_id"] is not None else row["contact_id"]
            row["key"] = record_key(kind, object_id)
        return found

    archives = []
    for kind, table in ARCHIVE_TABLES.items():
        for row in rows(
            "id, run_id, recovered, record_source, request_id, _dlt_load_id, _dlt_id", table
        ):
            archives.append({**row, "key": record_key(kind, row["id"]), "kind": kind})
    return {
        "queue": typed("request_id, contact_id", "archive_queue"),
        "archives": archives,
        "log": typed(
            "outcome_id, request_id, contact_id, status, run_id, recovered, record_source, "
            "_dlt_load_id, _dlt_id",
            "archive_log",
        ),
        "runs": rows("run_id, exit_code, outcome, pending_at_start, counts", "archive_runs"),
    }


TYPE_COLUMNS = ("object_type", "object_id")


def fold_copies(
    rows: list[dict[str, Any]], key: str
) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """Fold rows that are copies of one package row (same key, same `_dlt_id`, same load id: a
    package whose insert ran twice) into one. Returns the folded rows and {key: [load id, ...]}
    of the copies. Two rows for one key that are *not* copies stay, and are a real problem."""
    seen: set[tuple[Any, ...]] = set()
    folded, copies = [], {}
    for row in rows:
        identity = (row[key], row["_dlt_id"], row["_dlt_load_id"])
        if identity in seen:
            copies.setdefault(str(row[key]), []).append(str(row["_dlt_load_id"]))
            continue
        seen.add(identity)
        folded.append(row)
    return folded, copies


def verify(
    harness: CrashHarness,
    plan: QueuePlan,
    final: FinalRun,
) -> tuple[list[str], dict[str, Any]]:
    """Every broken promise, as a sentence with its evidence; and the figures of the run."""
    problems: list[str] = []
    tables = read_tables(harness.target)
    state = harness.server.state
    stats = state.stats()

    archives, archive_copies = fold_copies(tables["archives"], "key")
    log, log_copies = fold_copies(tables["log"], "outcome_id")
    reloaded = {
        "archives": sum(len(v) for v in archive_copies.values()),
        "archive_log": sum(len(v) for v in log_copies.values()),
        "load_ids": sorted(
            {i for v in [*archive_copies.values(), *log_copies.values()] for i in v}
        ),
    }
    if archive_copies or log_copies:
        problems.append(
            f"a re-loaded package inserted its rows a second time: {reloaded['archives']} "
            f"extra archive rows (e.g. {sorted(archive_copies)[:3]}), "
            f"{reloaded['archive_log']} extra archive_log rows (e.g. {sorted(log_copies)[:3]}), "
            f"load ids {reloaded['load_ids']}"
        )

    # -- every run after a crash could work: none ended on an error of its own ----------------
    for attempt in harness.attempts:
        if not attempt.killed and attempt.exit_code != 0:
            problems.append(
                f"attempt #{attempt.number} ({attempt.plan.describe()}) exited "
                f"{attempt.exit_code} on its own at {attempt.at:.2f}s, after the kill of #"
                f"{attempt.number - 1}: {attempt.last_line}"
            )

    # -- the sandbox: nothing archived twice -------------------------------------------------
    twice = {
        record_key(kind, oid): n
        for kind, ids in stats["deletes_succeeded_by_type"].items()
        for oid, n in ids.items()
        if n != 1
    }
    if twice:
        problems.append(f"records archived by more than one DELETE: {twice}")
    ok_deletes: Counter[str] = Counter()
    for entry in stats["requests"]:
        if entry["method"] == "DELETE" and entry["status"] == 200:
            ok_deletes[entry["path"]] += entry["count"]
    repeated = {path: n for path, n in ok_deletes.items() if n > 1}
    if repeated:
        problems.append(f"DELETE paths answered 200 more than once: {repeated}")

    # -- the audit tables: exactly the archived records, once each, in their type's table ----
    archived_now = {
        record_key(kind, c["id"])
        for kind in ARCHIVE_TABLES
        for c in state.snapshot(kind)
        if c.get("archived") is not False
    }
    row_ids = Counter(str(r["key"]) for r in archives)
    doubles = {cid: n for cid, n in row_ids.items() if n > 1}
    if doubles:
        problems.append(f"records with more than one archive row: {doubles}")
    missing = archived_now - set(row_ids)
    if missing:
        problems.append(f"archived records with no archive row (lost): {sorted(missing)}")
    extra = set(row_ids) - archived_now
    if extra:
        problems.append(f"archive rows for records that are not archived: {sorted(extra)}")
    expected_archived = plan.expected_archived()
    if archived_now != expected_archived:
        problems.append(
            f"the sandbox's archived records differ from the queued ones: "
            f"{sorted(archived_now - expected_archived)[:10]} unexpected, "
            f"{sorted(expected_archived - archived_now)[:10]} not archived"
        )

    # -- recovered flags, and where each lost answer came back from ---------------------------
    by_id = {str(r["key"]): r for r in archives}
    wrong_flag = [
        (cid, r["record_source"], r["recovered"])
        for cid, r in by_id.items()
        if r["record_source"] not in (*OWN_ANSWER, *RECOVERED)
        or (r["record_source"] in RECOVERED) != bool(r["recovered"])
    ]
    if wrong_flag:
        problems.append(f"rows whose recovered flag does not match their source: {wrong_flag[:20]}")
    # A contact archived during a killed attempt (its DELETE answered 200 then) either made it
    # into that run's journal, and its row is that run's (loaded by the run itself, source
    # `delete`, or replayed from the journal by the next run, source `journal`); or its answer
    # died with the process, and a later run found it archived with a GET (source `get`, or
    # `journal` when that later run was killed too and its own journal was replayed).
    lost: set[str] = set()  # answers a kill lost: recovered rows of contacts archived meanwhile
    for attempt in harness.attempts:
        for cid in sorted(attempt.archived):
            row = by_id.get(cid)
            if row is None:
                continue  # reported above as lost
            source, run = row["record_source"], row["run_id"]
            if cid in attempt.journaled:
                if source not in (*OWN_ANSWER, "journal") or run != attempt.run_id:
                    problems.append(
                        f"kill #{attempt.number}: {cid} was in the journal of run "
                        f"{attempt.run_id}, but its row is from run {run} with source {source}"
                    )
            elif source in OWN_ANSWER and run == attempt.run_id:
                # Not in a journal at kill time because the run had already loaded it (and,
                # when it had loaded everything, deleted its journal) before the kill landed.
                pass
            elif source in OWN_ANSWER or run == attempt.run_id:
                problems.append(
                    f"kill #{attempt.number}: run {attempt.run_id} never journaled {cid}'s "
                    f"answer, yet its row is from run {run} with source {source}"
                )
            if source in RECOVERED:
                lost.add(cid)

    # -- archive_log: one terminal row per request, none pending -------------------------------
    # A request is its id and its record (type and id).
    requests = {
        (
            r["request_id"] if r["request_id"] is not None else f"cid:{r['contact_id']}",
            r["key"],
        )
        for r in tables["queue"]
    }
    if len(requests) != plan.requests:
        problems.append(f"queue holds {len(requests)} requests, {plan.requests} were queued")
    terminal_rows = [r for r in log if r["status"] in TERMINAL]
    terminal = Counter((r["request_id"], r["key"]) for r in terminal_rows)
    pending = sorted(requests - set(terminal), key=str)
    if pending:
        problems.append(f"requests left pending: {pending[:20]} ({len(pending)} in all)")
    several = {rid: n for rid, n in terminal.items() if n > 1}
    if several:
        problems.append(f"requests with more than one terminal archive_log row: {several}")
    strangers = set(terminal) - requests
    if strangers:
        problems.append(f"terminal archive_log rows for requests not in the queue: {strangers}")
    statuses = Counter(r["status"] for r in terminal_rows)
    expected = {
        "archived+already_archived": len(plan.contacts)
        + len(plan.pre_archived)
        + plan.archived_others,
        "duplicate": len(plan.duplicated) + plan.others_duplicated,
        "not_found": len(plan.unknown) + plan.shared + plan.misfiled,
        "invalid": plan.invalid_requests,
    }
    got = {
        "archived+already_archived": statuses["archived"] + statuses["already_archived"],
        "duplicate": statuses["duplicate"],
        "not_found": statuses["not_found"],
        "invalid": statuses["invalid"],
    }
    if got != expected:
        problems.append(f"terminal statuses {got}, expected {expected}")
    failed = [r for r in log if r["status"] == "failed"]
    if failed:
        problems.append(f"{len(failed)} failed outcomes: {failed[:5]}")

    # -- the final run: exit 0, and its account matches what it wrote -------------------------
    run_id = final.run_id
    if final.exit_code != 0:
        problems.append(
            f"the final run exited {final.exit_code}: {final.stdout[-1500:]} {final.stderr[-1500:]}"
        )
    run_rows = {r["run_id"]: r for r in tables["runs"] if r["run_id"] == run_id}
    own_log = Counter(r["status"] for r in log if r["run_id"] == run_id)
    if len(run_rows) != 1:
        problems.append(f"the final run {run_id} has no archive_runs row")
    else:
        row = run_rows[str(run_id)]
        counts = row["counts"] if isinstance(row["counts"], dict) else json.loads(row["counts"])
        counts = {k: v for k, v in counts.items() if v}
        if counts != dict(own_log):
            problems.append(f"archive_runs counts {counts} but the run wrote log rows {own_log}")
        if row["exit_code"] != 0 or row["pending_at_start"] != sum(own_log.values()):
            problems.append(
                f"archive_runs row of the final run: exit {row['exit_code']}, pending at start "
                f"{row['pending_at_start']}, log rows {sum(own_log.values())}"
            )
    summary = final.summary_counts()
    if summary is not None and summary != dict(own_log):
        problems.append(f"summary {summary} but the run wrote log rows {own_log}")
    own_records = sum(1 for r in archives if r["run_id"] == run_id)
    own_with_record = sum(
        1
        for r in log
        if r["run_id"] == run_id and r["status"] in WITH_RECORD and r["record_source"]
    )
    if own_records != own_with_record:
        problems.append(
            f"the final run wrote {own_records} archive rows for {own_with_record} "
            "outcomes with a record"
        )
    # Load ids are creation times: rows of other runs in a package made after the final run
    # started are the journal entries it replayed (a crashed run's own packages are older).
    replayed = sum(
        1 for r in log if r["run_id"] != run_id and float(r["_dlt_load_id"]) >= final.started_epoch
    )
    if replayed != final.replayed():
        problems.append(
            f"the summary says {final.replayed()} outcomes were replayed from a journal, the "
            f"final run loaded {replayed} log rows of other runs"
        )

    figures = {
        "requests": len(requests),
        "archives": len(archives),
        "archives_by_type": dict(Counter(str(r["kind"]) for r in archives)),
        "by_source": dict(Counter(str(r["record_source"]) for r in archives)),
        "recovered": sum(1 for r in archives if r["recovered"]),
        "lost_answers_recovered": len(lost),
        "lost_answers_by_source": dict(Counter(by_id[cid]["record_source"] for cid in lost)),
        "statuses": dict(statuses),
        "final_run_rows": dict(own_log),
        "replayed_by_final_run": replayed,
        "deletes_sent": stats["totals"]["by_method"].get("DELETE", 0),
        "reloaded_copies": reloaded,
    }
    return problems, figures
