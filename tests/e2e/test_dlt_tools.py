"""dlt's own tools work on the connector's pipelines: `run` and `status` name the pipeline and
its folder, and `dlt pipeline NAME info`, `trace` and `load-package` read it (issue 16 item 3)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from routera_archive_sandbox import SandboxConfig, SandboxServer
from tests.e2e.cli_support import Target, cli_env, cli_runner

pytestmark = pytest.mark.e2e

DLT = str(Path(sys.executable).with_name("dlt"))
NAMED = re.compile(r"dlt pipeline (\S+) \(folder (\S+)\)")


def test_run_and_status_name_the_pipeline_that_dlt_s_cli_reads(target: Target) -> None:
    with SandboxServer(SandboxConfig(port=0, contacts=6, seed=2)) as server:
        cli = cli_runner(server, target.workdir, {"COLUMNS": "300"}, timeout=120, target=target)
        contacts = server.state.object_ids("contacts", include_archived=False)[:2]
        (target.workdir / "q.txt").write_text("\n".join(contacts) + "\n")
        assert cli("enqueue", "q.txt").code == 0
        ran = cli("run")
        assert ran.code == 0, ran.output
        named = NAMED.search(ran.stdout)
        assert named, ran.stdout
        name, folder = named.groups()
        assert Path(folder).is_dir() and Path(folder).name == name
        if target.destination == "postgres":
            assert target.dataset in name  # one readable name per destination and dataset
        status = cli("status")
        shown = NAMED.search(status.stdout)
        assert shown and shown.groups() == (name, folder), status.stdout

        env = {**cli_env(server, target.workdir, target.env), "RUNTIME__DLTHUB_TELEMETRY": "false"}

        def dlt(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [DLT, "pipeline", name, *args],
                cwd=target.workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )

        info = dlt("info")
        assert info.returncode == 0, info.stderr
        assert f"dataset_name: {target.dataset}" in info.stdout
        trace = dlt("trace")
        assert trace.returncode == 0, trace.stderr
        assert "does not have last run trace" not in trace.stdout + trace.stderr
        assert "load" in trace.stdout
        package = dlt("load-package")
        assert package.returncode == 0, package.stderr
        assert "LOADED state" in package.stdout
