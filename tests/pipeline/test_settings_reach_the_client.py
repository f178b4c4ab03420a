"""Every client setting reaches the HTTP client identically through the three ways in: the
CLI (a real process), the runner (whose client lives in the call worker) and the dlt-native
source (`pipeline.run(routera_archive(...))`), all configured the way a user configures them,
with `SOURCES__ROUTERA__*` variables.

What each client was given is read from the line it logs when it is made (`client settings:
ClientConfig(...)`, at DEBUG, secrets left out of the repr): in the worker that line travels to
the run's logging, in the CLI to its stderr.
"""

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dlt
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from routera_archive.source import routera_archive
from routera_archive_sandbox import FaultConfig, SandboxConfig, SandboxServer
from tests.e2e.cli_support import cli_env, run_cli

# Each client setting, the value a user sets and what the client must hold. None of them is a
# default, so a path that drops a setting shows up as the default instead.
SETTINGS: dict[str, tuple[str, Any]] = {
    "concurrency": ("3", 3),
    "rps": ("250.5", 250.5),
    "max_attempts": ("1", 1),
    "max_retry_wait": ("9", 9.0),
    "backoff_initial": ("0.25", 0.25),
    "backoff_max": ("4", 4.0),
    "connect_timeout": ("1.5", 1.5),
    "read_timeout": ("2.5", 2.5),
    "write_timeout": ("3.5", 3.5),
    "pool_timeout": ("4.5", 4.5),
    "call_deadline": ("6.5", 6.5),
    "max_body_bytes": ("70000", 70000),
    "token_refresh_margin": ("5", 5.0),
}
MARK = "client settings: "
PATHS = ("cli", "runner", "source")


def read_client_settings(line: str) -> dict[str, Any]:
    """The fields of a logged `ClientConfig(...)` repr, credentials as their type's name."""
    call = ast.parse(line.split(MARK, 1)[1].strip(), mode="eval").body
    assert isinstance(call, ast.Call)
    values: dict[str, Any] = {}
    for keyword in call.keywords:
        if isinstance(keyword.value, ast.Call):
            assert isinstance(keyword.value.func, ast.Name)
            values[str(keyword.arg)] = keyword.value.func.id
        else:
            values[str(keyword.arg)] = ast.literal_eval(keyword.value)
    return values


# Set in `.dlt/config.toml`, not in the environment, where shorter keys that dlt's own
# lookup would prefer to the file are set too: only `[sources.routera]` may count.
IN_CONFIG_TOML = "backoff_max"
# Set under dlt's longest key for a source, `sources.<section>.<name>.<key>`.
UNDER_ROUTERA_ROUTERA = "token_refresh_margin"
DECOYS = {
    "BASE_URL": "http://decoy.invalid",
    "BACKOFF_MAX": "99",
    "SOURCES__BACKOFF_MAX": "98",
    "RPS": "999",
    "SOURCES__CONCURRENCY": "99",
}


def user_settings(server: SandboxServer) -> dict[str, str]:
    def key(name: str) -> str:
        middle = "ROUTERA__ROUTERA" if name == UNDER_ROUTERA_ROUTERA else "ROUTERA"
        return f"SOURCES__{middle}__{name.upper()}"

    return {
        "SOURCES__ROUTERA__BASE_URL": server.url,
        "SOURCES__ROUTERA__CLIENT_ID": server.config.client_id,
        "SOURCES__ROUTERA__CLIENT_SECRET": server.config.client_secret,
        "SOURCES__ROUTERA__MAX_SHARE": "0",
        **{key(name): text for name, (text, _) in SETTINGS.items() if name != IN_CONFIG_TOML},
        **DECOYS,
    }


def write_config_toml(workdir: Path) -> None:
    (workdir / ".dlt").mkdir(exist_ok=True)
    text = f"[sources.routera]\n{IN_CONFIG_TOML} = {SETTINGS[IN_CONFIG_TOML][0]}\n"
    (workdir / ".dlt" / "config.toml").write_text(text, encoding="utf-8")


# A user's own script, in a process of its own (dlt reads the folder's `.dlt/` at its start):
# the runner as `ArchiveRun(...).execute()`, the dlt source as `pipeline.run(...)`. It prints
# the line each client logs when it is made (in the call worker, that line reaches the run's
# logging).
USER_SCRIPT = """
import logging, sys
import dlt
from routera_archive import ArchiveRun, RunOptions, resolve_source_config, routera_archive
from routera_archive.dataset.enqueue import enqueue
from routera_archive_pipelines.factory import make_pipeline

class Print(logging.Handler):
    def emit(self, record):
        if "client settings: " in record.getMessage():
            print(record.getMessage(), flush=True)

logging.getLogger("routera_archive").addHandler(Print())
logging.getLogger("routera_archive").setLevel(logging.DEBUG)
if sys.argv[1] == "runner":
    pipeline = make_pipeline()
    enqueue(pipeline, [{"contact_id": "no-such-contact"}])
    report = ArchiveRun(pipeline, resolve_source_config(), RunOptions()).execute()
    assert report.exit_code == 0, report.error
else:
    native = dlt.pipeline("settings_native", destination="duckdb", dataset_name="native")
    native.run(routera_archive(["no-such-contact"]))
"""


@pytest.fixture(scope="module")
def seen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Any]]]:
    """What the client of each path was given, each path run once against one sandbox."""
    root = tmp_path_factory.mktemp("settings")
    with SandboxServer(SandboxConfig(port=0, contacts=5, faults=FaultConfig())) as server:
        env = user_settings(server)
        found: dict[str, dict[str, Any]] = {}

        cli_dir = root / "cli"
        cli_dir.mkdir()
        write_config_toml(cli_dir)
        write_config_toml(root)
        environment = cli_env(server, cli_dir, env)
        run_cli(cli_dir, environment, "enqueue", "-", timeout=60, stdin="no-such-contact\n")
        result = run_cli(cli_dir, environment, "run", "--debug", timeout=120)
        assert result.code == 0, result.output
        lines = [line for line in result.stderr.splitlines() if MARK in line]
        assert len(lines) == 1, result.output
        found["cli"] = read_client_settings(lines[0])

        for path in ("runner", "source"):
            done = subprocess.run(
                [sys.executable, "-c", USER_SCRIPT, path],
                cwd=root,
                env=cli_env(server, root, env),
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr
            (found[path],) = [read_client_settings(line) for line in done.stdout.splitlines()]
        yield found


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_each_setting_reaches_the_client_the_same_through_every_path(
    seen: dict[str, dict[str, Any]], name: str
) -> None:
    expected = SETTINGS[name][1]
    assert {path: seen[path][name] for path in PATHS} == dict.fromkeys(PATHS, expected)


def test_the_credentials_and_url_reach_the_client_on_every_path(
    seen: dict[str, dict[str, Any]],
) -> None:
    assert {seen[path]["credentials"] for path in PATHS} == {"ClientCredentials"}
    assert len({seen[path]["base_url"] for path in PATHS}) == 1
    assert seen["cli"] == seen["runner"] == seen["source"]


def test_one_attempt_through_the_dlt_source_when_max_attempts_is_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The case an outside test found: the source made 5 attempts with MAX_ATTEMPTS=1."""
    faults = FaultConfig(error_rate=1.0)
    with SandboxServer(
        SandboxConfig(port=0, contacts=3, static_tokens=("t0k",), faults=faults)
    ) as s:
        monkeypatch.setenv("SOURCES__ROUTERA__BASE_URL", s.url)
        monkeypatch.setenv("SOURCES__ROUTERA__ACCESS_TOKEN", "t0k")
        monkeypatch.setenv("SOURCES__ROUTERA__RPS", "0")
        monkeypatch.setenv("SOURCES__ROUTERA__MAX_ATTEMPTS", "1")
        pipeline = dlt.pipeline("one_attempt", destination="duckdb", dataset_name="one")
        with pytest.raises(PipelineStepFailed) as failed:
            pipeline.run(routera_archive(["c-1", "c-2"]))
        totals = s.state.stats()["totals"]
    # The run's first call (the account's size) failed once and was not tried again; with it
    # the extract stopped, so no DELETE was sent.
    assert totals["by_method"] == {"GET": 1}
    assert "gave up after 1 attempts (HTTP 50" in str(failed.value)
