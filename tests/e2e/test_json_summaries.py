"""`run --format json` and `status --format json`: one JSON object on stdout for a scheduler,
the run's equal to its `archive_runs` row; on DuckDB and PostgreSQL (issue 16 item 6)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from routera_archive_sandbox import SandboxConfig, SandboxServer
from tests.e2e.cli_support import Target, cli_runner

pytestmark = pytest.mark.e2e

MISSING = "00000000-0000-4000-8000-000000000001"


def comparable(value: Any) -> Any:
    """A value as JSON carries it and the destination returns it, made the same."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        return parsed if isinstance(parsed, (dict, list)) else value
    return value


def test_run_and_status_print_one_json_object_equal_to_the_tables(target: Target) -> None:
    with SandboxServer(SandboxConfig(port=0, contacts=10, seed=8)) as server:
        cli = cli_runner(server, target.workdir, timeout=120, target=target)
        contacts = server.state.object_ids("contacts", include_archived=False)[:3]
        (target.workdir / "q.txt").write_text("\n".join([*contacts, MISSING]) + "\n")
        assert cli("enqueue", "q.txt").code == 0
        ran = cli("run", "--format", "json")
        assert ran.code == 0, ran.output
        printed = json.loads(ran.stdout)  # stdout holds the object and nothing else
        assert "chain head" in ran.stderr  # the human summary went to stderr

        columns = [
            name
            for (name,) in target.query(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = ? "
                "AND table_name = 'archive_runs' ORDER BY ordinal_position",
                target.dataset,
            )
            if not name.startswith("_dlt")
        ]
        (stored,) = target.query(
            f"SELECT {', '.join(columns)} FROM archive_runs WHERE run_id = ?", printed["run_id"]
        )
        row = dict(zip(columns, stored, strict=True))
        assert {k for k, v in row.items() if v is not None} == {
            k for k, v in printed.items() if v is not None
        }
        for name, value in row.items():
            assert comparable(value) == comparable(printed[name]), name
        assert printed["counts"]["archived"] == 3 and printed["counts"]["not_found"] == 1

        status = cli("status", "--format", "json")
        assert status.code == 0, status.output
        summary = json.loads(status.stdout)
        assert summary["pending"] == 0
        assert summary["statuses"] == {"archived": 3, "not_found": 1}
        assert summary["statuses_by_type"] == {"contacts": {"archived": 3, "not_found": 1}}
        assert summary["runs"][0]["run_id"] == printed["run_id"]
