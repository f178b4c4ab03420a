"""When the API does not look like Routera's, nothing is settled on its word.

Found by an outside test: `--base-url http://host/v1` against an API at `/` (or a stray
`http://host/?`) made every DELETE and GET answer the server's route-level 404, and every
request ended `not_found`, terminal, never retried, exit 0; the share guardrail was skipped,
because it could not read its figure. Now the run's first call (`GET /contacts`, the share
check's) must answer with Routera's list, or the run stops before any DELETE (exit 2); a 404
without Routera's error body is no outcome; and a share check that cannot read its figure
refuses (exit 3), in a dry run as in a real one.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest

from routera_archive_sandbox import SandboxConfig, SandboxServer
from tests.e2e.cli_support import Result, cli_env, run_cli
from tests.misbehaving_api import MisbehavingApi

TOKEN = "api-shape-test-token"
RECORD = {"archived": "2026-06-01T10:00:00Z", "archived_by": "api-client"}
LISTING = {"data": [], "pagination": {"limit": 1, "offset": 0, "count": 1000}}


@pytest.fixture
def server() -> Iterator[SandboxServer]:
    config = SandboxConfig(port=0, contacts=40, seed=3, static_tokens=(TOKEN,))
    with SandboxServer(config) as running:
        yield running


def queue(workdir: Path, server: SandboxServer, count: int) -> tuple[dict[str, str], list[str]]:
    ids = server.state.contact_ids(include_archived=False)[:count]
    env = cli_env(server, workdir)
    done = run_cli(workdir, env, "enqueue", "-", stdin="\n".join(ids) + "\n", timeout=60)
    assert done.code == 0, done.output
    return env, ids


def static_token(env: dict[str, str], base_url: str) -> dict[str, str]:
    """The environment with a static token (the sandbox accepts it too) for `base_url`."""
    changed = env | {
        "SOURCES__ROUTERA__BASE_URL": base_url,
        "SOURCES__ROUTERA__ACCESS_TOKEN": TOKEN,
    }
    changed.pop("SOURCES__ROUTERA__CLIENT_ID")
    changed.pop("SOURCES__ROUTERA__CLIENT_SECRET")
    return changed


def last_line(result: Result) -> str:
    return [line for line in result.stderr.splitlines() if line.strip()][-1]


# The plain run in the default suite; the other ways in, the share check on and off among them,
# with `--run-extended` (CI); all six pairs with `--run-slow`.
@pytest.mark.parametrize(
    ("extra", "max_share"),
    [
        pytest.param((), "0.5", id="run"),
        pytest.param(("--force",), "0", id="forced-share-off", marks=pytest.mark.variant),
        pytest.param(("--dry-run",), "0.5", id="dry-run", marks=pytest.mark.variant),
        pytest.param((), "0", id="run-share-off", marks=pytest.mark.slow),
        pytest.param(("--force",), "0.5", id="forced", marks=pytest.mark.slow),
        pytest.param(("--dry-run",), "0", id="dry-run-share-off", marks=pytest.mark.slow),
    ],
)
def test_a_base_url_with_a_wrong_path_stops_before_any_delete(
    server: SandboxServer, tmp_path: Path, extra: tuple[str, ...], max_share: str
) -> None:
    env, _ = queue(tmp_path, server, 3)
    wrong = static_token(env, f"{server.url}/v1") | {"SOURCES__ROUTERA__MAX_SHARE": max_share}

    result = run_cli(tmp_path, wrong, "run", *extra, timeout=60)
    # With OAuth, the token endpoint is the first to answer from the wrong place.
    with_oauth = env | {"SOURCES__ROUTERA__BASE_URL": f"{server.url}/v1"}
    oauth = run_cli(tmp_path, with_oauth, "run", *extra, timeout=60)

    assert result.code == 2, result.output
    assert "base_url does not point at Routera's API" in last_line(result)
    assert oauth.code == 2, oauth.output
    assert "token endpoint answered something unexpected (HTTP 404" in last_line(oauth)
    assert "check base_url" in last_line(oauth)
    assert server.state.stats()["totals"]["by_method"].get("DELETE", 0) == 0
    assert "pending requests: 3" in run_cli(tmp_path, env, "status", timeout=60).stdout


def test_a_stray_question_mark_in_the_base_url_is_refused(
    server: SandboxServer, tmp_path: Path
) -> None:
    env, _ = queue(tmp_path, server, 1)
    env |= {"SOURCES__ROUTERA__BASE_URL": f"{server.url}/?"}

    result = run_cli(tmp_path, env, "run", timeout=60)

    assert result.code == 2, result.output
    assert "must not have a query or fragment" in last_line(result)
    assert server.state.stats()["totals"]["requests"] == 0


def test_a_404_without_routera_s_error_body_is_no_outcome(
    server: SandboxServer, tmp_path: Path
) -> None:
    env, _ = queue(tmp_path, server, 2)
    with MisbehavingApi() as proxy:
        proxy.answer("GET", "/contacts", 200, LISTING)
        proxy.answer("DELETE", "/contacts/*", 404, "<html>Not Found</html>", "text/html")
        proxy.answer("GET", "/contacts/*", 404, "<html>Not Found</html>", "text/html")
        result = run_cli(tmp_path, static_token(env, proxy.url), "run", timeout=60)

    assert result.code == 1, result.output
    assert "failed" in result.stdout and "not_found" not in result.stdout
    status = run_cli(tmp_path, env, "status", timeout=60)
    assert "pending requests: 2" in status.stdout, status.output


def test_a_share_check_that_cannot_read_its_figure_refuses_and_force_passes(
    server: SandboxServer, tmp_path: Path
) -> None:
    env, ids = queue(tmp_path, server, 1)
    with MisbehavingApi() as api:
        api.answer("GET", "/contacts", 403, {"message": "listing not allowed", "error": True})
        api.answer("DELETE", f"/contacts/{ids[0]}", 200, {"id": ids[0], **RECORD})
        environment = static_token(env, api.url)
        dry = run_cli(tmp_path, environment, "run", "--dry-run", timeout=60)
        refused = run_cli(tmp_path, environment, "run", timeout=60)
        deletes_before_force = sum(1 for method, _ in api.requests if method == "DELETE")
        forced = run_cli(tmp_path, environment, "run", "--force", timeout=60)

    for result in (dry, refused):
        assert result.code == 3, result.output
        assert "the number of active contacts cannot be read" in last_line(result)
        assert "listing not allowed" in last_line(result)
    assert deletes_before_force == 0
    assert forced.code == 0, forced.output


def test_a_dry_run_gives_the_real_run_s_share_verdict(
    server: SandboxServer, tmp_path: Path
) -> None:
    """30 of 40 active contacts queued: more than half, refused, by the dry run as well."""
    env, _ = queue(tmp_path, server, 30)

    dry = run_cli(tmp_path, env, "run", "--dry-run", timeout=60)
    real = run_cli(tmp_path, env, "run", timeout=60)

    assert dry.code == real.code == 3, dry.output + real.output
    assert "would archive 30 of 40 active contacts" in last_line(dry)
    assert last_line(dry).split("refused:")[1] == last_line(real).split("refused:")[1]
    assert server.state.stats()["totals"]["by_method"].get("DELETE", 0) == 0
