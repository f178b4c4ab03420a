"""With `airflow` importable (as after `pip install ".[airflow]"`), the CLI leaves dlt's Airflow
secrets provider off unless the user's dlt configuration turns it on.

dlt starts that provider whenever `import airflow` works, and then asks Airflow for every key
it looks up; outside a configured Airflow each ask fails and Airflow logs it: one `run
--dry-run` wrote 32,944 lines of "Unable to retrieve variable from secrets backend". The
`airflow` package here is a stand-in with Airflow's two names that dlt uses
(`airflow.models.Variable` and `TaskInstance`): it records being imported and asked, and
complains on stderr the way Airflow does. The control case (the provider turned on) proves
that dlt does reach it from the real CLI, so its absence in the default case means something.
"""

import textwrap
from pathlib import Path

import pytest

from routera_archive_sandbox import SandboxServer
from tests.e2e.cli_support import cli_runner

FLOOD_LINE = "Unable to retrieve variable from secrets backend"
STAND_IN = {
    "airflow/__init__.py": """
        import os
        with open(os.environ["FAKE_AIRFLOW_MARK"], "a") as mark:
            mark.write("imported\\n")
    """,
    "airflow/models/__init__.py": f"""
        import os, sys

        class Variable:
            @staticmethod
            def get(key, default_var=None):
                with open(os.environ["FAKE_AIRFLOW_MARK"], "a") as mark:
                    mark.write(f"get {{key}}\\n")
                # Airflow's log handler holds the real stderr, past any redirect.
                sys.__stderr__.write("{FLOOD_LINE} (MetastoreBackend)\\n")
                return default_var

        class TaskInstance:
            pass
    """,
}


@pytest.fixture
def airflow_path(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    for name, text in STAND_IN.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


@pytest.mark.parametrize(
    ("turned_on", "config_toml"),
    [
        pytest.param(False, None, id="default"),
        pytest.param(True, None, id="environment-turns-it-on"),
        pytest.param(
            True,
            "[providers]\nenable_airflow_secrets = true\n",
            id="config-toml-turns-it-on",
            marks=pytest.mark.variant,  # the control case's other way to turn it on
        ),
    ],
)
def test_dlt_s_airflow_provider_stays_off_unless_configured(
    sandbox_server: SandboxServer,
    tmp_path: Path,
    airflow_path: Path,
    turned_on: bool,
    config_toml: str | None,
) -> None:
    mark = tmp_path / "airflow.mark"
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = {"PYTHONPATH": str(airflow_path), "FAKE_AIRFLOW_MARK": str(mark)}
    if config_toml:
        (workdir / ".dlt").mkdir()
        (workdir / ".dlt" / "config.toml").write_text(config_toml, encoding="utf-8")
    elif turned_on:
        env["PROVIDERS__ENABLE_AIRFLOW_SECRETS"] = "true"
    cli = cli_runner(sandbox_server, workdir, env, timeout=120)

    assert cli("enqueue", "-", stdin="c-1\nc-2\n").code == 0
    result = cli("run", "--dry-run")

    assert result.code == 0, result.output
    asks = mark.read_text().splitlines() if mark.exists() else []
    if turned_on:
        assert "imported" in asks and any(line.startswith("get ") for line in asks)
        assert FLOOD_LINE in result.stderr
    else:
        assert asks == [], "dlt imported airflow although nobody turned its provider on"
        assert FLOOD_LINE not in result.output
