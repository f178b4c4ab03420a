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
POINTS = [
    # (point, are the rows redacted when it is killed?)
    (f"after:{REDACT}.apply_changes", True),
    (f"after:{REDACT}.load_fresh", True),
    (f"after:{REDACT}.link_run", True),
    ("before:routera_archive.dataset.leftovers.replace_durably", True),
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


def test_a_redaction_killed_at_each_step_is_finished_by_the_next(
    dataset: tuple[Target, RunCli, SandboxServer, list[str]],
) -> None:
    target, cli, server, contacts = dataset
    hook = str(target.workdir / "crash_hook")
    for (point, redacted), contact in zip(POINTS, contacts, strict=True):
        if "leftovers" in point and target.destination != "duckdb":
            continue  # no file to rewrite on PostgreSQL
        email = str(server.state.get_contact(contact)["email"])  # type: ignore[index]
        env = {
            "PYTHONPATH": os.pathsep.join([hook, *filter(None, [os.environ.get("PYTHONPATH")])]),
            "REDACT_CRASH_POINT": point,
        }
        killed = cli("redact", "--contact-id", contact, env=env)
        assert killed.code == -9, (point, killed.output)
        ((stored,),) = target.query("SELECT email FROM contact_archives WHERE id = ?", contact)
        assert stored == (None if redacted else email), point

        finished = cli("redact")  # nothing selected: it finishes what was left
        assert finished.code == 0, (point, finished.output)
        ((stored,),) = target.query("SELECT email FROM contact_archives WHERE id = ?", contact)
        assert stored is None, point
        verified = cli("verify", "--format", "json")
        assert verified.code == 0, (point, verified.stdout)
        assert bytes_found(target.workdir / "dlt_data", email) == [], point
        if target.destination == "duckdb":
            assert DB_FILE not in bytes_found(target.workdir, email), point
        assert list((target.workdir / "dlt_data").rglob("redaction.intent.json")) == [], point
    rows = target.query("SELECT rows, resumes FROM redactions ORDER BY redacted_at")
    recorded = {
        key
        for value, _ in rows
        for key in (value if isinstance(value, dict) else json.loads(value))["contact_archives"]
    }
    expected = contacts if target.destination == "duckdb" else contacts[:-1]
    assert recorded == set(expected)
