"""The scheduling examples: loaded for real when their extra is installed, read as text always."""

import ast
import importlib
from pathlib import Path

import pytest
import yaml

SCHEDULES = (
    Path(__file__).resolve().parents[2] / "pipelines" / "routera_archive_pipelines" / "schedules"
)


@pytest.mark.parametrize("name", ["airflow_dag.py", "dagster_defs.py", "common.py"])
def test_every_example_is_valid_python_that_runs_shards(name: str) -> None:
    tree = ast.parse((SCHEDULES / name).read_text(encoding="utf-8"))
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    assert "run_shard" in names or "ArchiveRun" in names


def test_the_github_workflow_runs_one_job_per_shard_with_secrets_from_github() -> None:
    workflow = yaml.safe_load((SCHEDULES / "github-actions.yml").read_text(encoding="utf-8"))
    job = workflow["jobs"]["archive"]
    shards = job["strategy"]["matrix"]["shard"]
    command = job["steps"][-1]["run"]
    assert shards == [0, 1, 2, 3]
    assert "--shard ${{ matrix.shard }}/4" in command
    assert all(v.startswith("${{ secrets.") for v in job["steps"][-1]["env"].values())
    assert workflow["concurrency"]["cancel-in-progress"] is False


def test_the_airflow_dag_loads() -> None:
    pytest.importorskip("airflow", reason="the airflow extra is not installed")
    module = importlib.import_module("routera_archive_pipelines.schedules.airflow_dag")
    dag = module.routera_archive
    assert dag is not None


def test_the_dagster_definitions_load() -> None:
    pytest.importorskip("dagster", reason="the dagster extra is not installed")
    module = importlib.import_module("routera_archive_pipelines.schedules.dagster_defs")
    assert module.defs.get_job_def("routera_archive_job") is not None


def test_a_failed_shard_raises_so_the_scheduler_alerts(monkeypatch: pytest.MonkeyPatch) -> None:
    from routera_archive.run.runner import RunReport
    from routera_archive_pipelines.schedules import common

    class Refused:
        def __init__(self, *args: object, **kwargs: object) -> None: ...

        def execute(self) -> RunReport:
            from datetime import UTC, datetime

            report = RunReport("r-1", "run", datetime.now(UTC), "u", "postgres", "d")
            report.exit_code, report.outcome = 3, "refused by guardrail"
            return report

    monkeypatch.setattr(common, "ArchiveRun", Refused)
    monkeypatch.setattr(common, "make_pipeline", lambda *a, **k: object())
    monkeypatch.setattr(common, "resolve_source_config", lambda: object())

    with pytest.raises(common.ArchiveRunFailed, match="exit 3"):
        common.run_shard(1, 4)
