"""A redaction killed (SIGKILL) at each step leaves the rows either as they were or redacted,
and the next `redact` finishes it: recorded, chained, `verify` intact, no copy left.

The steps (`dataset.redact`): the one transaction of changes, the `redactions` row's load,
the chain link, and the DuckDB file's rewrite (killed just before the rename). A
`sitecustomize` on the child's PYTHONPATH wraps the named function and kills the process
around it; the connector is untouched.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from routera_archive_sandbox import SandboxConfig, SandboxServer
from tests.e2e.cli_support import DB_FILE, DESTINATIONS, RunCli, Target, cli_runner, open_target
from tests.e2e.test_redact import bytes_found

pytestmark = pytest.mark.e2e

HOOK = """
import os
import signal

POINT = os.environ.get("REDACT_CRASH_POINT", "")
if POINT:
    import importlib

    when, where = POINT.split(":", 1)
    module_name, name = where.rsplit(".", 1)
    module = importlib.import_module(module_name)
    original = getattr(module, name)

    def wrapped(*args, **kwargs):
        if when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(module, name, wrapped)
"""

REDACT = "routera_archive.dataset.redact"
# (where it is killed, what finishes it, what `verify` says before it is finished)
POINTS = [
    # The transaction committed (rows redacted, the redaction recorded), no link yet: a
    # scheduled run finishes it as well as `redact` does.
    (f"after:{REDACT}.apply_changes", "run", "unfinished redaction"),
    # Inside its link's transaction: the run row and digests INSERTed, not the link (rolled
    # back: none of them stays).
    ("before:routera_archive.dataset.chain._insert_link_row", "redact", "unfinished redaction"),
    # Linked; its copies not removed yet.
    (f"after:{REDACT}.link_run", "redact", None),
    # Killed just before the DuckDB file's rewrite is renamed over the file.
    ("before:routera_archive.dataset.leftovers.replace_durably", "redact", None),
]


@pytest.fixture(params=DESTINATIONS)
def dataset(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Target, RunCli, SandboxServer, list[str]]]:
    config = SandboxConfig(port=0, contacts=20, seed=5)
    with open_target(request.param, tmp_path) as target, SandboxServer(config) as server:
        cli = cli_runner(server, tmp_path, {"COLUMNS": "250"}, timeout=120, target=target)
        contacts = server.state.object_ids("contacts", include_archived=False)[: len(POINTS)]
        (tmp_path / "queue.txt").write_text("\n".join(contacts) + "\n")
        assert cli("enqueue", "queue.txt").code == 0
        assert cli("run").code == 0
        hook = tmp_path / "crash_hook"
        hook.mkdir()
        (hook / "sitecustomize.py").write_text(HOOK, encoding="utf-8")
        yield target, cli, server, contacts


# The default suite kills a redaction at its commit and at the file's rewrite; the two points
# of its link (inside the link's transaction, after it) are CI's (`variant`): the same
# transaction and link code a run's kills in tests/e2e/test_link_crash.py reach by default.
COMMIT_AND_REWRITE = [POINTS[0], POINTS[3]]
LINK = [POINTS[1], POINTS[2]]


@pytest.mark.parametrize(
    "points",
    [
        pytest.param(COMMIT_AND_REWRITE, id="commit-and-rewrite"),
        pytest.param(LINK, id="link", marks=pytest.mark.variant),
    ],
)
def test_a_redaction_killed_at_each_step_is_finished_by_the_next(
    dataset: tuple[Target, RunCli, SandboxServer, list[str]],
    points: list[tuple[str, str, str | None]],
) -> None:
    target, cli, server, contacts = dataset
    hook = str(target.workdir / "crash_hook")
    contacts = contacts[: len(points)]
    for (point, finisher, before), contact in zip(points, contacts, strict=True):
        if "leftovers" in point and target.destination != "duckdb":
            continue  # no file to rewrite on PostgreSQL
        email = str(server.state.get_contact(contact)["email"])  # type: ignore[index]
        env = {
            "PYTHONPATH": os.pathsep.join([hook, *filter(None, [os.environ.get("PYTHONPATH")])]),
            "REDACT_CRASH_POINT": point,
        }
        killed = cli("redact", "--contact-id", contact, env=env)
        assert killed.code == -9, (point, killed.output)
        # Either as they were or redacted: here always redacted (the transaction committed).
        ((stored,),) = target.query("SELECT email FROM contact_archives WHERE id = ?", contact)
        assert stored is None, point
        checked = cli("verify", "--format", "json")
        checks = {f["check"] for f in json.loads(checked.stdout)["findings"]}
        assert checks == ({before} if before else set()), (point, checked.stdout)

        finished = cli(finisher)
        assert finished.code == 0, (point, finished.output)
        if finisher == "run":
            assert cli("redact").code == 0  # removes the copies the run left for it
        verified = cli("verify", "--format", "json")
        assert verified.code == 0, (point, verified.stdout)
        assert bytes_found(target.workdir / "dlt_data", email) == [], point
        if target.destination == "duckdb":
            assert DB_FILE not in bytes_found(target.workdir, email), point
        assert list((target.workdir / "dlt_data").rglob("redaction.cleanup-pending")) == [], point
    recorded = target.query("SELECT redaction_id, rows FROM redactions")
    keys = [
        key
        for _, value in recorded
        for key in (value if isinstance(value, dict) else json.loads(value))["contact_archives"]
    ]
    skipped = [c for (p, _, _), c in zip(points, contacts, strict=True) if "leftovers" in p]
    expected = contacts if target.destination == "duckdb" else sorted(set(contacts) - set(skipped))
    assert sorted(keys) == sorted(expected)  # each recorded once, killed or not
