"""`doctor`: check, without archiving anything, each thing a run needs, and say how to fix
what fails.

Each check does what a run's first steps do, read-only: resolve the settings; obtain a token
and make the run's first call (`GET /contacts?archived=false&limit=1`: Routera's API, the
credentials, `properties` names for every type that has some, as `run.guardrails` checks
them); connect to the destination and read the queue as a run would; take the run's locks
and let them go; write and remove a file in the pipeline folder; and look for what a crashed
run or a killed redaction left. Its exit code is the one a run would end with on the first
failure of that kind (`errors.ExitCode`); warnings change nothing.
"""

import asyncio
import contextlib
import os
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dlt

from routera_archive.config import RouteraSourceConfig, resolve_source_config
from routera_archive.dataset.leftovers import pending_in
from routera_archive.dataset.lock import RunLock, dataset_lock
from routera_archive.dataset.queue import PendingQueue
from routera_archive.dataset.redact import CLEANUP_MARKER
from routera_archive.errors import ExitCode, LocalStorageError, RouteraArchiveError
from routera_archive.http.client import RouteraClient
from routera_archive.objects import ObjectType
from routera_archive.run.failures import typed_error
from routera_archive.run.guardrails import probe_account
from routera_archive.run.result import new_run_id

# A doctor answers in seconds: an API that does not answer is reported, not waited for.
DOCTOR_ATTEMPTS = 2
DOCTOR_RETRY_WAIT_S = 5.0

OK = "ok"
FAILED = "failed"
WARNING = "warning"
SKIPPED = "skipped"


@dataclass
class Check:
    name: str
    state: str
    detail: str
    exit_code: int = ExitCode.OK


@dataclass
class Diagnosis:
    checks: list[Check] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        failed = [check.exit_code for check in self.checks if check.state == FAILED]
        return max(failed, default=ExitCode.OK)

    def as_dict(self) -> dict[str, Any]:
        return {"exit_code": int(self.exit_code), "checks": [asdict(c) for c in self.checks]}

    def run(self, name: str, check: Callable[[], str | tuple[str, str]]) -> bool:
        """Run one check: its detail, or (state, detail); an error fails it with its code."""
        try:
            said = check()
        except Exception as exc:
            error = typed_error(exc)
            self.checks.append(Check(name, FAILED, str(error), error.exit_code))
            return False
        state, detail = (OK, said) if isinstance(said, str) else said
        self.checks.append(Check(name, state, detail))
        return True

    def skip(self, name: str, why: str) -> None:
        self.checks.append(Check(name, SKIPPED, why))


def diagnose(
    make_pipeline: Callable[[], dlt.Pipeline],
    *,
    queue_table: str | None = None,
    transport: Any = None,
    **overrides: Any,
) -> Diagnosis:
    """Every check, in the order a run needs them; a check whose ground failed is skipped."""
    found = Diagnosis()
    settings: list[RouteraSourceConfig] = []

    def configuration() -> str:
        config = resolve_source_config(queue_table=queue_table, **overrides)
        config.credentials  # noqa: B018  (raises when there are none, or both kinds)
        settings.append(config)
        kind = "OAuth client credentials" if config.client_id else "a static token"
        return f"settings resolved; credentials: {kind}"

    found.run("configuration", configuration)
    if settings:
        config = settings[0]
        found.run("API and credentials", lambda: asyncio.run(_probe(config, transport)))
    else:
        found.skip("API and credentials", "needs a working configuration")

    pipelines: list[dlt.Pipeline] = []

    def destination() -> str:
        pipeline = make_pipeline()
        with pipeline.sql_client() as client:
            client.execute_sql("SELECT 1")
        pipelines.append(pipeline)
        return f"{pipeline.destination.destination_name} answers; dataset {pipeline.dataset_name}"

    found.run("destination", destination)
    if not pipelines:
        for name in ("queue table", "locks", "pipeline folder", "left by a crash"):
            found.skip(name, "needs the destination")
        return found
    pipeline = pipelines[0]
    table = settings[0].queue_table if settings else (queue_table or "archive_queue")
    found.run("queue table", lambda: _queue(pipeline, table))
    found.run("locks", lambda: _locks(pipeline))
    found.run("pipeline folder", lambda: _folder(Path(pipeline.working_dir)))
    found.run("left by a crash", lambda: _leftovers(Path(pipeline.working_dir)))
    return found


async def _probe(config: RouteraSourceConfig, transport: Any) -> str:
    config.max_attempts = min(config.max_attempts, DOCTOR_ATTEMPTS)
    config.max_retry_wait = min(config.max_retry_wait, DOCTOR_RETRY_WAIT_S)
    config.validate()
    properties = config.properties_by_type
    said: list[str] = []
    async with RouteraClient(config.client_config(), transport=transport) as client:
        kinds = [ObjectType.CONTACTS, *(k for k in properties if k is not ObjectType.CONTACTS)]
        for kind in kinds:
            account = await probe_account(client.list_objects, properties.get(kind, ()), kind)
            if account.active is None:
                raise RouteraArchiveError(account.unreadable_because)
            names = properties.get(kind)
            said.append(
                f"{kind.value}: {account.active} active"
                + (f", properties {', '.join(names)} accepted" if names else "")
            )
    return f"{config.base_url} is Routera's API and accepts the credentials ({'; '.join(said)})"


def _queue(pipeline: dlt.Pipeline, table: str) -> str:
    by_type = PendingQueue(pipeline, queue_table=table).count_by_type()
    total = sum(by_type.values())
    shown = ", ".join(f"{kind} {count}" for kind, count in sorted(by_type.items()))
    return f"`{table}` is readable: {total} pending" + (f" ({shown})" if shown else "")


def _locks(pipeline: dlt.Pipeline) -> str:
    probe = f"doctor-{new_run_id()}"
    folder_lock = RunLock(Path(pipeline.working_dir) / "run.lock", probe)
    folder_lock.acquire()
    try:
        shared = dataset_lock(pipeline, probe, None)
        shared.acquire()
        shared.release()
    finally:
        folder_lock.release()
    return "free: no run holds the pipeline folder or the dataset"


def _folder(folder: Path) -> str:
    probe = folder / f".doctor-{uuid.uuid4().hex}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(probe, "w", encoding="utf-8") as handle:
            handle.write("ok")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise LocalStorageError.of(exc, probe) from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    return f"{folder} is writable"


def _leftovers(folder: Path) -> tuple[str, str]:
    notes = []
    left = pending_in(folder)
    if left:
        notes.append(
            f"{len(left)} journal(s) or load package(s) of a crashed run wait: the next run "
            "loads them first (a redaction waits for it)"
        )
    if (folder / CLEANUP_MARKER).exists():
        notes.append(
            "a redaction was stopped while it removed the copies of what it redacted: run "
            "`routera-archive redact` to remove them"
        )
    return (WARNING, "; ".join(notes)) if notes else (OK, "nothing waits")
