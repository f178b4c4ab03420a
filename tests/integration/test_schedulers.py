"""The scheduler examples run for real: the Dagster job with `dagster job execute` (its default
multiprocess executor: one process per shard op) and the Airflow DAG with `airflow dags test`,
each from its own virtualenv (`.venv-dagster`, `.venv-airflow`: scripts/setup.sh with
SETUP_SCHEDULERS=1, which `scripts/test.sh --run-integrations` sets), against the sandbox on
loopback and a PostgreSQL dataset, with the destination, dataset and shard count given the way a
deployment gives them (`ROUTERA_ARCHIVE_*`), never by editing the example.

- One scheduled run drains the queue: every request handled once, by one run per shard, and
  exactly one DELETE per record; a second scheduled run sends no DELETE.
- Two runs at once archive nothing twice: the Dagster schedule skips its tick while a run of the
  job is in progress (and asks for one again once it has ended), and a second run started beside
  the first anyway (Dagster's job executed again; Airflow's `dags test`, which no scheduler's
  `max_active_runs` stands in front of, from a second Airflow home) is refused the shard the
  first run is in by that shard's lock (the sandbox holds that shard's answers until then), and
  fails; the shards it could take it archives, and nothing is archived twice.
- The dlt source's examples drain the queue once, each record by one DELETE, and a second run
  sends none: `dagster_dlt_assets.py` with `dagster asset materialize`, and
  `airflow_dlt_tasks.py` (dlt's Airflow helper, `PipelineTasksGroup`) with `airflow dags test`,
  whose every task runs in a fresh pipeline folder of the helper's making. A materialization
  killed mid-extract leaves its answers to the next one through its journal, which dagster-dlt
  would otherwise drop with the pipeline's folder.

Without the virtualenvs these tests skip, saying so.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest

from routera_archive.dataset.queue import Shard
from routera_archive_sandbox import FaultConfig, SandboxConfig, SandboxServer
from tests.conftest import POSTGRES_SKIP_REASON, POSTGRES_URL, postgres_available
from tests.dbt_package import ROOT
from tests.e2e.cli_support import cli_env, deletes_sent, drop_postgres_dataset, run_cli

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.postgres,
    pytest.mark.skipif(not postgres_available(), reason=POSTGRES_SKIP_REASON),
]

SCHEDULES = ROOT / "pipelines" / "routera_archive_pipelines" / "schedules"
DAGSTER = ROOT / ".venv-dagster" / "bin"
AIRFLOW = ROOT / ".venv-airflow" / "bin"
SHARDS = 3
QUEUED = 90  # of 600 contacts: each shard's share stays far under max_share
RUN_TIMEOUT_S = 300
# The lock's refusal: of the pipeline folder (the same machine) or of the dataset (another one).
BUSY_MARK = "another run holds"


def _needs(venv: Path, tool: str) -> None:
    if not (venv / tool).exists():
        pytest.skip(
            f"{venv / tool} is missing: `SETUP_SCHEDULERS=1 scripts/setup.sh` installs it "
            "(scripts/test.sh --run-integrations does)"
        )


@dataclass
class Setup:
    """A queued dataset, the sandbox that holds its records, and where the tools keep state."""

    server: SandboxServer
    workdir: Path
    dataset: str
    ids: list[str]

    def env(self, **extra: str) -> dict[str, str]:
        """What a deployment gives its workers: the API's and destination's credentials, and
        which dataset and how many shards (`ScheduleSettings`)."""
        settings = {
            "DESTINATION__POSTGRES__CREDENTIALS": POSTGRES_URL,
            "SOURCES__ROUTERA__CONCURRENCY": "2",
            "SOURCES__ROUTERA__CHUNK_SIZE": "10",
            "ROUTERA_ARCHIVE_DESTINATION": "postgres",
            "ROUTERA_ARCHIVE_DATASET": self.dataset,
            "ROUTERA_ARCHIVE_SHARDS": str(SHARDS),
            "PYTHONPATH": "",
        }
        return cli_env(self.server, self.workdir, settings, extra)

    def sql(self, query: str) -> list[tuple[object, ...]]:
        with (
            psycopg2.connect(POSTGRES_URL.replace(":trust", "")) as connection,
            connection.cursor() as cursor,
        ):
            cursor.execute(query.replace("{dataset}", f'"{self.dataset}"'))
            return cursor.fetchall()


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    config = SandboxConfig(port=0, contacts=600, seed=16, faults=FaultConfig(latency_ms=5.0))
    dataset = f"ra_sched_{uuid.uuid4().hex[:8]}"
    with SandboxServer(config) as server:
        try:
            ids = server.state.contact_ids(include_archived=False)[:QUEUED]
            (tmp_path / "ids.txt").write_text("\n".join([*ids, *ids[:5]]) + "\n")
            made = Setup(server, tmp_path, dataset, ids)
            args = ("enqueue", "ids.txt", "--destination", "postgres", "--dataset", dataset)
            queued = run_cli(tmp_path, made.env(), *args, timeout=120)
            assert queued.code == 0, queued.output
            yield made
        finally:
            drop_postgres_dataset(dataset)


# ---------------------------------------------------------------- how each tool is run
def dagster_home(setup: Setup, name: str = "dagster_home") -> dict[str, str]:
    home = setup.workdir / name
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return {"DAGSTER_HOME": str(home)}


def dagster_job(setup: Setup, home: Mapping[str, str]) -> RunningTool:
    command = [
        str(DAGSTER / "dagster"),
        "job",
        "execute",
        "-m",
        "routera_archive_pipelines.schedules.dagster_defs",
        "-j",
        "routera_archive_job",
    ]
    return _start(setup, command, setup.env(**home))


def dagster_dlt_materialize() -> list[str]:
    """`dagster asset materialize` of the dagster-dlt example's one asset."""
    return [
        str(DAGSTER / "dagster"),
        "asset",
        "materialize",
        "-m",
        "routera_archive_pipelines.schedules.dagster_dlt_assets",
        "--select",
        "*",
    ]


def dagster_schedule_says(setup: Setup, home: Mapping[str, str]) -> str:
    """What the `hourly` schedule answers now, evaluated on the instance the runs are recorded
    in (DAGSTER_HOME): `RunRequest` or `SkipReason: <why>`."""
    program = (
        "from dagster import DagsterInstance, SkipReason, build_schedule_context\n"
        "from routera_archive_pipelines.schedules.dagster_defs import hourly\n"
        "with DagsterInstance.get() as instance:\n"
        "    answer = hourly(build_schedule_context(instance=instance))\n"
        "print(type(answer).__name__ + (': ' + answer.skip_message"
        " if isinstance(answer, SkipReason) else ''))\n"
    )
    done = subprocess.run(
        [str(DAGSTER / "python"), "-c", program],
        cwd=setup.workdir,
        env=setup.env(**home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip().splitlines()[-1]


def airflow_home(
    setup: Setup, name: str = "airflow_home", example: str = "airflow_dag.py"
) -> dict[str, str]:
    """An Airflow home with its metadata database made and the example copied into its DAGs
    folder, as the example's docstring tells a user to."""
    home = setup.workdir / name
    dags = home / "dags"
    dags.mkdir(parents=True, exist_ok=True)
    shutil.copy(SCHEDULES / example, dags / f"routera_archive_{example}")
    settings = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    migrate = subprocess.run(
        [str(AIRFLOW / "airflow"), "db", "migrate"],
        cwd=setup.workdir,
        env=setup.env(**settings),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    return settings


def airflow_dag(
    setup: Setup, home: Mapping[str, str], dag_id: str = "routera_archive"
) -> RunningTool:
    command = [str(AIRFLOW / "airflow"), "dags", "test", dag_id]
    return _start(setup, command, setup.env(**home))


def _start(setup: Setup, command: list[str], env: Mapping[str, str]) -> RunningTool:
    process = subprocess.Popen(
        command,
        cwd=setup.workdir,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: `kill` reaches its call worker too
    )
    return RunningTool(process)


class RunningTool:
    """A scheduler's command under way, its output read as it comes, so that a test can act
    the moment a line shows up."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "".join(self.lines)

    def wait_for(self, mark: str) -> None:
        """Until a line holds `mark`; fails if the command ends first or takes too long."""
        deadline = time.monotonic() + RUN_TIMEOUT_S
        with self._changed:
            while not any(mark in line for line in self.lines):
                ended = not self._reader.is_alive()
                assert not ended, f"ended without {mark!r}: {''.join(self.lines)[-5000:]}"
                assert time.monotonic() < deadline, f"no {mark!r} in {RUN_TIMEOUT_S} s"
                self._changed.wait(timeout=0.5)

    def kill(self) -> None:
        """SIGKILL the command and every process it started, as a lost machine would."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.finish()

    def finish(self) -> tuple[int, str]:
        try:
            self.process.wait(timeout=RUN_TIMEOUT_S)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=30)
        return self.process.returncode, self.output


def wait_while_it_runs(tool: RunningTool, done: Callable[[], object]) -> None:
    """Until `done()` is true; fails if `tool`'s run ends first or never gets there."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not done():
        if tool.process.poll() is not None:
            raise AssertionError(f"the run ended before its calls: {tool.finish()[1][-3000:]}")
        assert time.monotonic() < deadline, "the run never started archiving"
        time.sleep(0.05)


def wait_for_deletes(setup: Setup, tool: RunningTool, count: int) -> None:
    wait_while_it_runs(tool, lambda: deletes_sent(setup.server) >= count)


# ---------------------------------------------------------------- what must hold
def assert_drained_once(setup: Setup) -> None:
    """Every queued record archived by exactly one DELETE; every request (the duplicates too)
    one terminal row in the log, by one run per shard."""
    stats = setup.server.state.stats()
    assert stats["totals"]["by_method"].get("DELETE", 0) == len(setup.ids)
    assert sorted(stats["deletes_succeeded"]) == sorted(setup.ids)
    assert set(stats["deletes_succeeded"].values()) == {1}
    per_request = setup.sql(
        "SELECT request_id, COUNT(*) FROM {dataset}.archive_log GROUP BY request_id"
    )
    assert len(per_request) == len(setup.ids) + 5
    assert {count for _, count in per_request} == {1}
    # Each shard was run (a shard a second run took first leaves the first run's worker of
    # that shard nothing to do: a run row of its own, no request).
    shards = setup.sql("SELECT DISTINCT shard FROM {dataset}.archive_runs WHERE mode = 'run'")
    assert sorted(shards) == [(f"{index}/{SHARDS}",) for index in range(SHARDS)]
    runs_of_requests = setup.sql("SELECT COUNT(DISTINCT l.run_id) FROM {dataset}.archive_log AS l")
    assert runs_of_requests[0][0] >= SHARDS
    audit = setup.sql("SELECT COUNT(*), COUNT(DISTINCT id) FROM {dataset}.contact_archives")
    assert audit == [(len(setup.ids), len(setup.ids))]


SCHEDULERS = ["dagster", "airflow"]


def start_scheduled_run(scheduler: str, setup: Setup, home: Mapping[str, str]) -> RunningTool:
    return (dagster_job if scheduler == "dagster" else airflow_dag)(setup, home)


def home_of(scheduler: str, setup: Setup, name: str | None = None) -> dict[str, str]:
    if scheduler == "dagster":
        _needs(DAGSTER, "dagster")
        return dagster_home(setup, name or "dagster_home")
    _needs(AIRFLOW, "airflow")
    return airflow_home(setup, name or "airflow_home")


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_a_scheduled_run_drains_the_queue_by_shard_each_request_once(
    scheduler: str, setup: Setup
) -> None:
    home = home_of(scheduler, setup)

    code, output = start_scheduled_run(scheduler, setup, home).finish()
    assert code == 0, output[-5000:]
    assert_drained_once(setup)
    by_run = setup.sql("SELECT COUNT(DISTINCT run_id) FROM {dataset}.archive_log")
    assert by_run == [(SHARDS,)]  # one run per shard handled the requests

    code, output = start_scheduled_run(scheduler, setup, home).finish()
    assert code == 0, output[-5000:]
    assert_drained_once(setup)  # the same figures: no second DELETE, no second row


def hold_a_shard_of(setup: Setup, tool: RunningTool) -> Shard:
    """Once `tool`'s run is sending DELETEs, keep the shard it is in unanswered (its lock held)
    and let the others through: the overlap a second run must meet, made certain rather than
    timed (`airflow dags test` runs the shards one after the other, in no set order)."""
    gate = setup.server.gate
    gate.hold(lambda _: True)
    wait_while_it_runs(tool, gate.waiting)
    waiting = gate.waiting()[0]  # held: still waiting
    shard = next(Shard(i, SHARDS) for i in range(SHARDS) if Shard(i, SHARDS).owns(waiting))
    gate.hold(shard.owns)
    return shard


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_a_second_run_beside_the_first_archives_nothing_twice(scheduler: str, setup: Setup) -> None:
    home = home_of(scheduler, setup)
    # Held answers wait at the gate, not in the client: no timeout may end them meanwhile.
    home.update(SOURCES__ROUTERA__READ_TIMEOUT="900", SOURCES__ROUTERA__CALL_DEADLINE="900")
    # Dagster: launched again on the same instance; Airflow: from a second deployment (its own
    # home), since `dags test` runs beside no scheduler and SQLite takes one writer.
    second_home = home
    if scheduler == "airflow":  # another machine: its own pipeline folders too
        second_home = {**home, **home_of(scheduler, setup, "airflow_home_2")}
        second_home["DLT_DATA_DIR"] = str(setup.workdir / "second_machine")
    first = start_scheduled_run(scheduler, setup, home)
    try:
        held = hold_a_shard_of(setup, first)
        if scheduler == "dagster":
            said = dagster_schedule_says(setup, home)
            assert said.startswith("SkipReason: run ") and "still in progress" in said, said
        # Started anyway (a person's launch, a second deployment): its other shards go on, and
        # the one the first run is in is refused by that shard's lock.
        second = start_scheduled_run(scheduler, setup, second_home)
        try:
            second.wait_for(BUSY_MARK)
        finally:
            setup.server.gate.release()
        code, output = second.finish()
        assert code != 0, output[-5000:]
        # The shard refused is the held one (the worker's own account: `common.run_shard`).
        refusals = [line for line in output.splitlines() if BUSY_MARK in line]
        assert any(f"shard {held}, run " in line for line in refusals), refusals or output[-5000:]
    finally:
        setup.server.gate.release()
        # The first run may fail too: a shard the second run was in when it got there.
        first.finish()

    # Whichever run did each request, none was done twice; the next run finishes the rest.
    code, output = start_scheduled_run(scheduler, setup, home).finish()
    assert code == 0, output[-5000:]
    assert_drained_once(setup)
    if scheduler == "dagster":
        assert dagster_schedule_says(setup, home) == "RunRequest"


def test_the_dagster_dlt_asset_drains_the_queue_once(setup: Setup) -> None:
    """`dagster asset materialize` of the dagster-dlt example: the dlt source's run, loaded by
    dagster-dlt's resource; a second materialization sends no DELETE."""
    _needs(DAGSTER, "dagster")
    home = dagster_home(setup)
    command = dagster_dlt_materialize()
    env = {**home, "ROUTERA_ARCHIVE_SHARDS": "1"}

    code, output = _start(setup, command, setup.env(**env)).finish()
    assert code == 0, output[-5000:]
    stats = setup.server.state.stats()
    assert stats["totals"]["by_method"].get("DELETE", 0) == len(setup.ids)
    assert set(stats["deletes_succeeded"].values()) == {1}
    per_request = setup.sql(
        "SELECT request_id, COUNT(*) FROM {dataset}.archive_log GROUP BY request_id"
    )
    assert len(per_request) == len(setup.ids) + 5
    assert {count for _, count in per_request} == {1}
    audit = setup.sql("SELECT COUNT(*), COUNT(DISTINCT id) FROM {dataset}.contact_archives")
    assert audit == [(len(setup.ids), len(setup.ids))]

    code, output = _start(setup, command, setup.env(**env)).finish()
    assert code == 0, output[-5000:]
    assert setup.server.state.stats()["totals"]["by_method"].get("DELETE", 0) == len(setup.ids)
    runs = setup.sql("SELECT mode, exit_code FROM {dataset}.archive_runs ORDER BY started_at")
    assert runs == [("run", 0), ("run", 0)]


def test_a_killed_dagster_dlt_materialization_s_answers_come_back_from_its_journal(
    setup: Setup,
) -> None:
    """Killed mid-extract (a third of the queue answered, calls in flight), the next
    materialization loads the killed one's answers from its journal: no record is archived
    twice, and no DELETE is sent again for what the killed one archived (dagster-dlt drops a
    pipeline's local folder before each run unless it restores nothing from the destination;
    the example says so)."""
    _needs(DAGSTER, "dagster")
    home = dagster_home(setup)
    command = dagster_dlt_materialize()
    env = setup.env(**home, ROUTERA_ARCHIVE_SHARDS="1")
    setup.server.config.faults.latency_ms = 30.0  # two at a time: ~60 answers a second
    killed = _start(setup, command, env)
    wait_for_deletes(setup, killed, QUEUED // 3)
    killed.kill()
    archived_by_kill = len(setup.server.state.stats()["deletes_succeeded"])
    sent_by_kill = deletes_sent(setup.server)
    setup.server.config.faults.latency_ms = 5.0

    code, output = _start(setup, command, env).finish()
    assert code == 0, output[-5000:]
    stats = setup.server.state.stats()
    assert sorted(stats["deletes_succeeded"]) == sorted(setup.ids)
    assert set(stats["deletes_succeeded"].values()) == {1}
    # Only the requests in flight at the kill are sent again (their answers were cut off).
    assert deletes_sent(setup.server) <= len(setup.ids) + 2 * 2, (archived_by_kill, sent_by_kill)
    from_journal = setup.sql(
        "SELECT COUNT(*) FROM {dataset}.archive_log WHERE record_source = 'journal'"
    )
    assert from_journal[0][0] > 0, output[-5000:]
    audit = setup.sql("SELECT COUNT(*), COUNT(DISTINCT id) FROM {dataset}.contact_archives")
    assert audit == [(len(setup.ids), len(setup.ids))]


def test_the_dagster_dlt_example_loads_with_a_package_pending_and_no_destination_credentials(
    setup: Setup,
) -> None:
    """Dagster loads the file where a run's credentials may not be: the source, made before
    its pipeline, does not load a pending package there (the asset does, when it runs)."""
    _needs(DAGSTER, "dagster")
    env = setup.env(ROUTERA_ARCHIVE_SHARDS="1")
    extract = (
        "import dlt\n"
        f"p = dlt.pipeline(pipeline_name='routera_archive_dagster_{setup.dataset}', "
        f"destination='postgres', dataset_name='{setup.dataset}')\n"
        "p.extract([{'a': 1}], table_name='pending_here')\n"
        "assert p.has_pending_data\n"
    )
    made = subprocess.run(
        [str(DAGSTER / "python"), "-c", extract], cwd=setup.workdir, env=env, capture_output=True
    )
    assert made.returncode == 0, made.stderr.decode()[-3000:]
    del env["DESTINATION__POSTGRES__CREDENTIALS"]
    module = "routera_archive_pipelines.schedules.dagster_dlt_assets"
    loaded = subprocess.run(
        [str(DAGSTER / "python"), "-c", f"import {module}"],
        cwd=setup.workdir,
        env=env,
        capture_output=True,
    )
    assert loaded.returncode == 0, loaded.stderr.decode()[-3000:]


def test_dlt_s_airflow_tasks_group_drains_the_queue_once(setup: Setup) -> None:
    """`airflow dags test` of the example with dlt's `PipelineTasksGroup`: the dlt source's run
    as the helper's one task; a second `dags test` sends no DELETE. Each task runs in a fresh
    pipeline folder of the helper's making (the example's docstring says what that costs)."""
    _needs(AIRFLOW, "airflow")
    home = airflow_home(setup, example="airflow_dlt_tasks.py")
    # The helper's folders go to the temporary directory: this test's, not the machine's.
    temporary = setup.workdir / "tmp"
    temporary.mkdir()
    home["TMPDIR"] = str(temporary)

    code, output = airflow_dag(setup, home, "routera_archive_dlt").finish()
    assert code == 0, output[-5000:]
    assert_dag_run_succeeded(output)
    stats = setup.server.state.stats()
    assert stats["totals"]["by_method"].get("DELETE", 0) == len(setup.ids)
    assert sorted(stats["deletes_succeeded"]) == sorted(setup.ids)
    assert set(stats["deletes_succeeded"].values()) == {1}
    per_request = setup.sql(
        "SELECT request_id, COUNT(*) FROM {dataset}.archive_log GROUP BY request_id"
    )
    assert len(per_request) == len(setup.ids) + 5
    assert {count for _, count in per_request} == {1}
    audit = setup.sql("SELECT COUNT(*), COUNT(DISTINCT id) FROM {dataset}.contact_archives")
    assert audit == [(len(setup.ids), len(setup.ids))]

    code, output = airflow_dag(setup, home, "routera_archive_dlt").finish()
    assert code == 0, output[-5000:]
    assert_dag_run_succeeded(output)
    assert setup.server.state.stats()["totals"]["by_method"].get("DELETE", 0) == len(setup.ids)
    runs = setup.sql("SELECT mode, exit_code FROM {dataset}.archive_runs ORDER BY started_at")
    assert runs == [("run", 0), ("run", 0)]
    # Each task ran in a pipeline folder of its own: the next task never sees the last one's.
    ran = {path.parent for path in temporary.glob("dlt_*/pipelines/*/trace.pickle")}
    assert len(ran) == 2, sorted(temporary.iterdir())


def assert_dag_run_succeeded(output: str) -> None:
    """The DAG run ended `state=success` after running the helper's one task (a failed task
    fails the run, and `dags test` then exits 1)."""
    finished = [line for line in output.splitlines() if "DagRun Finished:" in line]
    assert len(finished) == 1 and "state=success," in finished[0], output[-5000:]
    assert "task_id=routera_archive_dlt_tasks.routera_archive_run" in output, output[-5000:]
