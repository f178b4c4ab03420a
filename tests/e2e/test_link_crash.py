"""A run killed (SIGKILL) while it links itself into the hash chain leaves no digest that no link
covers, and the next run links its rows: the digests and the link are committed together
(`dataset.chain.insert_link`, one transaction), after the run row's load (the first link), or
with the run row in the same transaction (every later one: `chain.commit_with_run_row`).

Killed before that transaction, and inside it (its digests INSERTed, the link not yet): either
way nothing of the link is in `row_digests` or `archive_chain`, and the next run adopts the
killed run's rows. A `sitecustomize` on the child's PYTHONPATH kills the process around the
named function (`test_redact_crash.HOOK`); the connector is untouched.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from routera_archive_sandbox import SandboxConfig, SandboxServer
from tests.e2e.cli_support import DESTINATIONS, Target, cli_runner
from tests.e2e.test_redact_crash import HOOK

pytestmark = pytest.mark.e2e

CHAIN = "routera_archive.dataset.chain"


@pytest.mark.parametrize("target", DESTINATIONS, indirect=True)
@pytest.mark.parametrize(
    "point",
    [
        # The default suite keeps the kill inside the commit: what the transaction is for.
        pytest.param(
            f"before:{CHAIN}.insert_link", id="before-the-commit", marks=pytest.mark.variant
        ),
        pytest.param(f"before:{CHAIN}._insert_link_row", id="inside-the-commit"),
    ],
)
def test_a_run_killed_while_linking_leaves_no_digest_and_the_next_run_links_its_rows(
    target: Target, point: str, tmp_path: Path
) -> None:
    with SandboxServer(SandboxConfig(port=0, contacts=20, seed=5)) as server:
        cli = cli_runner(server, target.workdir, timeout=120, target=target)
        contacts = server.state.object_ids("contacts", include_archived=False)[:8]
        (target.workdir / "queue.txt").write_text("\n".join(contacts) + "\n")
        assert cli("enqueue", "queue.txt").code == 0
        hook = tmp_path / "crash_hook"
        hook.mkdir()
        (hook / "sitecustomize.py").write_text(HOOK, encoding="utf-8")
        path = os.pathsep.join([str(hook), *filter(None, [os.environ.get("PYTHONPATH")])])

        killed = cli("run", env={"PYTHONPATH": path, "REDACT_CRASH_POINT": point})
        assert killed.code == -9, killed.output
        ((killed_run,),) = target.query("SELECT DISTINCT run_id FROM contact_archives")
        assert target.query("SELECT run_id FROM archive_runs") == [(killed_run,)]
        # Neither digests nor a link of the killed run (inside the commit: rolled back).
        assert target.query("SELECT COUNT(*) FROM row_digests") == [(0,)]
        assert target.query("SELECT COUNT(*) FROM archive_chain") == [(0,)]

        finished = cli("run")
        assert finished.code == 0, finished.output
        ((adopted,),) = target.query("SELECT adopted_run_ids FROM archive_chain")
        assert killed_run in json.loads(adopted), adopted
        verified = cli("verify", "--format", "json")
        assert verified.code == 0, verified.stdout
        result = json.loads(verified.stdout)
        assert result["intact"] is True and not result.get("notes"), result


@pytest.mark.parametrize("target", DESTINATIONS, indirect=True)
def test_a_later_run_killed_inside_its_commit_leaves_no_run_row_digest_or_link(
    target: Target, tmp_path: Path
) -> None:
    """After the dataset's first link a run INSERTs its run row in the transaction of its digests
    and link (`chain.commit_with_run_row`): killed inside it, none of the three stays, and the
    next run adopts the killed run's rows. Every run row and link names a load that
    `_dlt_loads` holds as finished, as if dlt had loaded it."""
    with SandboxServer(SandboxConfig(port=0, contacts=20, seed=5)) as server:
        cli = cli_runner(server, target.workdir, timeout=120, target=target)
        contacts = server.state.object_ids("contacts", include_archived=False)[:12]
        (target.workdir / "first.txt").write_text("\n".join(contacts[:6]) + "\n")
        (target.workdir / "second.txt").write_text("\n".join(contacts[6:]) + "\n")
        assert cli("enqueue", "first.txt").code == 0
        assert cli("run").code == 0
        ((first_run,),) = target.query("SELECT run_id FROM archive_runs")
        assert cli("enqueue", "second.txt").code == 0
        hook = tmp_path / "crash_hook"
        hook.mkdir()
        (hook / "sitecustomize.py").write_text(HOOK, encoding="utf-8")
        path = os.pathsep.join([str(hook), *filter(None, [os.environ.get("PYTHONPATH")])])

        point = f"before:{CHAIN}._insert_link_row"
        killed = cli("run", env={"PYTHONPATH": path, "REDACT_CRASH_POINT": point})
        assert killed.code == -9, killed.output
        owners = target.query("SELECT DISTINCT run_id FROM contact_archives")
        (killed_run,) = {run for (run,) in owners} - {first_run}
        assert target.query("SELECT run_id FROM archive_runs") == [(first_run,)]
        chained_by = target.query("SELECT DISTINCT chained_by FROM row_digests")
        assert chained_by == [(first_run,)]
        assert target.query("SELECT run_id FROM archive_chain") == [(first_run,)]

        finished = cli("run")
        assert finished.code == 0, finished.output
        links = target.query("SELECT run_id, adopted_run_ids FROM archive_chain ORDER BY chain_seq")
        assert len(links) == 2 and killed_run in json.loads(str(links[1][1])), links
        for table in ("archive_runs", "archive_chain", "row_digests"):
            unrecorded = target.query(
                f"SELECT COUNT(*) FROM {table} WHERE _dlt_load_id NOT IN "
                "(SELECT load_id FROM _dlt_loads WHERE status = 0)"
            )
            assert unrecorded == [(0,)], table
        verified = cli("verify", "--format", "json")
        assert verified.code == 0, verified.stdout
        result = json.loads(verified.stdout)
        assert result["intact"] is True and not result.get("notes"), result
