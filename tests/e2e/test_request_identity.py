"""A request is its id *and* its contact: a request id used again for another contact is a new
request, never one already done.

Found by an outside test: week 1's CSV numbered its requests 1, 2; week 2's reused 1, 2, 3 for
other contacts (a dbt `row_number()` does the same). Only the third was archived, `status`
said nothing was pending, and the run exited 0.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest

from routera_archive_sandbox import SandboxConfig, SandboxServer
from tests.e2e.cli_support import RunCli, Target, cli_runner


@pytest.fixture
def server() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(port=0, contacts=20, seed=5)) as running:
        yield running


@pytest.fixture
def cli(tmp_path: Path, server: SandboxServer, target: Target) -> RunCli:
    return cli_runner(server, tmp_path, {"COLUMNS": "200"}, timeout=120, target=target)


def csv(rows: list[tuple[str, str]]) -> str:
    return "request_id,contact_id,reason\n" + "".join(f"{r},{c},weekly clean-up\n" for r, c in rows)


def test_request_ids_used_again_for_other_contacts_are_new_requests(
    cli: RunCli, server: SandboxServer, target: Target, tmp_path: Path
) -> None:
    a, b, c, d, e = server.state.contact_ids(include_archived=False)[:5]
    week_1, week_2 = tmp_path / "week_1.csv", tmp_path / "week_2.csv"
    week_1.write_text(csv([("1", a), ("2", b)]), encoding="utf-8")
    week_2.write_text(csv([("1", c), ("2", d), ("3", e)]), encoding="utf-8")

    assert cli("enqueue", str(week_1)).code == 0
    first = cli("run")
    assert first.code == 0, first.output
    assert cli("enqueue", str(week_2)).code == 0
    pending = cli("status")
    second = cli("run")

    assert "pending requests: 3" in pending.stdout, pending.output
    assert second.code == 0, second.output
    assert "pending at start: 3" in second.stdout
    log = target.query("SELECT request_id, contact_id, status FROM archive_log")
    pairs = [("1", a), ("2", b), ("1", c), ("2", d), ("3", e)]
    assert sorted(log) == sorted((rid, cid, "archived") for rid, cid in pairs)
    archived = {row[0] for row in target.query("SELECT id FROM contact_archives")}
    assert archived == {a, b, c, d, e}
    assert server.state.stats()["deletes_succeeded"] == dict.fromkeys(archived, 1)
    assert "pending requests: 0" in cli("status").stdout
