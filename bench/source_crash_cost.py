"""What a crash mid-extract costs a dlt user's own `pipeline.run(routera_archive())` (issue 17).

The source drains the queue with every guarantee of the CLI's run but loads once, at the end of
dlt's extract (the CLI loads every chunk while its calls go on). So a crash before that load
costs the load of the run's records, never the records: each answer was journaled first, and
the next run of the same pipeline loads the journal before anything else. This measures that
cost, from the outside, on DuckDB: a user's script (`SCRIPT`: `dlt.pipeline(destination=a
DuckDB file, dataset_name=..., pipelines_dir=...)`, then `pipeline.run(routera_archive(
force=True))`, logging at INFO) as its own process against the sandbox as its own process, N
contacts queued with SQL as an analytics engineer's own model would (`queue_by_sql`), three
cases, each on a fresh sandbox, DuckDB file, dataset and pipeline folder:

- `clean`: one run of the script, to its exit;
- `after-last-answer`: the script SIGKILLed, its whole process group, the moment the sandbox
  has archived every contact (its stats' `deletes_succeeded` holds N): the calls are done, dlt's
  load has not happened (checked: the killed run left no audit row). Then the same script again
  (the recovery run), to its exit: it loads the journal and has nothing left to call;
- `at-a-third`: SIGKILLed once N/3 contacts are archived, calls in flight; the recovery run
  loads the journal, sends again the DELETEs whose answers the kill cut off (each answered 404
  and its record read back with a GET) and archives the rest.

Wall times are process start to exit (or to death), `harness.run_process`'s; the crash's cost
is the killed run's wall plus the recovery run's, minus the clean run's. Each case checks its
own counts (`problems()`): every contact archived once on the server and once in
`contact_archives`, the exit codes, no audit row from a killed run, the recovery run's journal
loaded, and no DELETE sent again but the ones in flight at the kill (none after the last
answer; at most the concurrency at a third).

`--rps` is off (the sandbox is local, as for every connector run of the bench) and the
concurrency is the source's default.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.harness import PYTHON, ProcessRun, run_process
from bench.measures import AuditCounts, archived_once_problems, audit_counts
from bench.runners import Config
from bench.sandbox_process import Sandbox, contact_ids, fresh_sandbox

# The user's own script: the pipeline's name, folder, destination file and dataset come from
# its environment, so each case has its own.
SCRIPT = """
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
pipeline = dlt.pipeline(
    pipeline_name="users_own",
    destination=dlt.destinations.duckdb(os.environ["T_FILE"]),
    dataset_name=os.environ["T_DATASET"],
    pipelines_dir=os.environ["T_DIR"],
)
info = pipeline.run(routera_archive(force=True))
print("done", info.loads_ids, flush=True)
"""
# The dataset `measures.audit_counts` reads (the CLI's default), in this DuckDB file.
DATASET = "routera_archive"
DB_FILE = "users.duckdb"
JOURNAL_LINE = re.compile(r"was interrupted: loading (\d+) outcomes from its journal")
# How often the sandbox's stats are asked while a run goes (each asks for every contact's count).
POLL_S = 0.02
# Before the recovery run: time for the sandbox to finish what the kill left in flight.
SETTLE_S = 0.5
KILLED_EXIT = -9


def default_concurrency() -> int:
    """The source's own default (`RouteraSourceConfig.concurrency`), which the cases keep."""
    from routera_archive.config import RouteraSourceConfig

    return int(RouteraSourceConfig.concurrency)


def queue_by_sql(database: Path, ids: list[str]) -> None:
    """The queue an analytics engineer's own SQL makes: a schema, a table, rows (as in
    tests/pipeline/test_source_drains.py, straight into the DuckDB file)."""
    import duckdb

    with duckdb.connect(str(database)) as db:
        db.execute(f"CREATE SCHEMA IF NOT EXISTS {DATASET}")
        db.execute(
            f"CREATE TABLE {DATASET}.archive_queue (request_id TEXT, contact_id TEXT, "
            "requested_by TEXT, reason TEXT)"
        )
        db.executemany(
            f"INSERT INTO {DATASET}.archive_queue VALUES (?, ?, 'bench', 'benchmark')",
            [(f"r{number}", contact_id) for number, contact_id in enumerate(ids)],
        )


def audit_rows(database: Path) -> int:
    """Rows in `contact_archives` (0 while dlt has not made the table: nothing loaded yet)."""
    import duckdb

    with duckdb.connect(str(database), read_only=True) as db:
        made = db.execute(
            "SELECT COUNT(*) FROM information_schema.tables "
            "WHERE table_schema = ? AND table_name = 'contact_archives'",
            [DATASET],
        ).fetchone()
        if not made or not made[0]:
            return 0
        row = db.execute(f"SELECT COUNT(*) FROM {DATASET}.contact_archives").fetchone()
    return int(row[0]) if row else 0


def journal_outcomes(stderr: str) -> int:
    """Outcomes a run said it loaded from a crashed run's journal (its WARNING lines)."""
    return sum(int(match[1]) for match in JOURNAL_LINE.finditer(stderr))


@dataclass
class CrashCase:
    """One case: a run of the script (killed, but for `clean`), then the recovery run."""

    case: str
    contacts: int
    latency_ms: float
    concurrency: int
    # Contacts archived on the server that trigger the kill (0: not killed), and how many the
    # sandbox had archived when the poll that triggered it asked.
    kill_at: int
    archived_at_kill: int
    first: ProcessRun
    # Audit rows the first run left: for a killed run, what dlt loaded before the kill (0).
    first_audit_rows: int
    recovery: ProcessRun | None
    deletes_sent: int
    by_status: dict[str, int]
    gets: int
    deletes_succeeded: int
    contacts_deleted_more_than_once: int
    audit: AuditCounts
    journal_loaded_logged: int
    attempts_other_cores: list[float] = field(default_factory=list)
    # The clean case's wall, once the cases are put together (`SourceCrash`).
    clean_wall_s: float | None = None

    @property
    def total_wall_s(self) -> float:
        return self.first.wall_s + (self.recovery.wall_s if self.recovery else 0.0)

    @property
    def cost_s(self) -> float | None:
        """The crash's cost: both runs' wall minus the clean run's."""
        if self.recovery is None or self.clean_wall_s is None:
            return None
        return self.total_wall_s - self.clean_wall_s

    @property
    def resent(self) -> int:
        """DELETEs beyond one per contact: answers the kill cut off, sent again."""
        return self.deletes_sent - self.contacts

    @property
    def journal_rows(self) -> int:
        """Audit rows whose record came from the journal."""
        return self.audit.by_record_source.get("journal", 0)

    @property
    def other_cores(self) -> float:
        return max(self.first.other_cores, self.recovery.other_cores if self.recovery else 0.0)

    def note_attempts(self, other_cores: list[float]) -> None:
        self.attempts_other_cores = other_cores

    def problems(self) -> list[str]:
        """Why the figures would not be of what they claim: wrong counts, a wrong exit."""
        n = self.contacts
        found = []
        killed = self.recovery is not None
        if killed and self.first.exit_code != KILLED_EXIT:
            found.append(f"killed run: exit code {self.first.exit_code}, not SIGKILL")
        if not killed and self.first.exit_code != 0:
            found.append(f"exit code {self.first.exit_code}")
        if self.recovery is not None and self.recovery.exit_code != 0:
            found.append(f"recovery run: exit code {self.recovery.exit_code}")
        if killed and self.first_audit_rows:
            found.append(f"the killed run loaded {self.first_audit_rows} audit rows before dying")
        found += archived_once_problems(
            n, self.deletes_succeeded, self.contacts_deleted_more_than_once, self.audit
        )
        # One log row per request: archived, or (an answer the kill cut off, its DELETE sent
        # again, answered 404 and its record read back with a GET) already archived.
        logged = {"archived": n - self.resent, "already_archived": self.resent}
        if self.audit.log_by_status != {k: v for k, v in logged.items() if v}:
            found.append(f"archive_log {self.audit.log_by_status}, expected {logged}")
        # No DELETE sent again but those in flight at the kill: none when all were answered.
        allowed = 0 if self.case != "at-a-third" else self.concurrency
        if not 0 <= self.resent <= allowed:
            found.append(f"{self.deletes_sent} DELETEs for {n} contacts (at most {allowed} again)")
        if killed and not (self.journal_loaded_logged and self.journal_rows):
            found.append(
                f"recovery run loaded {self.journal_loaded_logged} outcomes from the journal "
                f"({self.journal_rows} audit rows from it)"
            )
        if self.case == "at-a-third" and self.journal_rows >= n:
            found.append(
                "killed at a third, yet every record came from the journal: no call was "
                "in flight at the kill"
            )
        if not killed and (self.journal_loaded_logged or self.journal_rows):
            found.append(f"a clean run loaded {self.journal_loaded_logged} journal outcomes")
        return found

    def row(self) -> list[Any]:
        recovery = self.recovery
        cost = self.cost_s
        return [
            self.case,
            self.contacts,
            f"{self.kill_at} ({self.archived_at_kill})" if recovery else "-",
            f"{self.first.wall_s:.1f}",
            f"{recovery.wall_s:.1f}" if recovery else "-",
            f"{self.total_wall_s:.1f}",
            f"{cost:+.1f}" if cost is not None else "-",
            self.first_audit_rows if recovery else "-",
            self.deletes_sent,
            self.by_status.get("404", 0),
            self.audit.archives,
            self.audit.distinct_archived_ids,
            f"{self.journal_loaded_logged} / {self.journal_rows}" if recovery else "-",
            f"{self.other_cores:.2f}",
            "ok" if not self.problems() else "; ".join(self.problems()),
        ]


HEADER = [
    "case",
    "contacts",
    "killed once archived (archived then)",
    "first run wall s",
    "recovery run wall s",
    "sum s",
    "cost s (sum - clean)",
    "audit rows after the kill",
    "DELETEs in all",
    "404",
    "contact_archives rows",
    "distinct ids",
    "journal outcomes loaded (log / rows)",
    "other cores",
    "counts",
]


@dataclass
class SourceCrash:
    """The three cases of one configuration."""

    cases: list[CrashCase]

    @property
    def other_cores(self) -> float:
        return max((case.other_cores for case in self.cases), default=0.0)

    def note_attempts(self, other_cores: list[float]) -> None:
        for case in self.cases:
            case.note_attempts(other_cores)

    def problems(self) -> list[str]:
        return [f"{case.case}: {problem}" for case in self.cases for problem in case.problems()]


def _archived(sandbox: Sandbox) -> int:
    return len(sandbox.stats().get("deletes_succeeded", {}))


def run_case(
    case: str, config: Config, root: Path, extra_env: Mapping[str, str], kill_at: int
) -> CrashCase:
    """One case on a fresh sandbox, DuckDB file, dataset and pipeline folder: the script (killed
    once the sandbox archived `kill_at` contacts, unless 0), then again to its exit."""
    workdir = root / config.label / case
    run_dir = workdir / "run"
    with fresh_sandbox(workdir, config.contacts, config.latency_ms) as sandbox:
        run_dir.mkdir(parents=True, exist_ok=True)
        script = workdir / "users_pipeline.py"
        script.write_text(SCRIPT, encoding="utf-8")
        database = run_dir / DB_FILE
        queue_by_sql(database, contact_ids(config.contacts))
        env = sandbox.env(
            workdir,
            T_FILE=str(database),
            T_DATASET=DATASET,
            T_DIR=str(run_dir / "pipelines"),
            SOURCES__ROUTERA__RPS=f"{config.rps:g}",
            **extra_env,
        )
        sandbox.reset_stats()
        seen = [0]

        def reached() -> bool:
            seen[0] = _archived(sandbox)
            return seen[0] >= kill_at

        first = run_process(
            f"{case}-first",
            [PYTHON, str(script)],
            cwd=run_dir,
            env=env,
            sandbox=sandbox,
            kill_when=reached if kill_at else None,
            kill_poll_s=POLL_S,
        )
        first_rows = audit_rows(database)
        recovery = None
        if kill_at:
            time.sleep(SETTLE_S)
            recovery = run_process(
                f"{case}-recovery", [PYTHON, str(script)], cwd=run_dir, env=env, sandbox=sandbox
            )
        stats = sandbox.stats()
    deleted: dict[str, int] = stats.get("deletes_succeeded", {})
    totals = stats.get("totals", {})
    return CrashCase(
        case=case,
        contacts=config.contacts,
        latency_ms=config.latency_ms,
        concurrency=config.concurrency,
        kill_at=kill_at,
        archived_at_kill=seen[0] if kill_at else 0,
        first=first,
        first_audit_rows=first_rows,
        recovery=recovery,
        deletes_sent=int(totals.get("by_method", {}).get("DELETE", 0)),
        by_status={str(k): int(v) for k, v in totals.get("by_status", {}).items()},
        gets=int(totals.get("by_method", {}).get("GET", 0)),
        deletes_succeeded=len(deleted),
        contacts_deleted_more_than_once=sum(1 for count in deleted.values() if count > 1),
        audit=audit_counts(database),
        journal_loaded_logged=journal_outcomes(recovery.stderr if recovery else first.stderr),
    )


def source_crash(config: Config, root: Path, extra_env: Mapping[str, str]) -> SourceCrash:
    """`clean`, `after-last-answer` and `at-a-third`, in that order (each measured once)."""
    if config.concurrency <= 0:  # the source's default, which the script then keeps
        config = replace(config, concurrency=default_concurrency())
    else:
        extra_env = {**extra_env, "SOURCES__ROUTERA__CONCURRENCY": str(config.concurrency)}
    n = config.contacts
    cases = [
        run_case("clean", config, root, extra_env, kill_at=0),
        run_case("after-last-answer", config, root, extra_env, kill_at=n),
        run_case("at-a-third", config, root, extra_env, kill_at=max(1, n // 3)),
    ]
    for case in cases:
        case.clean_wall_s = cases[0].first.wall_s
    return SourceCrash(cases)
