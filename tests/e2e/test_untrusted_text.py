"""Text from the queue, the API or the destination is printed as text, never read as rich
markup: the real CLI against a scripted API, on a terminal (rich's console, its log handler and
progress bar) and off one (a scheduler's log).

Found by an outside test: an id `[/]` made `run --dry-run` exit 1; a custom field key `run[/]id`
turned a successful run into exit 1 while `archive_runs` said 0 (the summary raised rich's
MarkupError after the row was written); a 401 whose message held `[/]` exited 1 instead of 2.
"""

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from routera_archive.names import DATASET_NAME
from routera_archive_sandbox import SandboxConfig, SandboxServer
from tests.e2e.cli_support import Result, RunCli, Target, cli_runner
from tests.misbehaving_api import MisbehavingApi

pytestmark = pytest.mark.e2e

TOKEN = "markup-test-token"
ARCHIVED = "2026-06-01T10:00:00Z"
# Each would be read by rich as a closing tag with nothing to close, a style, or a hyperlink.
IDS = ("[/]", "[bold]x[/bold]", "[link=file:///etc/passwd]x", "[red]unclosed")
# Custom field keys as the API sends them, and the value each holds.
FIELDS = {"run[/]id": "v-run", "[bold]k[/bold]": "v-bold", "[link=file:///etc/passwd]f": "v-link"}
# rich on a terminal: colours, cursor moves, hyperlinks; removed before reading the text.
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\]8;[^\x1b]*\x1b\\")
# `terminal`: rich's console, its log handler and the progress bar, as a person's shell gets
# them; `plain`: what a scheduler's log gets (no terminal, plain log lines).
SCREENS = {
    "terminal": {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "0", "COLUMNS": "250"},
    "plain": {"TTY_COMPATIBLE": "0", "COLUMNS": "250"},
}


def shown(result: Result) -> str:
    """Both streams as a person reads them: without rich's escape sequences."""
    return ANSI.sub("", result.output)


def answer(contact_id: str) -> dict[str, str]:
    return {"id": contact_id, "archived": ARCHIVED, "archived_by": "api-client", **FIELDS}


@dataclass
class Workspace:
    cli: RunCli
    target: Target
    api: MisbehavingApi

    def queue(self, *ids: str) -> None:
        """A queue of the user's own, written with SQL (faster than `enqueue`)."""
        self.target.execute("CREATE TABLE IF NOT EXISTS archive_queue (contact_id VARCHAR)")
        self.target.executemany("INSERT INTO archive_queue VALUES (?)", [(i,) for i in ids])


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxServer]:
    """`cli_env` builds a CLI's environment from a sandbox; every call goes to the API below."""
    with SandboxServer(SandboxConfig(port=0, contacts=1)) as running:
        yield running


def workspace_for(
    path: Path, sandbox: SandboxServer, api: MisbehavingApi, screen: str
) -> Workspace:
    settings = {
        "SOURCES__ROUTERA__BASE_URL": api.url,
        "SOURCES__ROUTERA__ACCESS_TOKEN": TOKEN,
        "SOURCES__ROUTERA__CLIENT_ID": None,
        "SOURCES__ROUTERA__CLIENT_SECRET": None,
        "SOURCES__ROUTERA__MAX_ATTEMPTS": "1",
    }
    target = Target("duckdb", DATASET_NAME, path)
    return Workspace(cli_runner(sandbox, path, settings, SCREENS[screen], timeout=120), target, api)


@pytest.fixture(scope="module", params=sorted(SCREENS))
def queued(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    sandbox: SandboxServer,
) -> Iterator[Workspace]:
    """A queue holding IDS, and an API that archives each with FIELDS among its fields."""
    with MisbehavingApi.like_routera() as api:
        for contact_id in IDS:
            api.answer("DELETE", f"/contacts/{quote(contact_id, safe='')}", 200, answer(contact_id))
        path = tmp_path_factory.mktemp(f"untrusted_{request.param}")
        ws = workspace_for(path, sandbox, api, request.param)
        done = ws.cli("enqueue", "-", "--requested-by", "[/]", stdin="\n".join(IDS) + "\n")
        assert done.code == 0, done.output
        yield ws


@pytest.fixture(scope="module")
def dry_run(queued: Workspace) -> Result:
    return queued.cli("run", "--dry-run")


@pytest.fixture(scope="module")
def real_run(queued: Workspace, dry_run: Result) -> Result:
    return queued.cli("run")


def test_a_dry_run_prints_every_id_as_it_is(queued: Workspace, dry_run: Result) -> None:
    assert dry_run.code == 0, dry_run.output
    assert "Traceback" not in dry_run.output
    text = shown(dry_run)
    for contact_id in IDS:
        assert repr(contact_id) in text, (contact_id, text)
    assert not any(method == "DELETE" for method, _ in queued.api.requests)


def test_a_run_whose_field_keys_are_markup_exits_0_and_keeps_every_field(
    queued: Workspace, real_run: Result
) -> None:
    assert real_run.code == 0, real_run.output
    assert "Traceback" not in real_run.output
    assert "exit code 0" in shown(real_run)
    assert "'run[/]id'" in shown(real_run)  # the run names the key that collides with run_id
    ((exit_code, error, counts),) = queued.target.query(
        "SELECT exit_code, error, counts FROM archive_runs WHERE mode = 'run'"
    )
    assert (exit_code, error) == (0, None)
    assert json.loads(counts)["archived"] == len(IDS)
    trail = queued.target.query(
        "SELECT id, raw_response, CAST(t AS VARCHAR) FROM contact_archives t"
    )
    assert sorted(row[0] for row in trail) == sorted(IDS)
    for _, raw, row in trail:
        assert set(FIELDS) <= set(json.loads(raw)), raw
        for value in FIELDS.values():
            assert value in row, (value, row)  # each field has its column, value and all


# On a terminal only: off one, the same console calls print it.
@pytest.mark.parametrize("queued", ["terminal"], indirect=True)
def test_the_report_prints_field_keys_and_requesters_as_they_are(
    queued: Workspace, real_run: Result
) -> None:
    result = queued.cli("report")

    assert result.code == 0, result.output
    assert "Traceback" not in result.output
    text = shown(result)
    for key in FIELDS:  # "Custom fields, when each first appeared"
        assert key in text, (key, text)
    # "Archives per requested_by": the requester `[/]`, with its archives.
    assert re.search(rf"^ *\[/\] +│ +{len(IDS)} ", text, re.MULTILINE), text


def test_a_log_line_quoting_an_id_on_a_terminal_is_text(
    tmp_path: Path, sandbox: SandboxServer
) -> None:
    """rich's log handler: a DELETE answered 200 for another contact is logged with the id."""
    with MisbehavingApi.like_routera() as api:
        api.answer("DELETE", "/contacts/*", 200, answer("someone-else"))
        ws = workspace_for(tmp_path, sandbox, api, "terminal")
        ws.queue("[/]")
        result = ws.cli("run")

    assert result.code == 1, result.output  # `failed`: asked again next run
    assert "Traceback" not in result.output and "Logging error" not in result.output
    text = shown(result)
    assert "DELETE '[/]' answered 200 with an unexpected body" in text, text
    assert "the record is for contact 'someone-else', not '[/]'" in text, text


@pytest.mark.parametrize(
    ("route", "body", "words"),
    [
        (
            ("POST", "/oauth2/token"),
            {"error": "invalid_client [/]", "error_description": "[bold]no[/bold] such client"},
            "refused the client credentials (HTTP 401: invalid_client [/] — [bold]no[/bold] such",
        ),
        (
            ("POST", "/oauth2/token"),
            {"message": "client [/] is disabled", "error": True},
            "refused the client credentials (HTTP 401: client [/] is disabled)",
        ),
        (
            ("GET", "/contacts"),
            {"message": "token [/] revoked [link=file:///etc/passwd]x", "error": True},
            "(token [/] revoked [link=file:///etc/passwd]x)",
        ),
    ],
    ids=["token-oauth-shape", "token-routera-shape", "api-call"],
)
def test_a_401_whose_message_is_markup_exits_2_quoting_it(
    tmp_path: Path,
    sandbox: SandboxServer,
    route: tuple[str, str],
    body: dict[str, object],
    words: str,
) -> None:
    with MisbehavingApi.like_routera() as api:
        api.answer(*route, 401, body)
        ws = workspace_for(tmp_path, sandbox, api, "terminal")
        oauth = {
            "SOURCES__ROUTERA__ACCESS_TOKEN": None,
            "SOURCES__ROUTERA__CLIENT_ID": "markup-client",
            "SOURCES__ROUTERA__CLIENT_SECRET": "markup-client-secret",
        }
        env = oauth if route[1] == "/oauth2/token" else None
        ws.queue("c-1")
        result = ws.cli("run", env=env)

    lines = [line for line in shown(result).splitlines() if line.strip()]
    assert result.code == 2, result.output
    assert "Traceback" not in result.output
    assert lines[-1].startswith("error: "), lines
    assert words in lines[-1], (words, lines[-1])
    assert "fix this, then run again" in lines[-1]
    assert not any(method == "DELETE" for method, _ in api.requests)
