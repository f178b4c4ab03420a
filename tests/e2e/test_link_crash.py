"""A run killed (SIGKILL) while it links itself into the hash chain leaves no digest that no link
covers, and the next run links its rows: the digests and the link are committed together
(`dataset.chain.insert_link`, one transaction), after the run row's load.

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
