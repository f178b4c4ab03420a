"""Import names that cannot collide: a Dagster or Airflow project's own `pipelines/`,
`connector/` and `sandbox/` packages, first on `sys.path`, change nothing for us.

The wheel used to install top-level `connector`, `pipelines` and `sandbox`; a project with its
own `pipelines/` (common in orchestrator projects) broke `from pipelines.factory import ...`
and both scheduler examples. Each folder now holds a package of its own name
(`routera_archive`, `routera_archive_pipelines`, `routera_archive_sandbox`).

The user's packages here raise when imported, so any import of them by our code shows. The
scheduler examples need Airflow and Dagster, which the test environment does not install (the
dlt Airflow provider would start in every test process): where they are missing, stand-ins with
just the names the examples use take their place, so that what is tested is how *our* names
resolve. The examples' behaviour in the real tools is not what this file tests.
"""

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from routera_archive_sandbox import SandboxServer
from tests.e2e.cli_support import cli_env, run_cli

ROOT = Path(__file__).resolve().parents[2]
USER_PACKAGES = ("pipelines", "connector", "sandbox")
STAND_INS = {
    "airflow/__init__.py": "",
    "airflow/sdk.py": """
        class _Task:
            def __init__(self, function):
                self.function = function
            def expand(self, **mapped):
                return {"task": self.function.__name__, "mapped": mapped}

        def task(function):
            return _Task(function)

        def dag(**settings):
            def wrap(function):
                def build():
                    return function()
                return build
            return wrap
    """,
    "dagster/__init__.py": """
        from typing import Generic, TypeVar
        T = TypeVar("T")
        class DynamicOut:
            def __init__(self, *args, **kwargs): ...
        class DynamicOutput(Generic[T]):
            def __init__(self, value, mapping_key): ...
        class OpExecutionContext: ...
        class DagsterRunStatus:
            QUEUED = NOT_STARTED = STARTING = STARTED = CANCELING = "status"
        class RunRequest: ...
        class SkipReason: ...
        class RunsFilter:
            def __init__(self, **settings): ...
        class ScheduleEvaluationContext: ...
        def schedule(job, cron_schedule):
            return lambda function: function
        class Definitions:
            def __init__(self, jobs, schedules):
                self.jobs = {job.__name__: job for job in jobs}
            def get_job_def(self, name):
                return self.jobs[name]
        def op(function=None, **settings):
            return function if function is not None else (lambda f: f)
        def job(function=None, **settings):
            return function if function is not None else (lambda f: f)
    """,
}


@pytest.fixture
def user_project(tmp_path: Path) -> Path:
    """A project of a user's own, with packages named like our folders; each raises if any
    code imports it, except the user's own code."""
    root = tmp_path / "user_project"
    for name in USER_PACKAGES:
        (root / name).mkdir(parents=True)
        (root / name / "__init__.py").write_text(
            f"raise ImportError('the user project\\'s own {name} package was imported')\n",
            encoding="utf-8",
        )
    return root


def stand_ins(tmp_path: Path) -> Path | None:
    """Stand-ins for the orchestrators that are not installed (None: both are)."""
    missing = [
        name
        for name in ("airflow", "dagster")
        if subprocess.run(
            [sys.executable, "-c", f"import {name}"], capture_output=True, check=False
        ).returncode
    ]
    if not missing:
        return None
    root = tmp_path / "stand_ins"
    for path, text in STAND_INS.items():
        if path.split("/")[0] in missing:
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def test_the_cli_runs_with_a_user_s_own_packages_first_on_the_path(
    sandbox_server: SandboxServer, tmp_path: Path, user_project: Path
) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = cli_env(sandbox_server, workdir, {"PYTHONPATH": str(user_project)})
    ids = sandbox_server.state.contact_ids(include_archived=False)[:2]

    version = run_cli(workdir, env, "--version", timeout=60)
    enqueued = run_cli(workdir, env, "enqueue", "-", stdin="\n".join(ids) + "\n", timeout=60)
    ran = run_cli(workdir, env, "run", timeout=120)  # its calls in the call worker process

    for result in (version, enqueued, ran):
        assert result.code == 0, result.output
        assert "user project" not in result.output
    assert sandbox_server.state.stats()["totals"]["by_method"].get("DELETE") == 2


def test_both_scheduler_examples_import_with_a_user_s_own_packages_first(
    tmp_path: Path, user_project: Path
) -> None:
    extra = stand_ins(tmp_path)
    code = textwrap.dedent(
        f"""
        import json, sys
        sys.path[:0] = {[str(user_project), *([str(extra)] if extra else [])]!r}
        from routera_archive_pipelines.schedules import airflow_dag, common, dagster_defs
        print(json.dumps({{
            "run_shard": common.run_shard.__module__,
            "dagster_job": dagster_defs.defs.get_job_def("routera_archive_job") is not None,
            "airflow_dag": airflow_dag.routera_archive is not None,
            "theirs_untouched": [name for name in {list(USER_PACKAGES)!r} if name in sys.modules],
        }}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "run_shard": "routera_archive_pipelines.schedules.common",
        "dagster_job": True,
        "airflow_dag": True,
        "theirs_untouched": [],
    }


def test_help_imports_no_dlt_duckdb_or_httpx(tmp_path: Path) -> None:
    """`--help`, `--version`, every command's `--help`: typer and the standard library only
    (bench/RESULTS.md has the times; no test times anything)."""
    commands = [["--help"], ["--version"]] + [
        [name, "--help"] for name in ("run", "enqueue", "status", "report", "sandbox", "demo")
    ]
    code = textwrap.dedent(
        """
        import json, sys
        from routera_archive_pipelines.cli import app
        try:
            app(sys.argv[1:])
        except SystemExit:
            pass
        heavy = sorted({m.split(".")[0] for m in sys.modules} & {"dlt", "duckdb", "httpx"})
        sys.stderr.write(json.dumps(heavy))
        """
    )
    for args in commands:
        done = subprocess.run(
            [sys.executable, "-c", code, *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.stdout.strip(), args
        assert json.loads(done.stderr.splitlines()[-1]) == [], args


def test_the_wheel_holds_our_three_packages_and_the_audit_sql_only(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("routera_archive-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}

    assert tops == {"routera_archive", "routera_archive_pipelines", "routera_archive_sandbox"}
    shipped = sorted(n for n in names if n.startswith("routera_archive/audit/sql/"))
    in_tree = sorted(p.name for p in (ROOT / "connector/routera_archive/audit/sql").glob("*.sql"))
    assert [Path(n).name for n in shipped] == in_tree and in_tree
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert (
        "routera-archive = routera_archive_pipelines.cli:main"
        in zipfile.ZipFile(wheel).read(entry).decode()
    )
